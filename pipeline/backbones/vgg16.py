"""VGG16's genuine ImageNet weights: reference values, and Keras' legacy HDF5 weights layout.

`reference_problems(path)` reads a Keras weights file of VGG16 without its classifier and lists
every disagreement with values recorded from the official ImageNet weights (the first bias
element of each of the 13 conv layers and one kernel element); an empty list means genuine.
`read_legacy_h5_conv_weights` and `write_legacy_h5` read and write the layout of Keras' official
`vgg16_weights_tf_dim_ordering_tf_kernels_notop.h5`, so a converted file loads with
`VGG16(weights=path, include_top=False)`. `block_of` names the block of a layer for
`fine-tune --unfreeze` (VGG19 shares the naming). No TensorFlow needed.
"""

from __future__ import annotations

import re
from pathlib import Path

import h5py
import numpy as np

from pipeline.atomic import atomic_write_path
from pipeline.backbones.layer_weights import read_keras_h5_layer_weights

_BLOCK = re.compile(r"^(block\d+)_")

VGG16_CONV_LAYERS = (
    "block1_conv1", "block1_conv2",
    "block2_conv1", "block2_conv2",
    "block3_conv1", "block3_conv2", "block3_conv3",
    "block4_conv1", "block4_conv2", "block4_conv3",
    "block5_conv1", "block5_conv2", "block5_conv3",
)
#: Layers of Keras' VGG16 without top, in order, as listed in the official weights file.
VGG16_NOTOP_LAYERS = (
    "input_1", "block1_conv1", "block1_conv2", "block1_pool",
    "block2_conv1", "block2_conv2", "block2_pool",
    "block3_conv1", "block3_conv2", "block3_conv3", "block3_pool",
    "block4_conv1", "block4_conv2", "block4_conv3", "block4_pool",
    "block5_conv1", "block5_conv2", "block5_conv3", "block5_pool",
)
#: First element of each conv bias in the genuine ImageNet VGG16 weights.
VGG16_REFERENCE_BIAS0 = {
    "block1_conv1": 0.73429835, "block1_conv2": -0.30912212,
    "block2_conv1": -0.04577766, "block2_conv2": -0.06418542,
    "block3_conv1": -0.074358866, "block3_conv2": 0.019675018, "block3_conv3": 0.035415243,
    "block4_conv1": 0.013485669, "block4_conv2": 0.023680462, "block4_conv3": 0.03757768,
    "block5_conv1": 0.09722325, "block5_conv2": 0.21327873, "block5_conv3": 0.18837857,
}
#: block1_conv1 kernel[0, 0, 0, 0] (H, W, I, O order) of the genuine weights.
VGG16_REFERENCE_KERNEL0 = 0.42947057
_REFERENCE_TOLERANCE = 1e-6
#: What Keras wrote into its legacy weights files' attributes.
_LEGACY_BACKEND = b"tensorflow"
_LEGACY_KERAS_VERSION = b"2.2.4"


def vgg16_mismatches(conv_weights: dict[str, tuple[np.ndarray, np.ndarray]]) -> list[str]:
    """Compare (kernel HWIO, bias) per conv layer with the ImageNet reference values.

    Returns one line per disagreement; an empty list means the weights are genuine ImageNet VGG16.
    """
    problems = []
    for layer in VGG16_CONV_LAYERS:
        if layer not in conv_weights:
            problems.append(f"{layer}: missing")
            continue
        bias0 = float(conv_weights[layer][1].reshape(-1)[0])
        if abs(bias0 - VGG16_REFERENCE_BIAS0[layer]) > _REFERENCE_TOLERANCE:
            problems.append(f"{layer} bias[0] is {bias0:.8g}, ImageNet VGG16 has {VGG16_REFERENCE_BIAS0[layer]:.8g}")
    if "block1_conv1" in conv_weights:
        kernel0 = float(conv_weights["block1_conv1"][0][0, 0, 0, 0])
        if abs(kernel0 - VGG16_REFERENCE_KERNEL0) > _REFERENCE_TOLERANCE:
            problems.append(f"block1_conv1 kernel[0,0,0,0] is {kernel0:.8g}, ImageNet VGG16 has "
                            f"{VGG16_REFERENCE_KERNEL0:.8g}")
    return problems


def reference_problems(path: Path) -> list[str]:
    """Disagreements of the weights file at `path` with genuine ImageNet VGG16 (empty: genuine)."""
    try:
        return vgg16_mismatches(read_legacy_h5_conv_weights(path))
    except (OSError, KeyError, ValueError) as error:
        return [f"unreadable as Keras weights: {error}"]


def read_legacy_h5_conv_weights(path: Path) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """(kernel, bias) of each layer that has exactly two weights in a Keras legacy h5 file."""
    return {name: tuple(arrays) for name, arrays in read_keras_h5_layer_weights(path).items() if len(arrays) == 2}


def write_legacy_h5(conv_weights: dict[str, tuple[np.ndarray, np.ndarray]], dest: Path) -> None:
    """Write VGG16 no-top weights in Keras' legacy HDF5 layout, atomically."""
    with atomic_write_path(dest) as temp:
        with h5py.File(temp, "w") as handle:
            handle.attrs["layer_names"] = [name.encode() for name in VGG16_NOTOP_LAYERS]
            handle.attrs["backend"] = _LEGACY_BACKEND
            handle.attrs["keras_version"] = _LEGACY_KERAS_VERSION
            for layer in VGG16_NOTOP_LAYERS:
                group = handle.create_group(layer)
                if layer in conv_weights:
                    kernel, bias = conv_weights[layer]
                    names = [f"{layer}/kernel:0", f"{layer}/bias:0"]
                    group.attrs["weight_names"] = [n.encode() for n in names]
                    group.create_dataset(names[0], data=kernel)
                    group.create_dataset(names[1], data=bias)
                else:
                    group.attrs["weight_names"] = []


def block_of(layer: str) -> str | None:
    """The block a VGG layer belongs to ("block5_conv2" -> "block5"), None for the input."""
    match = _BLOCK.match(layer)
    return match.group(1) if match else None
