"""How a head backed by one Keras model is written and read: `<stem>.keras`, never pickle.

`save_keras_model` writes the model atomically (a crash never leaves half a file under the final
name) and returns the file name the sidecar records as `model_file`; `load_keras_model` reads it
back with `safe_mode=True` (no arbitrary code from a lambda layer) and uncompiled (heads only predict).
"""

from __future__ import annotations

from pathlib import Path

from pipeline.atomic import atomic_write_path
from pipeline.backbones.tf_runtime import import_keras

#: File extension of a native Keras model archive.
KERAS_SUFFIX = ".keras"


def save_keras_model(model, stem: Path) -> str:
    """Write `model` to `<stem>.keras` atomically; return the file name (for the sidecar's `model_file`)."""
    path = Path(f"{stem}{KERAS_SUFFIX}")
    with atomic_write_path(path) as temp:
        model.save(temp)
    return path.name


def load_keras_model(stem: Path, record):
    """The Keras model the head record's `model_file` names, next to `stem`."""
    keras = import_keras()
    return keras.saving.load_model(Path(stem).with_name(record.model_file), safe_mode=True, compile=False)
