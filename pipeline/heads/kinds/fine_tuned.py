"""A fine-tuned model as a head: the tuned top layers of the backbone plus the head, on boundary maps.

`fine-tune` (`pipeline.finetune`) trains the backbone's layers after a boundary layer together
with a head, on a cache of the boundary layer's output. The result is saved and used like a head:
its sidecar's feature spec is the boundary cache's (so `predict` runs the frozen layers up to the
boundary, exactly as that cache was extracted), and its model maps the boundary's full (h, w, c)
maps - not pooled rows: `consumes_maps` - to class probabilities: tuned layers -> global pooling
-> the head's layers. It is one Keras model, `<stem>.keras`, loaded with `safe_mode=True`; its
sidecar's `fine_tuning` section says which layers were tuned from which head.

It is not fitted by `fit-head` (it is in `pipeline.heads.registry.SAVED_KINDS`, not `HEADS`).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from pipeline.heads.kinds.keras_file import load_keras_model, save_keras_model

#: Boundary maps are large (VGG16 block4_pool: 14x14x512 = 400 KB per image), so predict in small batches.
PREDICT_BATCH_SIZE = 32


class FineTunedHead:
    """A trained `model_` (boundary maps -> probabilities); see the module docstring."""

    kind = "fine-tuned"
    consumes_maps = True

    def __init__(self, model=None, params: dict | None = None):
        self.model_ = model
        self.params_ = params or {}

    def predict_proba(self, x: np.ndarray) -> np.ndarray:
        """Probabilities for (n, h, w, c) boundary maps."""
        return np.asarray(self.model_.predict(x, verbose=0, batch_size=PREDICT_BATCH_SIZE))

    def keras_layers(self) -> list:
        """The whole model as one layer: it maps boundary maps to probabilities."""
        return [self.model_]

    def save(self, stem: Path) -> str:
        return save_keras_model(self.model_, stem)

    @classmethod
    def load(cls, stem: Path, record) -> FineTunedHead:
        return cls(load_keras_model(stem, record), record.hyperparameters)
