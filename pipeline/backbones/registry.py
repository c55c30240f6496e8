"""Registry of frozen ImageNet backbones from `keras.applications`.

Each entry names the Keras constructor and its family module (whose `preprocess_input` is the one
the weights were trained with), the default input size, the smallest size the architecture
accepts, the default feature layer (the classic bottleneck: the last layer of the convolutional
base) and the file name of the official no-top weights in the Keras cache.

Nothing here imports TensorFlow until a model is actually built, so commands that only read
caches stay fast.
"""

from __future__ import annotations

import contextlib
import importlib
from dataclasses import dataclass
from typing import Callable

from pipeline.errors import UsageError, WeightsError
from pipeline.backbones.tf_runtime import import_keras


@dataclass(frozen=True)
class BackboneSpec:
    """How to build one backbone and feed it."""

    name: str
    constructor: str
    family_module: str
    preprocessing: str
    default_input_size: int
    min_input_size: int
    default_layer: str
    weights_file: Callable[[int], str]

    def keras_module(self):
        """The `keras.applications` family module (imports Keras)."""
        import_keras()  # quietly, before keras.applications pulls TensorFlow in
        return importlib.import_module(self.family_module)

    def validate_input_size(self, size: int) -> None:
        """Raise ValueError when `size` is below what the architecture accepts."""
        if size < self.min_input_size:
            raise UsageError(
                f"input size {size} is too small for {self.name}; it needs at least {self.min_input_size} pixels"
            )


def _fixed(file_name: str) -> Callable[[int], str]:
    return lambda _size: file_name


def _mobilenet_v2_file(size: int) -> str:
    # Keras ships weights trained at these resolutions and falls back to 224 for any other size.
    trained_sizes = (96, 128, 160, 192, 224)
    rows = size if size in trained_sizes else 224
    return f"mobilenet_v2_weights_tf_dim_ordering_tf_kernels_1.0_{rows}_no_top.h5"


BACKBONES: dict[str, BackboneSpec] = {
    spec.name: spec
    for spec in (
        BackboneSpec("vgg16", "VGG16", "keras.applications.vgg16", "caffe", 224, 32, "block5_pool",
                     _fixed("vgg16_weights_tf_dim_ordering_tf_kernels_notop.h5")),
        BackboneSpec("vgg19", "VGG19", "keras.applications.vgg19", "caffe", 224, 32, "block5_pool",
                     _fixed("vgg19_weights_tf_dim_ordering_tf_kernels_notop.h5")),
        BackboneSpec("resnet50", "ResNet50", "keras.applications.resnet50", "caffe", 224, 32, "conv5_block3_out",
                     _fixed("resnet50_weights_tf_dim_ordering_tf_kernels_notop.h5")),
        BackboneSpec("inception_v3", "InceptionV3", "keras.applications.inception_v3", "tf", 299, 75, "mixed10",
                     _fixed("inception_v3_weights_tf_dim_ordering_tf_kernels_notop.h5")),
        BackboneSpec("xception", "Xception", "keras.applications.xception", "tf", 299, 71, "block14_sepconv2_act",
                     _fixed("xception_weights_tf_dim_ordering_tf_kernels_notop.h5")),
        BackboneSpec("mobilenet_v2", "MobileNetV2", "keras.applications.mobilenet_v2", "tf", 224, 32, "out_relu",
                     _mobilenet_v2_file),
        BackboneSpec("efficientnet_b0", "EfficientNetB0", "keras.applications.efficientnet", "none", 224, 32,
                     "top_activation", _fixed("efficientnetb0_notop.h5")),
    )
}


def get_backbone(name: str) -> BackboneSpec:
    """The registered backbone called `name` (case-insensitive); ValueError lists the choices."""
    spec = BACKBONES.get(name.lower())
    if spec is None:
        raise UsageError(f"unknown backbone {name!r}; choose one of: {', '.join(BACKBONES)}")
    return spec


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
    to the layer's activations; call it with `training=False` so BatchNorm uses its statistics.
    Raises ValueError naming valid layers when `layer` does not exist, `WeightsError` when the
    weights file does not fit the backbone.
    """
    keras = import_keras()

    spec.validate_input_size(input_size)
    constructor = getattr(spec.keras_module(), spec.constructor)
    try:
        with dtype_policy(precision):
            base = constructor(include_top=False, weights=weights_path, input_shape=(input_size, input_size, 3))
    except (ValueError, OSError) as error:
        if weights_path is None:
            raise
        reason = (str(error).strip().splitlines() or [type(error).__name__])[0].rstrip(".")
        raise WeightsError(
            f"could not load {weights_path} into {spec.name}: {reason}. --weights PATH needs a Keras weights file "
            f"of keras.applications.{spec.constructor} without its classifier (include_top=False, like the official "
            "*_notop.h5 files); or use --weights imagenet") from error
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
    constructor = getattr(spec.keras_module(), spec.constructor)
    base = constructor(include_top=False, weights=None, input_shape=(input_size, input_size, 3))
    rows = []
    for layer in base.layers:
        output = layer.output
        shape = output.shape if not isinstance(output, (list, tuple)) else output[0].shape
        rows.append({"name": layer.name, "shape": [int(d) for d in shape[1:]]})
    return rows
