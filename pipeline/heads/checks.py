"""Checks on the files a head is made of, before and after they are loaded, and naming other files.

A head folder travels (downloaded, shared, edited), so nothing in it is trusted:
- `check_sidecar`: required fields present, every known field of the right JSON type, the feature
  spec readable; a `HeadError` names the field, what it holds and what it should hold.
- `check_keras_config`: a `.keras` file's `config.json` is read from the zip (bounded) and refused
  when it names Python functions or lambdas, modules outside Keras, or integers large enough to
  allocate gigabytes when the model is built (a memory bomb in a few bytes).
- `check_npz_model`: a linear or k-NN head's arrays, shapes checked from the headers first
  (`pipeline.npz_safety`), then against each other and the class names once loaded.
- `describe_file`: what a file that is not a head sidecar is (a feature cache, an HDF5 or Keras
  weights file, an npz, a `.keras` model, an image, an explain result...), so the message says
  what was given and what is expected.
"""

from __future__ import annotations

import json
import zipfile
from pathlib import Path

import numpy as np

from pipeline.cache.format import HDF5_SIGNATURE
from pipeline.errors import HeadError
from pipeline.npz_safety import NpzRefusal, check_npz

#: Largest sidecar read (real ones are a few KB; search results included, well under 1 MB).
MAX_SIDECAR_BYTES = 16 * 2**20
#: Largest `config.json` read from a `.keras` file.
MAX_KERAS_CONFIG_BYTES = 16 * 2**20
#: Largest integer a head's Keras config may hold (units, filters, shapes): a Dense layer of this
#: many units on 25,088 inputs would already be 100 GB; real heads stay under a few thousand.
MAX_CONFIG_INTEGER = 1 << 16
#: Config keys whose integers are identities or seeds, not sizes.
UNSIZED_KEYS = frozenset({"shared_object_id", "seed"})
#: Modules a `.keras` config may name (Keras' own layers, activations, initialisers...).
KERAS_MODULE_PREFIXES = ("keras",)
#: Serialised Python callables, which safe mode refuses too; refused here with a clearer message.
FUNCTION_CLASS_NAMES = frozenset({"function", "__lambda__", "Lambda", "__function__", "__python_function__"})
FIX = "fit the head again (or ask for the head folder again)"
_ZIP_MAGIC = b"PK\x03\x04"
_HDF5_USERBLOCK_OFFSETS = (0, 512, 1024, 2048)

#: field -> (JSON types accepted, what to call them); checked when present.
FIELD_TYPES = {
    "kind": ((str,), "text"), "name": ((str,), "text"), "created": ((str,), "text"),
    "model_file": ((str,), "a file name"), "feature_key": ((str,), "text"), "feature_spec": ((dict,), "an object"),
    "origin": ((dict,), "an object"), "extraction": ((dict,), "an object"), "hyperparameters": ((dict,), "an object"),
    "metrics": ((dict,), "an object"), "metrics_by_target": ((dict,), "an object"), "members": ((list,), "a list"),
    "class_names": ((list,), "a list of text"), "target": ((str,), "text"), "head_pooling": ((str,), "text"),
    "views": ((str,), "text (how the head used the cached views)"), "fit_seconds": ((int, float), "a number"),
    "files": ((list,), "a list"), "tta_views": ((list,), "a list of view indices"),
    "search": ((list,), "a list"), "versions": ((dict,), "an object"), "cache": ((dict,), "an object"),
    "concat_head": ((dict,), "an object"), "feature_keys": ((list,), "a list"), "member_of": ((list,), "a list"),
    "fine_tuning": ((dict,), "an object"), "comparison": ((dict,), "an object"),
}
REQUIRED_FIELDS = ("kind", "class_names", "feature_key")
#: Further fields a head with a model of its own needs.
MODEL_FIELDS = ("model_file", "feature_spec")


def read_json_document(path: Path) -> dict | None:
    """The JSON object in `path`, or None when it is not a JSON object (too large, binary, invalid)."""
    if path.stat().st_size > MAX_SIDECAR_BYTES:
        return None
    try:
        document = json.loads(path.read_bytes().decode("utf-8"))
    except (ValueError, UnicodeDecodeError, RecursionError):
        return None
    return document if isinstance(document, dict) else None


def check_sidecar(sidecar: dict, path: Path, has_model: bool) -> None:
    """`HeadError` unless `sidecar` has the fields a head needs (not null), each known field of its type."""
    from pipeline.cache.key import FeatureSpec

    required = REQUIRED_FIELDS + (MODEL_FIELDS if has_model else ())
    missing = [field for field in required if sidecar.get(field) is None]
    if missing:
        raise HeadError(f"head {path} has no {', '.join(missing)}; the sidecar was edited or damaged: {FIX}")
    for field, (types, wanted) in FIELD_TYPES.items():
        value = sidecar.get(field)  # None stands for "not recorded" (an outside model has no model_file)
        if value is not None and (not isinstance(value, types) or isinstance(value, bool)):
            raise HeadError(f"head {path}: {field} should be {wanted}, got {_shown(value)}; the sidecar was edited "
                            f"or damaged: {FIX}")
    names = sidecar["class_names"]
    if not names or not all(isinstance(name, str) for name in names) or len(set(names)) != len(names):
        raise HeadError(f"head {path}: class_names should be a list of distinct class names, got {_shown(names)}; "
                        f"{FIX}")
    if has_model:
        try:
            FeatureSpec.from_dict(sidecar["feature_spec"])
        except (KeyError, TypeError, ValueError, AttributeError) as error:
            raise HeadError(f"head {path}: feature_spec cannot be read ({_shown(error)}); {FIX}") from None
    for member in sidecar.get("members") or []:
        if not isinstance(member, dict) or not isinstance(member.get("sidecar"), str) or not _is_number(
                member.get("weight", 0.0)):
            raise HeadError(f"head {path}: members should be objects naming their sidecar and weight, got "
                            f"{_shown(member)}; {FIX}")
    views = sidecar.get("tta_views") or []
    if not all(isinstance(view, int) and not isinstance(view, bool) and view >= 0 for view in views):
        raise HeadError(f"head {path}: tta_views should be view indices (0, 1, ...), got {_shown(views)}; {FIX}")


def _is_number(value) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def check_keras_config(model_path: Path, head_path: Path) -> None:
    """Refuse a `.keras` file whose config names Python functions, foreign modules or huge sizes."""
    try:
        with zipfile.ZipFile(model_path) as archive:
            info = archive.getinfo("config.json")
            if info.file_size > MAX_KERAS_CONFIG_BYTES:
                raise HeadError(f"the model file {model_path} of head {head_path} has a {info.file_size:,}-byte "
                                f"config, more than a head's; {FIX}")
            config = json.loads(archive.read(info).decode("utf-8"))
    except (zipfile.BadZipFile, KeyError, OSError, ValueError, UnicodeDecodeError, RecursionError) as error:
        raise HeadError(f"the model file {model_path} of head {head_path} is not a readable .keras model "
                        f"({_shown(error)}); {FIX}") from None
    problem = _config_problem(config)
    if problem:
        raise HeadError(f"cannot load the model of head {head_path}: {model_path.name} {problem}; this tool loads "
                        f"only Keras' built-in layers and never runs code from a file: {FIX}")


def _config_problem(config) -> str | None:
    stack = [config]
    while stack:
        node = stack.pop()
        if isinstance(node, dict):
            module, class_name = node.get("module"), node.get("class_name")
            if class_name in FUNCTION_CLASS_NAMES:
                inner = node.get("config")
                name = inner.get("name") if isinstance(inner, dict) else inner
                return f"names a Python function (a {class_name} {_shown(name)}{_of_module(module)})"
            if isinstance(module, str) and not module.startswith(KERAS_MODULE_PREFIXES):
                return f"names the module {module!r}"
            stack.extend(value for key, value in node.items() if key not in UNSIZED_KEYS)
        elif isinstance(node, list):
            stack.extend(node)
        elif isinstance(node, int) and not isinstance(node, bool) and abs(node) > MAX_CONFIG_INTEGER:
            return f"declares a size of {node:,}, more than the {MAX_CONFIG_INTEGER:,} a head uses (a memory bomb?)"
    return None


def _of_module(module) -> str:
    return f" of module {module!r}" if isinstance(module, str) else ""


def check_npz_model(model_path: Path, head_path: Path, names: dict[str, int]) -> None:
    """Refuse an npz model unless it holds arrays `names` (name -> number of dimensions), unread till checked."""
    try:
        declared = check_npz(model_path)
    except NpzRefusal as error:
        raise HeadError(f"cannot load the model of head {head_path} ({error}); the file is damaged: "
                        "fit the head again") from None
    for name, ndim in names.items():
        if name not in declared:
            raise HeadError(f"the model file {model_path} of head {head_path} has no array {name!r} "
                            f"(it has: {', '.join(declared) or 'none'}); {FIX}")
        array = declared[name]
        if len(array.shape) != ndim or array.dtype.kind not in "fiu":
            raise HeadError(f"the model file {model_path} of head {head_path}: {name!r} is {array.shape} "
                            f"{array.dtype}, expected a {ndim}-D numeric array; {FIX}")


def check_linear_arrays(head, classes: int, head_path: Path) -> None:
    """A loaded linear head: coef (D, C), intercept (C,), mean and scale (D,), a positive temperature."""
    features = head.scaler_.mean.shape[0]
    expected = {"coef": (features, classes), "intercept": (classes,), "scale": (features,)}
    actual = {"coef": head.coef_.shape, "intercept": head.intercept_.shape, "scale": head.scaler_.scale.shape}
    _same_shapes(expected, actual, head_path)
    values = (head.coef_, head.intercept_, head.scaler_.mean, head.scaler_.scale, np.float64(head.temperature_))
    if not all(np.isfinite(v).all() for v in values) or not head.temperature_ > 0:
        raise HeadError(f"head {head_path} holds NaN or infinite weights (or a temperature that is not positive); "
                        f"it would predict nothing meaningful: {FIX}")


def check_knn_arrays(head, classes: int, head_path: Path) -> None:
    """A loaded k-NN head: memory (N, D), labels (N,) in 0..C-1, mean and scale (D,), 1 <= k <= N."""
    rows, features = head.memory_.shape
    _same_shapes({"labels": (rows,), "mean": (features,), "scale": (features,)},
                 {"labels": head.labels_.shape, "mean": head.scaler_.mean.shape, "scale": head.scaler_.scale.shape},
                 head_path)
    if head.num_classes_ != classes or not 1 <= head.k_ <= rows:
        raise HeadError(f"head {head_path} has k={head.k_} and {head.num_classes_} classes for {rows} remembered rows "
                        f"and {classes} class names; {FIX}")
    labels = head.labels_
    if labels.dtype.kind not in "iu" or (rows and (labels.min() < 0 or labels.max() >= classes)):
        raise HeadError(f"head {head_path} remembers labels outside 0..{classes - 1}; {FIX}")


def check_model_outputs(model, classes: int, head_path: Path) -> None:
    """A loaded Keras head must output one probability per class name."""
    outputs = list(model.outputs)
    width = outputs[0].shape[-1] if len(outputs) == 1 else f"{len(outputs)} outputs of"
    if width != classes:
        raise HeadError(f"the model of head {head_path} outputs {width} values, but the head names {classes} classes; "
                        f"{FIX}")


def _same_shapes(expected: dict, actual: dict, head_path: Path) -> None:
    wrong = [f"{name} {actual[name]} (expected {shape})" for name, shape in expected.items() if actual[name] != shape]
    if wrong:
        raise HeadError(f"head {head_path} has arrays of inconsistent shapes: {', '.join(wrong)}; {FIX}")


def describe_file(path: Path) -> str | None:
    """What `path` is, when it is a kind of file this tool knows (and not a head sidecar); None otherwise."""
    try:
        with path.open("rb") as handle:
            start = handle.read(2048 + len(HDF5_SIGNATURE))
    except OSError:
        return None
    if any(start[offset:offset + len(HDF5_SIGNATURE)] == HDF5_SIGNATURE for offset in _HDF5_USERBLOCK_OFFSETS):
        return _describe_hdf5(path)
    if start.startswith(_ZIP_MAGIC):
        return _describe_zip(path)
    document = read_json_document(path)
    if document is not None:
        return _describe_json(document)
    return _describe_image(path)


def _describe_hdf5(path: Path) -> str:
    from pipeline.cache.format import read_cache_info
    from pipeline.errors import PipelineError

    try:
        info = read_cache_info(path)
    except PipelineError:
        return "an HDF5 file but not a feature cache (Keras weights, or another program's data?)"
    return (f"a feature cache made by `extract` ({info.spec.backbone} {info.spec.layer}, {len(info.images.relpath)} "
            f"images); fit a head on it with `fit-head {path}` first")


def _describe_zip(path: Path) -> str:
    try:
        with zipfile.ZipFile(path) as archive:
            names = set(archive.namelist())
    except (zipfile.BadZipFile, OSError):
        return "a damaged zip file"
    if "config.json" in names and "metadata.json" in names:
        return "a Keras .keras model (a head's model file, or an `export`ed model)"
    if any(name.endswith(".npy") for name in names):
        return "an .npz array file (a head's model file, or features for `import-npz`)"
    return "a zip file"


def _describe_json(document: dict) -> str:
    if document.get("format") == "bottleneck-export":
        return "the metadata of an exported model (`export`)"
    if "command" in document and "outcome" in document:
        return f"the result.json of `{document['command']}` (an explain result)"
    return "a JSON file that is not a head sidecar (it has no \"format\": \"bottleneck-head\")"


def _describe_image(path: Path) -> str | None:
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(path) as image:
            return f"an image ({image.format} {image.width}x{image.height}); images are arguments of `predict`"
    except (UnidentifiedImageError, OSError, ValueError, SyntaxError, EOFError):
        return None


def _shown(value, limit: int = 60) -> str:
    text = repr(value) if not isinstance(value, BaseException) else (str(value) or type(value).__name__)
    text = text.splitlines()[0] if text else text
    return text if len(text) <= limit else text[:limit] + "..."
