"""Building a backbone as a Keras model cut at a feature layer, and listing its layers.

`build_feature_model` builds the family's model (with a weights file, or randomly initialised
for `--weights none`) under the requested compute precision and cuts it at the feature layer;
the result is frozen and must be called with `training=False` so BatchNorm uses its statistics.
"""

from __future__ import annotations

import contextlib
from pathlib import Path

from pipeline.backbones.layer_weights import keras_h5_problem
from pipeline.backbones.registry import BackboneSpec
from pipeline.backbones.tf_runtime import import_keras
from pipeline.errors import UsageError, WeightsError, first_line


@contextlib.contextmanager
def dtype_policy(precision: str):
    """Build Keras layers under a mixed-precision policy (float32 variables, `precision` compute)."""
    keras = import_keras()

    previous = keras.config.dtype_policy()
    policy = "float32" if precision == "float32" else f"mixed_{precision}"
    keras.config.set_dtype_policy(policy)
    try:
        yield
    finally:
        keras.config.set_dtype_policy(previous)


def build_feature_model(spec: BackboneSpec, layer: str, input_size: int, weights_path: str | None, precision: str):
    """Build the backbone with `weights_path` (None = random initialisation) cut at `layer`.

    The returned Keras model maps preprocessed float images of shape (input_size, input_size, 3)
    to the layer's activations. Raises `UsageError` naming valid layers when `layer` does not
    exist, `WeightsError` when the weights file does not fit the backbone.
    """
    keras = import_keras()

    spec.validate_input_size(input_size)
    problem = keras_h5_problem(Path(weights_path)) if weights_path is not None else None
    if problem:
        raise WeightsError(f"could not load {weights_path} into {spec.name}: {problem}. --weights PATH needs a Keras "
                           f"weights file of {spec.family_module}.{spec.constructor} without its classifier "
                           "(include_top=False, like the official *_notop.h5 files); or use --weights imagenet")
    try:
        with dtype_policy(precision):
            base = spec.build(include_top=False, weights=weights_path, input_size=input_size)
    except (ValueError, OSError) as error:
        if weights_path is None:
            raise
        reason = first_line(error).rstrip(".")
        raise WeightsError(
            f"could not load {weights_path} into {spec.name}: {reason}. --weights PATH needs a Keras weights file "
            f"of {spec.family_module}.{spec.constructor} without its classifier (include_top=False, like the "
            "official *_notop.h5 files); or use --weights imagenet") from error
    names = [candidate.name for candidate in base.layers]
    if layer not in names:
        tail = ", ".join(names[-8:])
        raise UsageError(f"{spec.name} has no layer {layer!r}; its last layers are: {tail} (see `layers` for all)")
    model = keras.Model(base.inputs, base.get_layer(layer).output, name=f"{spec.name}_{layer}")
    model.trainable = False
    return model


def preprocess_function(spec: BackboneSpec):
    """The family's `preprocess_input` (works on tensors; never pass it an array you reuse)."""
    return spec.keras_module().preprocess_input


def list_layers(spec: BackboneSpec, input_size: int) -> list[dict]:
    """Name and per-image output shape of every layer of `spec` (built with random weights)."""
    spec.validate_input_size(input_size)
    base = spec.build(include_top=False, weights=None, input_size=input_size)
    rows = []
    for layer in base.layers:
        output = layer.output
        shape = output.shape if not isinstance(output, (list, tuple)) else output[0].shape
        rows.append({"name": layer.name, "shape": [int(d) for d in shape[1:]]})
    return rows
