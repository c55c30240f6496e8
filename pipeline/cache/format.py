"""The feature cache file: its format, opening and reading its provenance, and finding caches.

One HDF5 file per (dataset, feature key), named `<dataset>-<backbone>-<layer>-<key10>.h5`:

    attrs   format, format_version, schema_version (the feature schema, part of the key),
            feature_key, feature_spec (JSON of FeatureSpec), weights (JSON: source, path,
            verified), origin (JSON: {"kind": "extracted"} or {"kind": "imported-npz", "file",
            "sha256"}), versions (JSON), dataset (JSON: name, root, layout, notes, carving:
            the fractions and seed of carved splits or null, shard: shard caches only),
            created, updated, view_digest
            (weights, origin and dataset are read and written as values by `pipeline.cache.provenance`)
    features        (rows, *feature_shape)  store dtype; one row per distinct image content
                    (per view of it, in a cache with views)
    row_sha256      (rows,)   sha256 of the image bytes each row was computed from
    row_view        (rows,)   caches with views only (`extract --views K`): the view index of each
                              row (0 = the plain image); a row is addressed by (sha256, view)
    row_digest      (rows,)   blake2b-64 of the row's bytes, checked by `verify_cache`
    classes         (classes,) class names, label order
    images/         one entry per file of the dataset: relpath (bytes), label, split, sha256,
                    row (index into features), size, mtime_ns (for the stat fast path); caches
                    with views add view_rows (images, K + 1): the row of each view, view 0 first
                    (= row)
    targets/<task>/ optional extra label columns: classes, labels (aligned with images/)
    shard/          shard caches only (`extract --shard`): image_position (aligned with images/) and
                    failure_position (aligned with failures/, -1 for unhashable files): where each
                    entry sits in the full dataset index, for `merge` (see `pipeline.cache.shard`)
    failures/       relpath, reason: files that are part of the dataset but have no features

The file is only ever replaced whole (written to a temporary file, then renamed), so a reader
sees either the previous complete cache or the new one. Rows of an unfinished extraction live
in `<cache>.partial/` next to it (see `pipeline.cache.segments`). Files of format 1 (the first
release) open too: `pipeline.cache.legacy` recovers the fields they lacked, and the next
`extract` rewrites them. A file from a newer format is refused with the fix. Nothing here imports
TensorFlow; nothing outside `pipeline.cache` opens a cache's HDF5 directly.
"""

from __future__ import annotations

import json
import os
import re
from dataclasses import dataclass, replace
from pathlib import Path

import h5py
import numpy as np

from pipeline.atomic import TEMP_MARK
from pipeline.cache import legacy
from pipeline.cache.key import FeatureSpec
from pipeline.cache.provenance import DatasetInfo, OriginInfo, WeightsInfo
from pipeline.cache.structure import check_structure, check_table
from pipeline.data.dataset import SPLITS, SplitCarving
from pipeline.data.hashing import FileStamp
from pipeline.errors import CacheError

FORMAT_NAME = "bottleneck-feature-cache"
#: Version of the file layout (not of the features: that is `key.SCHEMA_VERSION`). 2 added
#: format_version, origin, dataset.carving and structured resize fields.
FORMAT_VERSION = 2
CACHE_SUFFIX = ".h5"
#: The bytes every HDF5 file without a user block starts with (the HDF5 format specification).
HDF5_SIGNATURE = b"\x89HDF\r\n\x1a\n"
#: The end of a shard cache's name (before the suffix), as `extract --shard I/N` writes it.
SHARD_NAME_PATTERN = re.compile(r"\.shard-(\d+)-of-(\d+)$")
PARTIAL_SUFFIX = ".partial"
LOCK_SUFFIX = ".lock"
_REQUIRED = ("features", "row_sha256", "row_digest", "classes", "images", "failures")
FIX_DAMAGED = ("delete it (`cache rm`) and run `extract` again; "
               "features in other caches of the same directory are reused")


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
    view_rows: np.ndarray | None = None  # (images, K + 1) in a cache with views, else None

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
    weights: WeightsInfo
    versions: dict
    dataset: DatasetInfo
    created: str
    updated: str
    class_names: tuple[str, ...]
    extra_targets: dict
    images: CachedImages
    failures: tuple[tuple[str, str], ...]
    feature_shape: tuple[int, ...]
    row_count: int
    origin: OriginInfo
    format_version: int

    @property
    def is_imported(self) -> bool:
        """True when the features were imported from an npz file rather than extracted here."""
        return self.origin.is_imported

    @property
    def carving(self) -> SplitCarving | None:
        """How extract carved the splits the dataset lacked (None when it carved none)."""
        return self.dataset.carving

    @property
    def views(self):
        """How the cache's augmented views are drawn (`pipeline.data.views.ViewSpec`), or None without views."""
        return self.spec.views

    @property
    def data_root(self) -> Path:
        return Path(self.dataset.root or ".")

    @property
    def shard(self) -> dict | None:
        """For a shard cache (`extract --shard I/N`): its shard attributes, e.g. {"index": 0, "count": 4, ...}."""
        return self.dataset.shard

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
    """Open a cache read-only, turning damage or a foreign file into a `CacheError`.

    Every reader opens caches here, so every reader applies `check_structure`: no link, external
    storage or virtual dataset is followed, and every dataset has the format's kind and shape.
    """
    path = Path(path)
    if not path.is_file():
        raise CacheError(f"cache file {path} does not exist; run `extract` first, or pass the file `extract` printed")
    if path.suffix != CACHE_SUFFIX and not _starts_as_hdf5(path):
        raise CacheError(f"{path} is not a feature cache ({_what_file(path)}); pass a cache `extract` wrote "
                         "(`cache ls` lists them), or a spec of one such as DATASET/BACKBONE")
    try:
        handle = h5py.File(path, "r")
    except OSError as error:
        raise CacheError(f"cache file {path} is damaged or not HDF5 ({first_line(error)}); {FIX_DAMAGED}") from error
    try:
        if handle.attrs.get("format") != FORMAT_NAME:
            raise CacheError(f"{path} is an HDF5 file but not a feature cache made by this tool; "
                             "pass a cache `extract` printed")
        version = format_version_of(handle)
        if version > FORMAT_VERSION:
            raise CacheError(f"cache file {path} has format version {version}, written by a newer release of this tool "
                             f"(this one reads versions up to {FORMAT_VERSION}); upgrade it "
                             "(pip install -U bottleneck-pipeline, or pull the repository) to use the cache")
        schema = int(handle.attrs.get("schema_version", -1))
        spec_schema = json.loads(handle.attrs["feature_spec"]).get("schema_version")
        if schema != spec_schema:
            raise CacheError(f"cache file {path} has inconsistent schema versions; {FIX_DAMAGED}")
        check_structure(handle)
    except CacheError:
        handle.close()
        raise
    except (KeyError, ValueError, TypeError, AttributeError, OSError, RuntimeError) as error:
        handle.close()
        raise CacheError(f"cache file {path} has damaged provenance attributes ({first_line(error)}); "
                         f"{FIX_DAMAGED}") from error
    return handle


def _starts_as_hdf5(path: Path) -> bool:
    """Whether the file begins with the HDF5 signature (caches are written without a user block)."""
    with open(path, "rb") as handle:
        return handle.read(len(HDF5_SIGNATURE)) == HDF5_SIGNATURE


def _what_file(path: Path) -> str:
    """What a file given as a cache seems to be instead, for the error message."""
    if path.suffix == ".json":
        return "a JSON file, such as a head's sidecar: a head records the cache it was fitted on under `cache`"
    return f"not an HDF5 file, and not named *{CACHE_SUFFIX}"


def read_cache_info(path: Path) -> CacheInfo:
    """Read a cache's provenance and dataset view (not the features). Raises `CacheError` when damaged."""
    path = Path(path)
    with open_cache_file(path) as handle:
        try:
            return _read_info(path, handle)
        except (KeyError, ValueError, OSError, TypeError) as error:
            raise CacheError(f"cache file {path} is damaged or incomplete ({first_line(error)}); "
                             f"{FIX_DAMAGED}") from error


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
    spec = FeatureSpec.from_json(handle.attrs["feature_spec"])
    if spec.views is not None:
        table = replace(table, view_rows=images["view_rows"][()].astype(np.int64).reshape(-1, spec.views.per_image))
    weights = json.loads(handle.attrs["weights"])
    dataset = json.loads(handle.attrs["dataset"])
    version = format_version_of(handle)
    if version == legacy.FORMAT_1:
        origin = legacy.origin_v1(spec.weights_fingerprint, weights)
        dataset["carving"] = legacy.carving_v1(dataset.get("notes"))
    else:
        origin = json.loads(handle.attrs["origin"])
    check_table(path, table.label, table.row, handle["classes"].shape[0], features.shape[0],
                {task: (len(classes), labels) for task, (classes, labels) in extra.items()})
    if table.view_rows is not None:
        check_table(path, np.zeros(0, np.int64), table.view_rows.ravel(), 0, features.shape[0])
    return CacheInfo(
        path=path,
        spec=spec,
        key=str(handle.attrs["feature_key"]),
        weights=WeightsInfo.from_dict(weights),
        versions=json.loads(handle.attrs["versions"]),
        dataset=DatasetInfo.from_dict(dataset),
        created=str(handle.attrs["created"]),
        updated=str(handle.attrs["updated"]),
        class_names=tuple(n.decode() if isinstance(n, bytes) else n for n in handle["classes"][()]),
        extra_targets=extra,
        images=table,
        failures=failures,
        feature_shape=tuple(features.shape[1:]),
        row_count=int(features.shape[0]),
        origin=OriginInfo.from_dict(origin),
        format_version=version,
    )


def format_version_of(handle: h5py.File) -> int:
    """The format version of an open cache (format 1 did not record one)."""
    return int(handle.attrs.get("format_version", legacy.FORMAT_1))


def read_file_stamps(cache_path: Path) -> dict:
    """{absolute path: (FileStamp, sha256)} of every image the cache lists, for the stat fast path.

    Empty when the cache does not exist or cannot be read: hashing then simply starts afresh.
    """
    if not Path(cache_path).exists():
        return {}
    try:
        with open_cache_file(cache_path) as handle:
            images = handle["images"]
            relpaths = images["relpath"][()]
            shas = images["sha256"][()].astype(str)
            sizes, mtimes = images["size"][()], images["mtime_ns"][()]
            root = DatasetInfo.from_dict(json.loads(handle.attrs["dataset"])).root
    except (CacheError, KeyError, OSError, ValueError, TypeError):
        return {}
    return {
        str(Path(root) / os.fsdecode(bytes(p))): (FileStamp(int(s), int(m)), sha)
        for p, sha, s, m in zip(relpaths, shas, sizes, mtimes)
    }


def feature_shape_of(path: Path) -> tuple[int, ...]:
    """The per-row feature shape of a cache or segment file."""
    with h5py.File(path, "r") as handle:
        return tuple(handle["features"].shape[1:])


def created_of(path: Path) -> str | None:
    """When the cache at `path` was first written, or None when it does not exist."""
    if not Path(path).exists():
        return None
    with open_cache_file(path) as handle:
        return str(handle.attrs["created"])


def find_caches(cache_dir: Path) -> list[Path]:
    """Cache files directly inside `cache_dir`, sorted by name (temporary files excluded)."""
    cache_dir = Path(cache_dir)
    if not cache_dir.is_dir():
        return []
    return sorted(p for p in cache_dir.iterdir()
                  if p.suffix == CACHE_SUFFIX and p.is_file() and TEMP_MARK not in p.name)


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


def first_line(error: BaseException) -> str:
    return (str(error).strip() or type(error).__name__).splitlines()[0]
