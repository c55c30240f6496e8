"""Consolidating a cache: every row and the dataset view into one file that replaces the cache atomically.

When extraction (or a merge, or an npz import) ends, the rows planned for the cache - from the
previous cache, committed segments and sibling caches with the same feature key - are copied into
a new file that replaces the cache atomically; only then is `<cache>.partial/` removed. A crash
or kill at any moment therefore leaves the previous complete cache plus whole segments, and the
next run resumes from them. `pipeline.cache.builder` decides what to write; this module writes it.
"""

from __future__ import annotations

import glob
import json
import logging
import os
import shutil
from collections import defaultdict
from pathlib import Path

import h5py
import numpy as np

from pipeline.atomic import TEMP_MARK
from pipeline.cache.format import FORMAT_NAME, partial_dir_of
from pipeline.cache.h5file import describe_write_error, fix_for, write_h5_atomically
from pipeline.cache.rows import READ_BLOCK_ROWS, ROW_VIEW
from pipeline.cache.segments import RowSource
from pipeline.errors import CacheError

log = logging.getLogger(__name__)

#: HDF5 chunks of about this size keep both row appends and block reads efficient.
CHUNK_TARGET_BYTES = 1 << 20


def write_cache(dest: Path, attrs: dict, view: dict, plan: list[RowSource], feature_shape, store_dtype: str) -> None:
    """Write a complete cache to `dest` atomically; its rows are copied from `plan` in order.

    `attrs` are the root attributes (JSON-able values already serialised); `view` holds the
    dataset arrays: classes, images/* columns, failures/*, and optional targets/<task>/*.
    On any write error (e.g. a full disk) `dest` is left as it was and `CacheError` explains.
    """
    dest = Path(dest)

    def fill(handle, check):
        handle.attrs["format"] = FORMAT_NAME
        for name, value in attrs.items():
            handle.attrs[name] = value
        _copy_rows(handle, plan, tuple(feature_shape), np.dtype(store_dtype), check)
        check()
        _write_view(handle, view)

    try:
        write_h5_atomically(dest, fill)
    except (OSError, RuntimeError) as error:
        raise CacheError(
            f"could not write cache {dest} ({describe_write_error(error)}); {fix_for(error)} run `extract` "
            f"again. Nothing was lost: the previous cache is intact and finished rows are kept in "
            f"{partial_dir_of(dest)}"
        ) from error


def remove_stale_temps(cache_path: Path) -> list[Path]:
    """Delete temporary files a killed consolidation of `cache_path` left behind; returns them.

    Call only while holding the cache lock (no other writer of this cache can be running).
    """
    cache_path = Path(cache_path)
    stale = sorted(cache_path.parent.glob(f".{glob.escape(cache_path.name)}{TEMP_MARK}*"))
    for path in stale:
        path.unlink(missing_ok=True)
        log.info("removed %s, left behind by an interrupted run", path)
    return stale


def remove_partial(cache_path: Path) -> None:
    """Delete `<cache>.partial/` once its rows are safely inside the cache."""
    shutil.rmtree(partial_dir_of(cache_path), ignore_errors=True)


def _copy_rows(handle: h5py.File, plan: list[RowSource], shape: tuple[int, ...], dtype: np.dtype, check) -> None:
    row_bytes = int(np.prod(shape, dtype=np.int64)) * dtype.itemsize
    chunk_rows = max(1, min(len(plan), CHUNK_TARGET_BYTES // max(1, row_bytes)))  # small caches stay small
    out = handle.create_dataset("features", shape=(len(plan),) + shape, maxshape=(None,) + shape,
                                dtype=dtype, chunks=(chunk_rows,) + shape)
    out_sha = np.empty(len(plan), dtype="S64")
    out_view = np.zeros(len(plan), dtype=np.int32)
    out_digest = np.empty(len(plan), dtype=np.uint64)
    sources = {}
    try:
        for path in {source.path for source in plan}:
            source = h5py.File(path, "r")
            shas = source["row_sha256"][()]
            views = source[ROW_VIEW][()] if ROW_VIEW in source else np.zeros(len(shas), dtype=np.int32)
            sources[path] = (source, shas, views, source["row_digest"][()])
        for start in range(0, len(plan), READ_BLOCK_ROWS):
            part = plan[start:start + READ_BLOCK_ROWS]
            block = np.empty((len(part),) + shape, dtype=dtype)
            by_source = defaultdict(list)
            for position, source in enumerate(part):
                by_source[source.path].append((source.row, position))
            for path, pairs in by_source.items():
                pairs.sort()
                rows = np.array([row for row, _ in pairs])
                positions = np.array([position for _, position in pairs])
                source, shas, views, digests = sources[path]
                low, high = rows[0], rows[-1] + 1
                if high - low <= 2 * len(rows):
                    data = source["features"][low:high][rows - low]
                else:
                    data = source["features"][rows]
                block[positions] = data
                out_sha[start + positions] = shas[rows]
                out_view[start + positions] = views[rows]
                out_digest[start + positions] = digests[rows]
            out[start:start + len(part)] = block
            check()
    finally:
        for source, *_ in sources.values():
            source.close()
    handle.create_dataset("row_sha256", data=out_sha)
    if out_view.any():  # only caches with views have the column (see pipeline.cache.rows)
        handle.create_dataset(ROW_VIEW, data=out_view)
    handle.create_dataset("row_digest", data=out_digest)


def _write_view(handle: h5py.File, view: dict) -> None:
    text = h5py.string_dtype("utf-8")
    raw = h5py.vlen_dtype(bytes)
    handle.create_dataset("classes", data=np.array(view["classes"], dtype=object), dtype=text)
    images = handle.create_group("images")
    images.create_dataset("relpath", data=_bytes_array(view["relpath"]), dtype=raw)
    images.create_dataset("label", data=np.asarray(view["label"], dtype=np.int32))
    images.create_dataset("split", data=np.asarray(view["split"], dtype="S5"))
    images.create_dataset("sha256", data=np.asarray(view["sha256"], dtype="S64"))
    images.create_dataset("row", data=np.asarray(view["row"], dtype=np.int64))
    images.create_dataset("size", data=np.asarray(view["size"], dtype=np.int64))
    images.create_dataset("mtime_ns", data=np.asarray(view["mtime_ns"], dtype=np.int64))
    if "view_rows" in view:  # caches with views only: the row of each view of each image
        images.create_dataset("view_rows", data=np.asarray(view["view_rows"], dtype=np.int64))
    failures = handle.create_group("failures")
    failures.create_dataset("relpath", data=_bytes_array([p for p, _ in view["failures"]]), dtype=raw)
    failures.create_dataset("reason", data=np.array([r for _, r in view["failures"]], dtype=object), dtype=text)
    for task, (classes, labels) in view.get("targets", {}).items():
        group = handle.create_group(f"targets/{task}")
        group.create_dataset("classes", data=np.array(classes, dtype=object), dtype=text)
        group.create_dataset("labels", data=np.asarray(labels, dtype=np.int32))
    if "shard" in view:  # shard caches only: full-index positions, see pipeline.cache.shard
        group = handle.create_group("shard")
        for column, positions in view["shard"].items():
            group.create_dataset(column, data=np.asarray(positions, dtype=np.int64))


def _bytes_array(paths) -> np.ndarray:
    """Paths as raw bytes (non-UTF-8 file names survive exactly)."""
    return np.array([os.fsencode(path) for path in paths] or [], dtype=object)


def json_attr(value) -> str:
    """Serialise an attribute value as canonical JSON."""
    return json.dumps(value, sort_keys=True)
