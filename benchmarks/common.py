"""Small pieces shared by the harness and its worker processes.

Imports nothing heavy, so a worker can import it before the imports it times.
"""

from __future__ import annotations

import importlib

#: The backbone every scenario runs (the classic dog-breed notebook's VGG16).
BACKBONE_NAME = "vgg16"


def batch_count(images: int, batch_size: int) -> int:
    """Batches needed to cover `images` images (rounded up, at least one)."""
    return max(1, -(-images // batch_size))


def preload(*modules: str) -> None:
    """Import `modules` for their side effect only: workers time (or pay up front) the import cost of
    TensorFlow and Keras, which every process that runs a backbone pays, and never use the names."""
    for name in modules:
        importlib.import_module(name)
