"""Block names of the `keras.applications` families the registry adds, for `fine-tune --unfreeze BLOCK`.

A block is a unit the network can be cut in front of with one tensor crossing the cut (what a
boundary cache holds; `pipeline.finetune.cut` refuses any other cut):

- ResNet v1 and v2 (`resnet101`, `resnet50_v2`, ...): the residual block, "conv5_block3" for every
  `conv5_block3_*` layer; the stem (`conv1_*`, `pool1_*`) is "conv1", ResNet v2's final
  `post_bn`/`post_relu` are "post".
- DenseNet: the dense block, "conv5_block16"; a transition (`pool4_*`) is "pool4"; the stem
  `conv1_*`/`pool1` is "conv1"; the final `bn`/`relu` are "top".
- EfficientNetV2: the stage, "block6" (as EfficientNet-Lite: `block6a`..`block6h`), "stem", "top".

Layers Keras names automatically (e.g. DenseNet's `zero_padding2d`, EfficientNetV2's `rescaling`)
carry a counter that depends on what else the process built, so they belong to no block (None).
ConvNeXt (whose residual additions are operations, not layers, so a cut cannot see them) and
InceptionResNetV2 (most of whose layers are named automatically) have no block names.
"""

from __future__ import annotations

import re

from pipeline.backbones import efficientnet_lite

_RESIDUAL_BLOCK = re.compile(r"^(conv\d+_block\d+)_")
_RESNET_STEM = re.compile(r"^(conv1|pool1)_")
_DENSENET_TRANSITION = re.compile(r"^(pool\d+)_")
_DENSENET_STEM = re.compile(r"^(conv1_|pool1$)")
_RESNET_V2_POST = ("post_bn", "post_relu")
_DENSENET_TOP = ("bn", "relu")


def resnet_block_of(layer: str) -> str | None:
    """The residual block of a ResNet (v1 or v2) layer ("conv5_block3_2_conv" -> "conv5_block3")."""
    match = _RESIDUAL_BLOCK.match(layer)
    if match:
        return match.group(1)
    if _RESNET_STEM.match(layer):
        return "conv1"
    return "post" if layer in _RESNET_V2_POST else None


def densenet_block_of(layer: str) -> str | None:
    """The dense block or transition of a DenseNet layer ("conv5_block16_concat" -> "conv5_block16")."""
    match = _RESIDUAL_BLOCK.match(layer)
    if match:
        return match.group(1)
    if _DENSENET_STEM.match(layer):
        return "conv1"
    match = _DENSENET_TRANSITION.match(layer)
    if match:
        return match.group(1)
    return "top" if layer in _DENSENET_TOP else None


def efficientnet_v2_block_of(layer: str) -> str | None:
    """The stage of an EfficientNetV2 layer ("block6h_add" -> "block6", "top_bn" -> "top")."""
    return efficientnet_lite.block_of(layer)
