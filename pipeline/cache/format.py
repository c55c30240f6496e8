"""The feature cache file: format, reading, discovery and verification.

One HDF5 file per (dataset, feature key), named `<dataset>-<backbone>-<layer>-<key10>.h5`:

    attrs   format, schema_version, feature_key, feature_spec (JSON of FeatureSpec), weights
            (JSON: source, path, verified), versions (JSON), dataset (JSON: name, root, layout,
            notes), created, updated
    features        (rows, *feature_shape)  store dtype; one row per distinct image content
    row_sha256      (rows,)   sha256 of the image bytes each row was computed from
    row_digest      (rows,)   blake2b-64 of the row's bytes, checked by `verify_cache`
    classes         (classes,) class names, label order
    images/         one entry per file of the dataset: relpath (bytes), label, split, sha256,
                    row (index into features), size, mtime_ns (for the stat fast path)
    targets/<task>/ optional extra label columns: classes, labels (aligned with images/)
    shard/          shard caches only (`extract --shard`): image_position (aligned with images/) and
                    failure_position (aligned with failures/, -1 for unhashable files): where each
                    entry sits in the full dataset index, for `merge` (see `pipeline.cache.shard`)
    failures/       relpath, reason: files that are part of the dataset but have no features

The file is only ever replaced whole (written to a temporary file, then renamed), so a reader
sees either the previous complete cache or the new one. Rows of an unfinished extraction live
in `<cache>.partial/` next to it (see `pipeline.cache.writer`). Nothing here imports TensorFlow.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
from dataclasses import dataclass
from pathlib import Path

import h5py
import numpy as np

from pipeline.data.dataset import SPLITS, safe_relpath
from pipeline.errors import CacheError, DatasetError
from pipeline.cache.key import FeatureSpec

FORMAT_NAME = "bottleneck-feature-cache"
CACHE_SUFFIX = ".h5"
#: The end of a shard cache's name (before the suffix), as `extract --shard I/N` writes it.
SHARD_NAME_PATTERN = re.compile(r"\.shard-(\d+)-of-(\d+)$")
PARTIAL_SUFFIX = ".partial"
LOCK_SUFFIX = ".lock"
#: Rows read per block when streaming features; bounds memory whatever the dataset size.
READ_BLOCK_ROWS = 512
_DIGEST_BYTES = 8
_REQUIRED = ("features", "row_sha256", "row_digest", "classes", "images", "failures")
_FIX_DAMAGED = "delete it (`cache rm`) and run `extract` again; features in other caches of the same directory are reused"


def row_digest(row: np.ndarray) -> int:
    """blake2b-64 of a feature row's bytes, as an unsigned integer."""
    return int.from_bytes(hashlib.blake2b(np.ascontiguousarray(row).tobytes(), digest_size=_DIGEST_BYTES).digest(), "little")


@dataclass(frozen=True)
class CachedImages:
    """The dataset view stored in a cache: column arrays, one entry per image file."""

    relpath: tuple[str, ...]
    label: np.ndarray
    split: np.ndarray
    sha256: np.ndarray
    row: np.ndarray
    size: np.ndarray
    mtime_ns: np.ndarray

    def __len__(self) -> int:
        return len(self.relpath)

    def in_split(self, split: str) -> np.ndarray:
        """Indexes of the images in `split`."""
        return np.flatnonzero(self.split == split)


@dataclass(frozen=True)
class CacheInfo:
    """Everything in a cache file except the feature values."""

    path: Path
    spec: FeatureSpec
    key: str
    weights: dict
    versions: dict
    dataset: dict
    created: str
    updated: str
    class_names: tuple[str, ...]
    extra_targets: dict
    images: CachedImages
    failures: tuple[tuple[str, str], ...]
    feature_shape: tuple[int, ...]
    row_count: int

    @property
    def data_root(self) -> Path:
        return Path(self.dataset.get("root", "."))

    @property
    def shard(self) -> dict | None:
        """For a shard cache (`extract --shard I/N`): its shard attributes, e.g. {"index": 0, "count": 4, ...}."""
        return self.dataset.get("shard")

    def require_whole_dataset(self) -> None:
        """`CacheError` for a shard cache: it holds only part of the dataset, so heads and exports refuse it."""
        if self.shard is not None:
            raise CacheError(
                f"{self.path.name} is shard {self.shard['index']}/{self.shard['count']} of a multi-machine extraction "
                f"and holds only part of the dataset; join the shards first with `merge {self.path.parent}`, then "
                "use the merged cache")

    def split_sizes(self) -> dict[str, int]:
        return {split: int((self.images.split == split).sum()) for split in SPLITS}


def cache_file_name(dataset_name: str, spec: FeatureSpec) -> str:
    """The file name of the cache for `dataset_name` and `spec`."""
    return f"{dataset_name}-{spec.short_name()}{CACHE_SUFFIX}"


def partial_dir_of(cache_path: Path) -> Path:
    return cache_path.with_name(cache_path.name + PARTIAL_SUFFIX)


def lock_path_of(cache_path: Path) -> Path:
    return cache_path.with_name(cache_path.name + LOCK_SUFFIX)


def open_cache_file(path: Path) -> h5py.File:
    """Open a cache read-only, turning damage or a foreign file into a `CacheError`."""
    path = Path(path)
    if not path.is_file():
        raise CacheError(f"cache file {path} does not exist; run `extract` first, or pass the file `extract` printed")
    try:
        handle = h5py.File(path, "r")
    except OSError as error:
        raise CacheError(f"cache file {path} is damaged or not HDF5 ({_first_line(error)}); {_FIX_DAMAGED}")
    try:
        if handle.attrs.get("format") != FORMAT_NAME:
            raise CacheError(f"{path} is an HDF5 file but not a feature cache made by this tool; pass a cache `extract` printed")
        schema = int(handle.attrs.get("schema_version", -1))
        spec_schema = json.loads(handle.attrs["feature_spec"]).get("schema_version")
        if schema != spec_schema:
            raise CacheError(f"cache file {path} has inconsistent schema versions; {_FIX_DAMAGED}")
    except CacheError:
        handle.close()
        raise
    except (KeyError, ValueError, TypeError, AttributeError, OSError, RuntimeError) as error:
        handle.close()
        raise CacheError(f"cache file {path} has damaged provenance attributes ({_first_line(error)}); {_FIX_DAMAGED}")
    return handle


def read_cache_info(path: Path) -> CacheInfo:
    """Read a cache's provenance and dataset view (not the features). Raises `CacheError` when damaged."""
    path = Path(path)
    with open_cache_file(path) as handle:
        try:
            return _read_info(path, handle)
        except (KeyError, ValueError, OSError, TypeError) as error:
            raise CacheError(f"cache file {path} is damaged or incomplete ({_first_line(error)}); {_FIX_DAMAGED}")


def _read_info(path: Path, handle: h5py.File) -> CacheInfo:
    missing = [name for name in _REQUIRED if name not in handle]
    if missing:
        raise KeyError(f"missing {', '.join(missing)}")
    images = handle["images"]
    table = CachedImages(
        relpath=tuple(os.fsdecode(bytes(p)) for p in images["relpath"][()]),
        label=images["label"][()].astype(np.int64),
        split=images["split"][()].astype(str),
        sha256=images["sha256"][()].astype(str),
        row=images["row"][()].astype(np.int64),
        size=images["size"][()].astype(np.int64),
        mtime_ns=images["mtime_ns"][()].astype(np.int64),
    )
    extra = {}
    for task, group in handle.get("targets", {}).items():
        extra[task] = (tuple(name.decode() if isinstance(name, bytes) else name for name in group["classes"][()]),
                       group["labels"][()].astype(np.int64))
    failures = tuple(
        (os.fsdecode(bytes(p)), r.decode() if isinstance(r, bytes) else str(r))
        for p, r in zip(handle["failures/relpath"][()], handle["failures/reason"][()])
    )
    features = handle["features"]
    return CacheInfo(
        path=path,
        spec=FeatureSpec.from_json(handle.attrs["feature_spec"]),
        key=str(handle.attrs["feature_key"]),
        weights=json.loads(handle.attrs["weights"]),
        versions=json.loads(handle.attrs["versions"]),
        dataset=json.loads(handle.attrs["dataset"]),
        created=str(handle.attrs["created"]),
        updated=str(handle.attrs["updated"]),
        class_names=tuple(n.decode() if isinstance(n, bytes) else n for n in handle["classes"][()]),
        extra_targets=extra,
        images=table,
        failures=failures,
        feature_shape=tuple(features.shape[1:]),
        row_count=int(features.shape[0]),
    )


def find_caches(cache_dir: Path) -> list[Path]:
    """Cache files directly inside `cache_dir`, sorted by name (temporary files excluded)."""
    cache_dir = Path(cache_dir)
    if not cache_dir.is_dir():
        return []
    return sorted(p for p in cache_dir.iterdir() if p.suffix == CACHE_SUFFIX and p.is_file() and ".tmp" not in p.name)


def is_shard_cache_name(file_name: str) -> bool:
    """True for the file name of a shard cache (`...shard-I-of-N.h5`)."""
    return file_name.endswith(CACHE_SUFFIX) and bool(SHARD_NAME_PATTERN.search(file_name[: -len(CACHE_SUFFIX)]))


def resolve_cache_argument(target: Path) -> Path:
    """A cache file as given, or the only whole-dataset cache inside a directory (shard caches are
    not candidates); `CacheError` otherwise."""
    target = Path(target)
    if target.is_dir():
        found = find_caches(target)
        caches = [path for path in found if not is_shard_cache_name(path.name)]
        if len(caches) == 1:
            return caches[0]
        if found and not caches:
            raise CacheError(f"{target} holds only shard caches of `extract --shard I/N`; join them with "
                             f"`merge {target}`, then use the merged cache")
        if not caches:
            raise CacheError(f"no feature cache in {target}; run `extract DATA_DIR --cache-dir {target}` first")
        names = "\n  ".join(str(c) for c in caches)
        raise CacheError(f"{target} holds {len(caches)} caches; pass one of them:\n  {names}")
    if not target.exists():
        raise CacheError(f"{target} does not exist; pass the cache file `extract` printed, or its directory")
    return target


def pool_rows(block: np.ndarray, pooling: str) -> np.ndarray:
    """Pool (n, h, w, c) blocks over the spatial axes ("avg" or "max"); 2-D blocks pass through."""
    block = block.astype(np.float32, copy=False)
    if block.ndim <= 2:
        return block
    axes = tuple(range(1, block.ndim - 1))
    return block.mean(axis=axes) if pooling == "avg" else block.max(axis=axes)


def load_rows(path: Path, rows: np.ndarray, pooling: str | None = "avg") -> np.ndarray:
    """Features of `rows` (in that order) as float32, spatially pooled unless `pooling` is None.

    Streams the file in blocks of `READ_BLOCK_ROWS`, so memory holds only the (pooled) result.
    """
    rows = np.asarray(rows, dtype=np.int64)
    with open_cache_file(path) as handle:
        try:
            return _read_rows(handle, rows, pooling)
        except (KeyError, OSError, RuntimeError) as error:
            raise CacheError(f"cannot read features from cache file {path} ({_first_line(error)}); the file is "
                             f"damaged: {_FIX_DAMAGED}")


def _read_rows(handle: h5py.File, rows: np.ndarray, pooling: str | None) -> np.ndarray:
    features = handle["features"]
    wanted = np.unique(rows)
    shape = features.shape[1:] if pooling is None else pool_rows(np.zeros((1,) + features.shape[1:], np.float32), pooling).shape[1:]
    out = np.empty((len(wanted),) + tuple(shape), dtype=np.float32)
    for start in range(0, len(wanted), READ_BLOCK_ROWS):
        chunk = wanted[start:start + READ_BLOCK_ROWS]
        span = chunk[-1] - chunk[0] + 1
        # Contiguous reads are fast; fall back to point selection when the rows are sparse.
        block = features[chunk[0]:chunk[-1] + 1][chunk - chunk[0]] if span <= 2 * len(chunk) else features[chunk]
        out[start:start + len(chunk)] = block if pooling is None else pool_rows(block, pooling)
    return out[np.searchsorted(wanted, rows)]


def verify_cache(path: Path, check_rows: bool = True) -> list[str]:
    """Check structure, provenance and (optionally) every row's digest. Returns the problems found."""
    try:
        info = read_cache_info(path)
    except CacheError as error:
        return [str(error)]
    problems = []
    if info.spec.key() != info.key:
        problems.append("feature_key does not match feature_spec (provenance was altered)")
    images = info.images
    if len(images) and (images.row.min() < 0 or images.row.max() >= info.row_count):
        problems.append("images/row points outside the features table")
    if len(images) and (images.label.min() < 0 or images.label.max() >= len(info.class_names)):
        problems.append("images/label points outside the class list")
    bad_splits = set(images.split.tolist()) - set(SPLITS)
    if bad_splits:
        problems.append(f"unknown split names: {sorted(bad_splits)}")
    escaping = [relpath for relpath in images.relpath + tuple(p for p, _ in info.failures) if not _stays_inside(relpath)]
    if escaping:
        problems.append(f"{len(escaping)} image paths escape the dataset root (first: {escaping[0]!r}); the cache was tampered with")
    try:
        with open_cache_file(path) as handle:
            problems.extend(_check_rows(handle, images, check_rows))
    except (KeyError, OSError, RuntimeError) as error:
        problems.append(f"the feature table cannot be read ({_first_line(error)}); the file is damaged")
    return problems


def damaged_cache_error(path: Path, problems: list[str]) -> CacheError:
    """The error for a cache that failed `verify_cache`: the problems, then how to fix it."""
    fix = "" if any("`cache rm`" in problem for problem in problems) else f"\n{_FIX_DAMAGED[0].upper()}{_FIX_DAMAGED[1:]}"
    return CacheError(f"cache {path} failed verification:\n  " + "\n  ".join(problems) + fix)


def _stays_inside(relpath: str) -> bool:
    try:
        safe_relpath(relpath)
    except DatasetError:
        return False
    return True


def _check_rows(handle: h5py.File, images: CachedImages, check_digests: bool) -> list[str]:
    problems = []
    row_sha = handle["row_sha256"][()].astype(str)
    if len(row_sha) != handle["features"].shape[0]:
        problems.append("row_sha256 and features have different lengths")
    if len(set(row_sha.tolist())) != len(row_sha):
        problems.append("row_sha256 has duplicates")
    in_range = len(images) == 0 or (images.row.min() >= 0 and images.row.max() < len(row_sha))
    if in_range and len(images) and not np.array_equal(row_sha[images.row], images.sha256):
        problems.append("images/sha256 disagrees with the rows it points to")
    if check_digests:
        problems.extend(_check_digests(handle))
    return problems


def _check_digests(handle: h5py.File) -> list[str]:
    features, digests = handle["features"], handle["row_digest"][()]
    if len(digests) != features.shape[0]:
        return ["row_digest and features have different lengths"]
    bad = []
    for start in range(0, features.shape[0], READ_BLOCK_ROWS):
        block = features[start:start + READ_BLOCK_ROWS]
        bad.extend(start + i for i, row in enumerate(block) if row_digest(row) != int(digests[start + i]))
    if bad:
        return [f"{len(bad)} feature rows do not match their digests (first: row {bad[0]}); the file is corrupted"]
    return []


def _first_line(error: BaseException) -> str:
    return (str(error).strip() or type(error).__name__).splitlines()[0]
