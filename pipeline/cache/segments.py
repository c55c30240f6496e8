"""Committed segments: the rows an unfinished extraction has finished, safe from any crash.

While `extract` runs, finished rows are committed in small segment files inside
`<cache>.partial/`, each written atomically (`pipeline.cache.h5file`), so a segment either exists
whole or not at all. `existing_rows` finds every row already computed for a feature key: in the
cache itself, in its segments, and in sibling caches of the same directory with the same key.
When extraction ends, `pipeline.cache.writer` consolidates them into the cache file.
"""

from __future__ import annotations

import logging
import os
import time
from dataclasses import dataclass
from pathlib import Path

import h5py
import numpy as np

from pipeline.atomic import TEMP_MARK
from pipeline.cache.format import PARTIAL_SUFFIX, find_caches, open_cache_file, partial_dir_of
from pipeline.cache.h5file import describe_write_error, fix_for, write_h5_atomically
from pipeline.cache.rows import ROW_VIEW, address_columns, read_row_addresses, row_digest
from pipeline.cache.structure import check_structure
from pipeline.errors import CacheError

log = logging.getLogger(__name__)

SEGMENT_FORMAT = "bottleneck-feature-segment"
#: A segment is committed once it holds this many bytes of features ...
SEGMENT_TARGET_BYTES = 32 << 20
#: ... or this many seconds after its first row, whichever comes first (bounds work lost to a kill).
SEGMENT_MAX_SECONDS = 30.0


@dataclass(frozen=True)
class RowSource:
    """Where an existing feature row lives: a cache or segment file and the row within it."""

    path: Path
    row: int


class SegmentWriter:
    """Buffers finished rows and commits them as whole segment files (see module doc); rows are
    given by their addresses (`pipeline.cache.rows`: sha256s, or row addresses of views).

    Not thread-safe: use it from one thread. `flush()` commits whatever is buffered.
    """

    def __init__(self, partial_dir: Path, key: str, feature_shape: tuple[int, ...], store_dtype: str,
                 max_rows: int | None = None):
        """`max_rows` commits a segment every that many rows (default: every `SEGMENT_TARGET_BYTES`)."""
        self.partial_dir = Path(partial_dir)
        self.key = key
        self.feature_shape = tuple(feature_shape)
        self.dtype = np.dtype(store_dtype)
        row_bytes = int(np.prod(self.feature_shape, dtype=np.int64)) * self.dtype.itemsize
        self.max_rows = max_rows or max(1, SEGMENT_TARGET_BYTES // row_bytes)
        self.rows_committed = 0
        self._shas: list[str] = []
        self._blocks: list[np.ndarray] = []
        self._started = None

    def add(self, shas: list[str], block: np.ndarray) -> None:
        """Buffer rows (`block` in the store dtype); commit a segment when thresholds are reached."""
        if not shas:
            return
        self._shas.extend(shas)
        self._blocks.append(np.asarray(block, dtype=self.dtype))
        self._started = self._started or time.monotonic()
        if len(self._shas) >= self.max_rows or time.monotonic() - self._started >= SEGMENT_MAX_SECONDS:
            self.flush()

    def flush(self) -> None:
        """Commit buffered rows as one segment (no-op when nothing is buffered)."""
        if not self._shas:
            return
        features = np.concatenate(self._blocks)
        self.partial_dir.mkdir(parents=True, exist_ok=True)
        name = f"seg-{time.time_ns()}-{os.getpid()}.h5"
        final = self.partial_dir / name

        def fill(handle, check):
            handle.attrs["format"] = SEGMENT_FORMAT
            handle.attrs["feature_key"] = self.key
            handle.create_dataset("features", data=features)
            check()
            shas, views = address_columns(self._shas)
            handle.create_dataset("row_sha256", data=shas)
            if views is not None:
                handle.create_dataset(ROW_VIEW, data=views)
            handle.create_dataset("row_digest", data=np.array([row_digest(r) for r in features], dtype=np.uint64))

        try:
            write_h5_atomically(final, fill)
        except (OSError, RuntimeError) as error:
            raise CacheError(
                f"could not commit finished rows to {self.partial_dir} ({describe_write_error(error)}); "
                f"{fix_for(error)} run `extract` again. Nothing was lost: the previous cache is intact and "
                f"the {self.rows_committed} rows committed by this run are kept for the next one"
            ) from error
        self.rows_committed += len(self._shas)
        self._shas, self._blocks, self._started = [], [], None


def committed_segments(partial_dir: Path, key: str) -> list[Path]:
    """Whole segments of `key` in `partial_dir`; leftovers of killed writes are deleted.

    Call only while holding the cache lock.
    """
    partial_dir = Path(partial_dir)
    if not partial_dir.is_dir():
        return []
    segments = []
    for path in sorted(partial_dir.iterdir()):
        if TEMP_MARK in path.name:
            path.unlink(missing_ok=True)
            continue
        try:
            with h5py.File(path, "r") as handle:
                if handle.attrs.get("format") == SEGMENT_FORMAT and handle.attrs.get("feature_key") == key:
                    segments.append(path)
        except OSError:
            path.unlink(missing_ok=True)  # cannot happen after an atomic rename unless the disk lied
    return segments


def existing_rows(cache_path: Path, key: str, plain_key: str | None = None) -> dict[str, RowSource]:
    """Every row already computed for `key`, by address: in the cache, its segments, and sibling caches.

    Siblings are other caches in the same directory with the same feature key (e.g. the same
    images in a differently named folder): identical bytes are extracted once per directory.
    For a cache with views, `plain_key` is the key of the same extraction without views: sibling
    caches with that key hold exactly its view-0 rows, so `extract --views K` after a plain
    `extract` computes only the augmented views.
    """
    cache_path = Path(cache_path)
    found: dict[str, RowSource] = {}
    siblings = [p for p in find_caches(cache_path.parent) if p != cache_path]
    sources = [(p, plain_key) for p in siblings] if plain_key else []
    sources += [(p, key) for p in siblings]
    sources += [(p, key) for p in committed_segments(partial_dir_of(cache_path), key)]
    if cache_path.exists():
        sources.append((cache_path, key))  # last, so the cache's own rows win
    for path, wanted in sources:
        for address, row in _row_addresses(path, wanted):
            found[address] = RowSource(path, row)
    return found


def _row_addresses(path: Path, key: str) -> list[tuple[str, int]]:
    """(address, row) of every row of `path` computed for `key`; unreadable files contribute none."""
    try:
        handle = h5py.File(path, "r") if path.parent.name.endswith(PARTIAL_SUFFIX) else open_cache_file(path)
    except (CacheError, OSError) as error:
        log.warning("not reusing rows of %s: %s", path, error)
        return []
    with handle:
        try:
            if handle.attrs.get("feature_key") != key:
                return []
            check_structure(handle)  # segments too: no row is ever copied from another file
            return [(address, row) for row, address in enumerate(read_row_addresses(handle))]
        except CacheError as error:
            log.warning("not reusing rows of %s: %s", path, error)
            return []
        except (KeyError, OSError, RuntimeError) as error:
            log.warning("not reusing rows of %s: it is damaged (%s)", path, error)
            return []
