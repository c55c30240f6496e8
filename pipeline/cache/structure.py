"""The cheap structural rules every reader of a cache (or segment) file applies before reading rows.

A cache may come from anyone (a colleague's download, a shared cluster folder), so nothing in it
is trusted. `check_structure(handle)` walks every link of an open file and refuses, with
`CacheError`, what would make a reader follow the file elsewhere or misread it:

- soft and external links (an external link opens another file), HDF5 external raw storage (a
  dataset whose bytes live in another file, e.g. `/etc/passwd`) and virtual datasets (rows
  mapped from other files): the format uses none of them;
- a name of the format that is a group where a dataset belongs, or the other way round;
- a dataset whose dtype kind or rank is not the format's (string features, float labels, ...);
- columns that disagree in length (row_sha256 vs features, every images/ column vs images/label).

It reads no row and no column, only HDF5 metadata, so it costs milliseconds whatever the cache
size. Value rules that need the (small) image columns - labels inside the class list, rows inside
the features table - are `check_table`, applied by `pipeline.cache.format.read_cache_info`; the
expensive ones (every row's digest, finite values) stay in `cache verify`
(`pipeline.cache.verify`). Both `cache verify` and every reader use these same functions.
"""

from __future__ import annotations

from pathlib import Path

import h5py
import numpy as np

from pipeline.errors import CacheError

#: dtype kinds: signed/unsigned integers, floats, fixed bytes, variable-length (object).
_INTEGER, _FLOAT, _TEXT = "iu", "f", "SO"
#: Feature store dtypes a cache may hold (`pipeline.cache.key.STORE_DTYPES`, plus format 1's).
_FEATURE_DTYPES = (np.dtype("float16"), np.dtype("float32"))
#: name -> (dtype kinds, rank, length group). Length group "rows": the length of `features`;
#: "images": the length of images/label; "failures": of failures/relpath; None: unchecked.
_DATASETS = {
    "features": (_FLOAT, None, "rows"),
    "row_sha256": ("S", 1, "rows"),
    "row_view": (_INTEGER, 1, "rows"),
    "row_digest": (_INTEGER, 1, "rows"),
    "classes": (_TEXT, 1, None),
    "images/relpath": (_TEXT, 1, "images"),
    "images/label": (_INTEGER, 1, "images"),
    "images/split": (_TEXT, 1, "images"),
    "images/sha256": (_TEXT, 1, "images"),
    "images/row": (_INTEGER, 1, "images"),
    "images/size": (_INTEGER, 1, "images"),
    "images/mtime_ns": (_INTEGER, 1, "images"),
    "images/view_rows": (_INTEGER, None, None),
    "failures/relpath": (_TEXT, 1, "failures"),
    "failures/reason": (_TEXT, 1, "failures"),
}
_GROUPS = ("images", "failures", "targets", "shard")
#: Per extra target (`targets/<task>/...`) and per shard column (`shard/<column>`).
_TARGET_DATASETS = {"classes": (_TEXT, 1, None), "labels": (_INTEGER, 1, "images")}
_SHARD_DATASET = (_INTEGER, 1, None)
_LENGTH_OF = {"rows": "features", "images": "images/label", "failures": "failures/relpath"}


def check_structure(handle: h5py.File) -> None:
    """Refuse (`CacheError`) links, foreign storage and datasets of the wrong kind (see module doc)."""
    path = Path(handle.filename)
    links: dict[str, object] = {}
    _collect_links(handle, "", links)
    for name, link in links.items():
        if isinstance(link, h5py.ExternalLink):
            raise CacheError(f"cache file {path} links {name!r} to another file ({link.filename}); caches never do, "
                             "so it was crafted or damaged and is not read. "
                             "Delete it (`cache rm`) and run `extract` again")
        if isinstance(link, h5py.SoftLink):
            raise CacheError(f"cache file {path} has a link {name!r} -> {link.path!r}, which caches never have; "
                             "it was crafted or damaged and is not read. "
                             "Delete it (`cache rm`) and run `extract` again")
    datasets = {name: handle[name] for name, link in links.items() if _is_dataset(handle, name)}
    for name, dataset in datasets.items():
        if dataset.external or dataset.is_virtual:
            kind = "external raw storage" if dataset.external else "a virtual dataset"
            raise CacheError(f"cache file {path} stores {name!r} in other files ({kind}); caches keep every byte "
                             "inside the file, so it was crafted and is not read. Delete it (`cache rm`) and run "
                             "`extract` again")
    for name in _GROUPS:
        if name in links and name in datasets:
            raise _wrong(path, name, "a dataset where the format has a group")
    for name, rule in _rules(links).items():
        if name not in links:
            continue
        if name not in datasets:
            raise _wrong(path, name, "a group where the format has a dataset")
        _check_dataset(path, name, datasets[name], rule, datasets)


def check_table(path: Path, labels: np.ndarray, rows: np.ndarray, class_count: int, row_count: int,
                extra_labels: dict | None = None) -> None:
    """Refuse image labels outside the class list and rows outside the features table (`CacheError`).

    `extra_labels` maps each extra target to (its class count, its labels).
    """
    if len(labels) and (labels.min() < 0 or labels.max() >= class_count):
        raise _wrong(path, "images/label", f"labels outside the {class_count} classes")
    if len(rows) and (rows.min() < 0 or rows.max() >= row_count):
        raise _wrong(path, "images/row", f"rows outside the {row_count} rows of the features table")
    for task, (count, values) in (extra_labels or {}).items():
        if len(values) and (values.min() < 0 or values.max() >= count):
            raise _wrong(path, f"targets/{task}/labels", f"labels outside the {count} classes of target {task!r}")


def _collect_links(group: h5py.Group, prefix: str, links: dict) -> None:
    """Every link under `group` by full name, without following soft or external links."""
    for key in group.keys():
        name = f"{prefix}{key}"
        link = group.get(key, getlink=True)
        links[name] = link
        if isinstance(link, h5py.HardLink) and isinstance(group.get(key), h5py.Group):
            _collect_links(group[key], f"{name}/", links)


def _is_dataset(handle: h5py.File, name: str) -> bool:
    return handle.get(name, getclass=True) is h5py.Dataset


def _rules(links: dict) -> dict:
    rules = dict(_DATASETS)
    for name in links:
        parts = name.split("/")
        if parts[0] == "targets" and len(parts) == 3:
            rules[name] = _TARGET_DATASETS.get(parts[2], (_TEXT + _INTEGER, None, None))
        elif parts[0] == "shard" and len(parts) == 2:
            rules[name] = _SHARD_DATASET
    return rules


def _check_dataset(path: Path, name: str, dataset: h5py.Dataset, rule: tuple, datasets: dict) -> None:
    kinds, rank, length_group = rule
    dtype = dataset.dtype
    if dtype.kind not in kinds or (dtype.kind == "O" and h5py.check_vlen_dtype(dtype) not in (bytes, str)):
        raise _wrong(path, name, f"dtype {dtype}")
    if name == "features" and dtype not in _FEATURE_DTYPES:
        raise _wrong(path, name, f"dtype {dtype} (features are float16 or float32)")
    if name == "features" and len(dataset.shape) < 2 and dataset.shape != (0,):  # (0,): a shard with no rows
        raise _wrong(path, name, f"shape {dataset.shape} (features have a row axis and a feature axis)")
    if rank is not None and len(dataset.shape) != rank:
        raise _wrong(path, name, f"shape {dataset.shape} (expected {rank} axis)")
    reference = datasets.get(_LENGTH_OF.get(length_group))
    if reference is not None and reference.shape[:1] != dataset.shape[:1]:
        raise _wrong(path, name,
                     f"shape {dataset.shape} where {reference.name.lstrip('/')} has shape {reference.shape}")


def _wrong(path: Path, name: str, what: str) -> CacheError:
    return CacheError(f"cache file {path} has {what} in {name!r}, which the cache format does not allow; it is "
                      "damaged or was crafted, and is not read. Delete it (`cache rm`) and run `extract` again")
