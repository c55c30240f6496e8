"""Saved heads: a model file plus a JSON sidecar, and finding them again.

Heads of a cache live in `<cache dir>/heads/<cache file stem>/`, one sidecar per head:
`<kind>-<YYYYmmdd-HHMMSS>.json` next to its model file (`.npz` arrays or `.keras`) and its
confusion-matrix PNG. The sidecar records everything needed to trust and reuse the head: kind,
hyper-parameters, the search results, the feature key and spec, how the features were extracted
(weights source), class names, library versions and metrics per split. It is read and written as a
`HeadRecord` (`pipeline.heads.record`, which alone knows the JSON layout); `load_head` returns the
head with its record, and a kind without a model of its own (`HeadEntry.no_model`) is refused there.

Loading never executes code: arrays load with `allow_pickle=False` and Keras models with
`safe_mode=True`. A head folder is untrusted: sidecars, npz headers and `.keras` configs are
checked before loading and the loaded model against the class names (`pipeline.heads.checks`);
anything wrong, or a file of another kind given as a head, is a `HeadError` saying what it is.
"""

from __future__ import annotations

import json
from datetime import datetime, timezone
from pathlib import Path

from pipeline.atomic import write_text_atomically
from pipeline.errors import HeadError
from pipeline.heads.checks import (
    MAX_SIDECAR_BYTES,
    check_keras_config,
    check_knn_arrays,
    check_linear_arrays,
    check_model_outputs,
    check_npz_model,
    check_sidecar,
    describe_file,
    read_json_document,
)
from pipeline.heads.record import HEAD_FORMAT, HEAD_FORMAT_VERSION, HeadRecord
from pipeline.heads.registry import SAVED_KINDS

HEADS_SUBDIR = "heads"


def heads_dir_of(cache_path: Path) -> Path:
    """Where the heads fitted on `cache_path` are stored."""
    cache_path = Path(cache_path)
    return cache_path.parent / HEADS_SUBDIR / cache_path.stem


def new_head_stem(folder: Path, kind: str) -> Path:
    """A fresh `<folder>/<kind>-<timestamp>[-n]` path stem (no extension) that is not taken."""
    folder.mkdir(parents=True, exist_ok=True)
    stamp = datetime.now(timezone.utc).strftime("%Y%m%d-%H%M%S")
    stem, counter = folder / f"{kind}-{stamp}", 1
    while stem.with_suffix(".json").exists():
        counter += 1
        stem = folder / f"{kind}-{stamp}-{counter}"
    return stem


def write_sidecar(stem: Path, record: HeadRecord) -> Path:
    """Write `record` to `<stem>.json` atomically (the current format) and return its path."""
    path = Path(f"{stem}.json")
    return write_text_atomically(path, json.dumps(record.to_json(), indent=1))


def read_sidecar(path: Path) -> HeadRecord:
    """Read and check a head sidecar, upgraded to the current format; `HeadError` explains what is wrong."""
    path = Path(path)
    if path.suffix != ".json":
        candidate = path.with_suffix(".json")
        if candidate.is_file():
            path = candidate
    if not path.is_file():
        raise HeadError(f"head {path} does not exist; pass the .json file `fit-head` printed "
                        "(see `report` for all heads)")
    sidecar = read_json_document(path)
    if sidecar is None or sidecar.get("format") != HEAD_FORMAT:
        kind = describe_file(path)
        if kind is not None:
            raise HeadError(f"{path} is {kind}, not a head. A head is the .json sidecar `fit-head` printed, next "
                            "to its model file (`report CACHE` lists the heads of a cache)")
        if sidecar is None and path.suffix == ".json":
            raise HeadError(f"head file {path} is not valid JSON (or is over {MAX_SIDECAR_BYTES // 2**20} MB); "
                            "fit the head again")
        raise HeadError(f"{path} is not a head saved by this tool; pass the .json file `fit-head` printed")
    version = sidecar.get("format_version", 0)
    if not isinstance(version, int) or isinstance(version, bool):
        raise HeadError(f"head {path}: format_version should be a whole number, got {version!r}; fit the head again")
    if version > HEAD_FORMAT_VERSION:
        raise HeadError(f"{path} was saved by a newer version of this tool; upgrade to load it")
    kind = sidecar.get("kind")
    entry = SAVED_KINDS.get(kind) if isinstance(kind, str) else None
    check_sidecar(sidecar, path, has_model=entry is None or entry.has_model)
    return HeadRecord.from_json(sidecar, path)


def load_head(path: Path):
    """(head, record) for a sidecar path; the head is ready for `predict_proba`."""
    record = read_sidecar(path)
    kind = record.kind
    entry = SAVED_KINDS.get(kind)
    if entry is None:
        raise HeadError(f"head {path} has unknown kind {kind!r}; it was saved by another version of this tool")
    if not entry.has_model:
        raise HeadError(entry.no_model.format(path=path, external_name=record.external_name,
                                              members=", ".join(member.sidecar for member in record.members)))
    stem = record.stem
    model_file = str(record.model_file or "")
    if not model_file or model_file in (".", "..") or "/" in model_file or "\\" in model_file:
        raise HeadError(f"head {path} names its model file {model_file!r}, which must be a file name next to it; "
                        "the sidecar was edited or damaged: fit the head again")
    model_path = stem.with_name(model_file)
    if not model_path.is_file():
        raise HeadError(f"the model file {model_path} of head {path} is missing; fit the head again")
    _check_model_file(kind, model_path, path)
    try:
        head = entry.head_class().load(stem, record)
        _check_loaded(head, len(record.class_names), path)
    except HeadError:
        raise
    except Exception as error:
        raise HeadError(f"cannot load the model of head {path} ({type(error).__name__}: {_first_line(error)}); "
                        "the file is damaged: fit the head again") from error
    return head, record


#: Arrays (name -> dimensions) of the heads saved as `.npz`: k-NN, and the linear heads (logreg, svm).
_KNN_ARRAYS = {"mean": 1, "scale": 1, "memory": 2, "labels": 1, "k": 0, "num_classes": 0}
_LINEAR_ARRAYS = {"mean": 1, "scale": 1, "coef": 2, "intercept": 1, "temperature": 0}
_KNN_KIND = "knn"


def _check_model_file(kind: str, model_path: Path, path: Path) -> None:
    """Check a model file before it is loaded: `.keras` configs and npz headers (nothing is read yet)."""
    if model_path.suffix == ".keras":
        check_keras_config(model_path, path)
    elif model_path.suffix == ".npz":
        check_npz_model(model_path, path, _KNN_ARRAYS if kind == _KNN_KIND else _LINEAR_ARRAYS)


def _check_loaded(head, classes: int, path: Path) -> None:
    """Check a loaded head's arrays or model against its class names."""
    if hasattr(head, "coef_"):
        check_linear_arrays(head, classes, path)
    elif hasattr(head, "memory_"):
        check_knn_arrays(head, classes, path)
    elif getattr(head, "model_", None) is not None and not hasattr(head, "targets_"):
        check_model_outputs(head.model_, classes, path)


def _first_line(error: BaseException) -> str:
    text = str(error).strip() or type(error).__name__
    return text.splitlines()[0][:200]


def check_feature_key(record: HeadRecord, feature_key: str, what: str) -> None:
    """Refuse features whose key differs from the head's (other backbone, layer, weights...)."""
    if record.feature_key != feature_key:
        raise HeadError(
            f"head {record.path} was fitted on features with key {record.feature_key[:12]}, but {what} "
            f"has key {feature_key[:12]} (a different backbone, layer, weights, input size or preprocessing); "
            "fit a head on these features instead"
        )


def list_sidecars(cache_path: Path) -> list[HeadRecord]:
    """Every readable head sidecar of a cache, oldest first."""
    folder = heads_dir_of(cache_path)
    if not folder.is_dir():
        return []
    sidecars = []
    for path in sorted(folder.glob("*.json")):
        if path.name.startswith("."):  # a temporary file of an unfinished write
            continue
        try:
            sidecars.append(read_sidecar(path))
        except HeadError:
            continue
    return sorted(sidecars, key=lambda record: record.created or "")
