"""Weights keyed by Keras layer name: how converted offline weights are stored, checked and applied.

A layer-weights file is HDF5 with root attributes `format` (`LAYER_WEIGHTS_FORMAT`), `backbone`,
`source` and `source_sha256`, and one group per Keras layer name holding datasets "0", "1", ...
in the order `layer.get_weights()` returns them. Unlike Keras' own weights files it matches
layers by name, so one file serves the model with its ImageNet classifier and the model without
it (entries for layers the model lacks are skipped), and every weighted layer of the model must
find its entry (a layer left randomly initialised is an error, never silent).

`read_keras_h5_layer_weights` reads Keras' legacy HDF5 weights files (the official
`*_weights_tf_dim_ordering_tf_kernels*.h5` and `*_tf_no_top.h5`) into the same
{layer: [arrays]} shape, so reference checks work on both. Nothing here imports TensorFlow.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path

import h5py
import numpy as np

from pipeline.atomic import atomic_write_path

LAYER_WEIGHTS_FORMAT = "bottleneck-layer-weights"
#: Keras 3's own weights files (`model.save_weights`), which Keras reads by their own layout.
KERAS3_WEIGHTS_SUFFIX = ".weights.h5"
#: The most bytes one weights tensor may declare (VGG16's largest, fc1, is 411 MB).
MAX_WEIGHT_BYTES = 2**31
#: Recorded reference values must agree with this absolute tolerance.
REFERENCE_TOLERANCE = 1e-6

LayerWeights = Mapping[str, Sequence[np.ndarray]]


def write_layer_weights(weights: LayerWeights, dest: Path, backbone: str, source: str, source_sha256: str) -> None:
    """Write `weights` ({layer name: arrays}) to `dest` atomically."""
    with atomic_write_path(dest) as temp:
        with h5py.File(temp, "w") as handle:
            handle.attrs.update(format=LAYER_WEIGHTS_FORMAT, backbone=backbone, source=source,
                                source_sha256=source_sha256)
            for layer, arrays in weights.items():
                group = handle.create_group(layer)
                for position, array in enumerate(arrays):
                    group.create_dataset(str(position), data=np.asarray(array, dtype=np.float32))


def is_layer_weights_file(path: Path) -> bool:
    """True when `path` is an HDF5 file in the layer-weights format."""
    try:
        with h5py.File(path, "r") as handle:
            return handle.attrs.get("format") == LAYER_WEIGHTS_FORMAT
    except OSError:
        return False


def read_layer_weights(path: Path) -> dict[str, list[np.ndarray]]:
    """{layer name: arrays in get_weights() order} of a layer-weights file."""
    with h5py.File(path, "r") as handle:
        if handle.attrs.get("format") != LAYER_WEIGHTS_FORMAT:
            raise ValueError(f"{path} is not a layer-weights file")
        return {layer: [np.asarray(group[str(i)]) for i in range(len(group))] for layer, group in handle.items()}


def read_keras_h5_layer_weights(path: Path) -> dict[str, list[np.ndarray]]:
    """{layer name: arrays} of a Keras legacy HDF5 weights file (layers without weights left out)."""
    weights = {}
    with h5py.File(path, "r") as handle:
        group = handle["model_weights"] if "layer_names" not in handle.attrs and "model_weights" in handle else handle
        for raw_name in group.attrs.get("layer_names", []):
            name = raw_name.decode() if isinstance(raw_name, bytes) else str(raw_name)
            layer = group[name]
            names = [w.decode() if isinstance(w, bytes) else str(w) for w in layer.attrs.get("weight_names", [])]
            if names:
                weights[name] = [np.asarray(layer[weight]) for weight in names]
    return weights


def keras_h5_problem(path: Path) -> str | None:
    """Why `path` cannot be a Keras legacy HDF5 weights file or a layer-weights file (None: it can).

    Checks the structure Keras would otherwise trip over with a traceback, reading attributes and
    dataset headers only: `layer_names` and each layer's `weight_names` are 1-D lists of text
    naming groups and datasets that exist (a Keras 3 `.weights.h5` file: only the datasets); no
    dataset is stored outside the file (external storage, virtual datasets, external or soft
    links) or declares more than `MAX_WEIGHT_BYTES`.
    """
    try:
        with h5py.File(path, "r") as handle:
            if handle.attrs.get("format") == LAYER_WEIGHTS_FORMAT or Path(path).name.endswith(KERAS3_WEIGHTS_SUFFIX):
                return _datasets_problem(handle)
            nested = "layer_names" not in handle.attrs and "model_weights" in handle
            group = handle["model_weights"] if nested else handle
            if "layer_names" not in group.attrs:
                return "it has no layer_names attribute (not a Keras HDF5 weights file)"
            layer_names = _text_list(group.attrs["layer_names"])
            if layer_names is None:
                return "its layer_names attribute is not a list of layer names"
            for name in layer_names:
                if not isinstance(group.get(name, getlink=True), h5py.HardLink):
                    return f"layer {name!r} named in layer_names is missing or a link"
                layer = group[name]
                weight_names = _text_list(layer.attrs.get("weight_names", np.array([], dtype="S1")))
                if not isinstance(layer, h5py.Group) or weight_names is None:
                    return f"layer {name!r} has no list of weight_names"
                missing = [weight for weight in weight_names if not isinstance(layer.get(weight), h5py.Dataset)]
                if missing:
                    return f"layer {name!r} names weights that are not datasets: {missing[:3]}"
            return _datasets_problem(group)
    except (OSError, KeyError, ValueError, TypeError, RuntimeError) as error:
        return f"it cannot be read as HDF5 ({(str(error).splitlines() or [type(error).__name__])[0]})"


def _text_list(value) -> list[str] | None:
    """`value` as a list of text when it is a 1-D array (or list) of strings; None otherwise."""
    array = np.asarray(value)
    if array.ndim == 1 and array.size == 0:  # h5py stores an empty list as an empty float array
        return []
    if array.ndim != 1 or array.dtype.kind not in "SUO":
        return None
    items = [item.decode("utf-8", "replace") if isinstance(item, bytes) else item for item in array.tolist()]
    return items if all(isinstance(item, str) and item for item in items) else None


def _datasets_problem(group: h5py.Group) -> str | None:
    found: list[str] = []

    def visit(name, item):
        if isinstance(item, h5py.Dataset) and not found:
            declared = item.size * item.dtype.itemsize
            if item.external or item.is_virtual:
                found.append(f"dataset {name!r} is stored outside the file")
            elif declared > MAX_WEIGHT_BYTES:
                found.append(f"dataset {name!r} declares {declared:,} bytes, more than any backbone's weights")

    group.visititems(visit)
    external = [name for name, link in _links(group) if isinstance(link, (h5py.ExternalLink, h5py.SoftLink))]
    if external:
        return f"it links to {external[0]!r} outside its own data"
    return found[0] if found else None


def _links(group: h5py.Group):
    for name in group:
        link = group.get(name, getlink=True)
        yield name, link
        if isinstance(link, h5py.HardLink) and isinstance(group[name], h5py.Group):
            yield from ((f"{name}/{inner}", inner_link) for inner, inner_link in _links(group[name]))


def read_any_layer_weights(path: Path) -> dict[str, list[np.ndarray]]:
    """A layer-weights file or a Keras legacy HDF5 weights file, as {layer name: arrays}."""
    return read_layer_weights(path) if is_layer_weights_file(path) else read_keras_h5_layer_weights(path)


def apply_layer_weights(model, weights: LayerWeights, source: str) -> None:
    """Set every weighted layer of `model` from `weights` (entries the model has no layer for are skipped).

    Raises ValueError naming the layers left uncovered or whose shapes differ; `source` names the
    file in those messages.
    """
    layers = {layer.name: layer for layer in model.layers if layer.weights}
    uncovered = sorted(set(layers) - set(weights))
    if uncovered:
        raise ValueError(f"{source} has no weights for layers {uncovered[:5]} of {model.name}; it was made for "
                         "another architecture")
    for name, layer in layers.items():
        arrays = [np.asarray(array) for array in weights[name]]
        expected = [tuple(weight.shape) for weight in layer.weights]
        if expected != [array.shape for array in arrays]:
            raise ValueError(f"{source}: layer {name} of {model.name} expects weight shapes {expected}, the file has "
                             f"{[array.shape for array in arrays]}")
        layer.set_weights(arrays)


def reference_problems(weights: LayerWeights, references: Mapping[tuple[str, int, int], float],
                       backbone: str) -> list[str]:
    """Disagreements of `weights` with values recorded from the genuine file (empty: genuine).

    `references` maps (layer, weight index, flat index) to the recorded value.
    """
    problems = []
    for (layer, index, flat), expected in references.items():
        where = f"{layer} weight {index}[{flat}]"
        arrays = weights.get(layer)
        if arrays is None or index >= len(arrays) or flat >= np.asarray(arrays[index]).size:
            problems.append(f"{where}: missing")
            continue
        value = float(np.asarray(arrays[index]).reshape(-1)[flat])
        if not abs(value - expected) <= REFERENCE_TOLERANCE:
            problems.append(f"{where} is {value:.8g}, ImageNet {backbone} has {expected:.8g}")
    return problems


def file_reference_problems(path: Path, references: Mapping[tuple[str, int, int], float], backbone: str) -> list[str]:
    """`reference_problems` of a weights file on disk; an unreadable file is one problem."""
    try:
        weights = read_any_layer_weights(path)
    except (OSError, KeyError, ValueError) as error:
        return [f"unreadable as {backbone} weights: {error}"]
    return reference_problems(weights, references, backbone)
