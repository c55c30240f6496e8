"""Crash-safe writing of feature caches: lock, committed segments, atomic consolidation.

While `extract` runs, finished rows are committed in small segment files inside
`<cache>.partial/`, each written to a temporary name, fsynced and renamed, so a segment either
exists whole or not at all. When extraction ends, the previous cache, the segments and any rows
borrowed from sibling caches with the same feature key are copied into a new file that replaces
the cache atomically; only then is `<cache>.partial/` removed. A crash or kill at any moment
therefore leaves the previous complete cache plus whole segments, and the next run resumes from
them. Only one writer per cache: `CacheLock` uses `flock`, which the kernel releases when its
holder dies, so a lock can never go stale.

HDF5 files are written through `_RecordingFile`: when the disk fills up (or any write fails) the
error is recorded and HDF5 is never shown a failed write, because HDF5 cannot close a file whose
flush failed and h5py then crashes the interpreter (h5py issue #914). The half-written temporary
file is deleted and the caller gets a `CacheError` saying what happened and what was kept.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import glob
import io
import json
import logging
import os
import shutil
import socket
import time
from collections import defaultdict
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path

import h5py
import numpy as np

from pipeline.cache.format import (
    FORMAT_NAME, PARTIAL_SUFFIX, READ_BLOCK_ROWS, find_caches, lock_path_of, open_cache_file, partial_dir_of, row_digest,
)
from pipeline.errors import CacheError, CacheLockedError

log = logging.getLogger(__name__)

SEGMENT_FORMAT = "bottleneck-feature-segment"
#: A segment is committed once it holds this many bytes of features ...
SEGMENT_TARGET_BYTES = 32 << 20
#: ... or this many seconds after its first row, whichever comes first (bounds work lost to a kill).
SEGMENT_MAX_SECONDS = 30.0
#: HDF5 chunks of about this size keep both row appends and block reads efficient.
CHUNK_TARGET_BYTES = 1 << 20
_TEMP_MARK = ".tmp"
_WAIT_HINT = "wait for it to finish, or pass --wait to start when it does"


@dataclass(frozen=True)
class RowSource:
    """Where an existing feature row lives: a cache or segment file and the row within it."""

    path: Path
    row: int


class CacheLock:
    """Exclusive writer lock on one cache (`<cache>.lock`, via flock).

    With `wait=False` a second writer fails at once with `CacheLockedError` naming the holder;
    with `wait=True` it blocks until the first one finishes. Readers never take the lock.
    """

    def __init__(self, cache_path: Path, wait: bool = False, busy_hint: str = _WAIT_HINT):
        """`busy_hint` ends the error a second writer gets: what the user can do about it."""
        self.path = lock_path_of(Path(cache_path))
        self.cache_path = Path(cache_path)
        self.wait = wait
        self.busy_hint = busy_hint
        self._handle = None

    def __enter__(self) -> "CacheLock":
        self.path.parent.mkdir(parents=True, exist_ok=True)
        handle = open(self.path, "a+")
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | (0 if self.wait else fcntl.LOCK_NB))
        except BlockingIOError:
            handle.seek(0)
            holder = handle.read().strip() or "unknown process"
            handle.close()
            raise CacheLockedError(
                f"cache {self.cache_path.name} is being written by another extract ({holder}); {self.busy_hint}"
            )
        self._handle = handle
        try:  # who holds the lock is only shown to a second writer: best effort on a full disk
            handle.seek(0)
            handle.truncate()
            handle.write(f"pid {os.getpid()} on {socket.gethostname()}, since {now_iso()}")
            handle.flush()
        except OSError as error:
            log.warning("could not record the lock holder in %s (%s)", self.path, error.strerror or error)
        return self

    def __exit__(self, *exc) -> None:
        if self._handle is not None:
            with contextlib.suppress(OSError):
                self._handle.seek(0)
                self._handle.truncate()
            fcntl.flock(self._handle, fcntl.LOCK_UN)
            self._handle.close()
            self._handle = None


class SegmentWriter:
    """Buffers finished rows and commits them as whole segment files (see module doc).

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
        temp = self.partial_dir / (name + _TEMP_MARK)

        def fill(handle, check):
            handle.attrs["format"] = SEGMENT_FORMAT
            handle.attrs["feature_key"] = self.key
            handle.create_dataset("features", data=features)
            check()
            handle.create_dataset("row_sha256", data=np.array(self._shas, dtype="S64"))
            handle.create_dataset("row_digest", data=np.array([row_digest(r) for r in features], dtype=np.uint64))

        try:
            _write_atomically(temp, final, fill)
        except (OSError, RuntimeError) as error:
            raise CacheError(
                f"could not commit finished rows to {self.partial_dir} ({_describe_write_error(error)}); "
                f"{_fix_for(error)} run `extract` again. Nothing was lost: the previous cache is intact and "
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
        if _TEMP_MARK in path.name:
            path.unlink(missing_ok=True)
            continue
        try:
            with h5py.File(path, "r") as handle:
                if handle.attrs.get("format") == SEGMENT_FORMAT and handle.attrs.get("feature_key") == key:
                    segments.append(path)
        except OSError:
            path.unlink(missing_ok=True)  # cannot happen after an atomic rename unless the disk lied
    return segments


def existing_rows(cache_path: Path, key: str) -> dict[str, RowSource]:
    """Every row already computed for `key`: in the cache, its segments, and sibling caches.

    Siblings are other caches in the same directory with the same feature key (e.g. the same
    images in a differently named folder): identical bytes are extracted once per directory.
    """
    cache_path = Path(cache_path)
    found: dict[str, RowSource] = {}
    sources = [p for p in find_caches(cache_path.parent) if p != cache_path]
    sources += committed_segments(partial_dir_of(cache_path), key)
    if cache_path.exists():
        sources.append(cache_path)  # last, so the cache's own rows win
    for path in sources:
        for sha, row in _row_shas(path, key):
            found[sha] = RowSource(path, row)
    return found


def _row_shas(path: Path, key: str) -> list[tuple[str, int]]:
    """(sha256, row) of every row of `path` computed for `key`; unreadable files contribute none."""
    try:
        handle = h5py.File(path, "r") if path.parent.name.endswith(PARTIAL_SUFFIX) else open_cache_file(path)
    except (CacheError, OSError) as error:
        log.warning("not reusing rows of %s: %s", path, error)
        return []
    with handle:
        try:
            if handle.attrs.get("feature_key") != key:
                return []
            return [(sha.decode(), row) for row, sha in enumerate(handle["row_sha256"][()])]
        except (KeyError, OSError, RuntimeError) as error:
            log.warning("not reusing rows of %s: it is damaged (%s)", path, error)
            return []


def write_cache(dest: Path, attrs: dict, view: dict, plan: list[RowSource], feature_shape, store_dtype: str) -> None:
    """Write a complete cache to `dest` atomically; its rows are copied from `plan` in order.

    `attrs` are the root attributes (JSON-able values already serialised); `view` holds the
    dataset arrays: classes, images/* columns, failures/*, and optional targets/<task>/*.
    On any write error (e.g. a full disk) `dest` is left as it was and `CacheError` explains.
    """
    dest = Path(dest)
    temp = dest.with_name(f".{dest.name}{_TEMP_MARK}{os.getpid()}")

    def fill(handle, check):
        handle.attrs["format"] = FORMAT_NAME
        for name, value in attrs.items():
            handle.attrs[name] = value
        _copy_rows(handle, plan, tuple(feature_shape), np.dtype(store_dtype), check)
        check()
        _write_view(handle, view)

    try:
        _write_atomically(temp, dest, fill)
    except (OSError, RuntimeError) as error:
        raise CacheError(
            f"could not write cache {dest} ({_describe_write_error(error)}); {_fix_for(error)} run `extract` "
            f"again. Nothing was lost: the previous cache is intact and finished rows are kept in "
            f"{partial_dir_of(dest)}"
        ) from error


def remove_stale_temps(cache_path: Path) -> list[Path]:
    """Delete temporary files a killed consolidation of `cache_path` left behind; returns them.

    Call only while holding the cache lock (no other writer of this cache can be running).
    """
    cache_path = Path(cache_path)
    stale = sorted(cache_path.parent.glob(f".{glob.escape(cache_path.name)}{_TEMP_MARK}*"))
    for path in stale:
        path.unlink(missing_ok=True)
        log.info("removed %s, left behind by an interrupted run", path)
    return stale


def _describe_write_error(error: BaseException) -> str:
    """One line for a failed write; HDF5's own messages span lines and carry timestamps."""
    if isinstance(error, OSError) and error.errno is not None and error.strerror:
        return f"{error.strerror}, errno {error.errno}"
    return (str(error).strip() or type(error).__name__).splitlines()[0]


def _fix_for(error: BaseException) -> str:
    if isinstance(error, OSError) and error.errno in (errno.ENOSPC, errno.EDQUOT):
        return "the disk is full: free some space (or use another --cache-dir) and"
    return "fix the cause and"


def remove_partial(cache_path: Path) -> None:
    """Delete `<cache>.partial/` once its rows are safely inside the cache."""
    shutil.rmtree(partial_dir_of(cache_path), ignore_errors=True)


def _copy_rows(handle: h5py.File, plan: list[RowSource], shape: tuple[int, ...], dtype: np.dtype, check) -> None:
    row_bytes = int(np.prod(shape, dtype=np.int64)) * dtype.itemsize
    chunk_rows = max(1, min(len(plan), CHUNK_TARGET_BYTES // max(1, row_bytes)))  # small caches stay small
    out = handle.create_dataset("features", shape=(len(plan),) + shape, maxshape=(None,) + shape,
                                dtype=dtype, chunks=(chunk_rows,) + shape)
    out_sha = np.empty(len(plan), dtype="S64")
    out_digest = np.empty(len(plan), dtype=np.uint64)
    sources = {}
    try:
        for path in {source.path for source in plan}:
            source = h5py.File(path, "r")
            sources[path] = (source, source["row_sha256"][()], source["row_digest"][()])
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
                source, shas, digests = sources[path]
                low, high = rows[0], rows[-1] + 1
                data = source["features"][low:high][rows - low] if high - low <= 2 * len(rows) else source["features"][rows]
                block[positions] = data
                out_sha[start + positions] = shas[rows]
                out_digest[start + positions] = digests[rows]
            out[start:start + len(part)] = block
            check()
    finally:
        for source, _, _ in sources.values():
            source.close()
    handle.create_dataset("row_sha256", data=out_sha)
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


def _write_atomically(temp: Path, final: Path, fill) -> None:
    """Create `temp` with `fill(handle, check)`, fsync it, rename it over `final`, fsync the folder.

    `fill` should call `check()` between large writes: it raises as soon as a write has failed.

    Any failure (a full disk, an interruption) deletes `temp` and leaves `final` as it was.
    """
    try:
        with _RecordingFile(temp) as raw:
            try:
                with h5py.File(raw, "w") as handle:
                    fill(handle, raw.check)
            except (OSError, RuntimeError) as error:
                if raw.error is None:
                    raise
                raise raw.error from error  # the first failure explains the rest
            raw.sync()
        os.replace(temp, final)
    finally:
        temp.unlink(missing_ok=True)
    folder = os.open(final.parent, os.O_RDONLY)
    try:
        os.fsync(folder)
    finally:
        os.close(folder)


class _RecordingFile(io.RawIOBase):
    """A new file for h5py's `fileobj` driver that records the first failed write (see module doc).

    After a failure, writes no longer reach the disk but are kept in memory and reported as done,
    and reads see them: HDF5 must read back exactly what it wrote, or it follows garbage metadata
    and crashes. Writers call `check()` between large writes so that HDF5 stops early and the
    in-memory part stays small; closing the file then succeeds, `sync()` raises the recorded
    `OSError` (errno intact), and the file must be thrown away.
    """

    def __init__(self, path: Path):
        super().__init__()
        self._file = open(path, "w+b", buffering=0)
        self._apparent_size = 0
        self._unwritten: list[tuple[int, bytes]] = []  # (offset, data) written after the failure
        self.error: OSError | None = None

    def check(self) -> None:
        """Raise the recorded write error, if any (call between large writes)."""
        if self.error is not None:
            raise self.error

    def readable(self) -> bool:
        return True

    def writable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return True

    def seek(self, offset: int, whence: int = os.SEEK_SET) -> int:
        if whence == os.SEEK_END:
            return self._file.seek(self._size() + offset)
        return self._file.seek(offset, whence)

    def tell(self) -> int:
        return self._file.tell()

    def readinto(self, buffer) -> int:
        start = self._file.tell()
        count = self._file.readinto(buffer)
        if not self._unwritten:
            return count
        view = memoryview(buffer).cast("B")
        visible = max(count, min(len(view), self._apparent_size - start))
        view[count:visible] = bytes(visible - count)  # beyond the real end: what HDF5 wrote, or zeros
        for offset, data in self._unwritten:  # in write order, so later writes win
            low, high = max(offset, start), min(offset + len(data), start + visible)
            if low < high:
                view[low - start:high - start] = data[low - offset:high - offset]
        self._file.seek(start + visible)
        return visible

    def write(self, data) -> int:
        view = memoryview(data).cast("B")
        start = self._file.tell()
        self._apparent_size = max(self._apparent_size, start + len(view))
        if self.error is None:
            try:
                done = 0
                while done < len(view):
                    done += self._file.write(view[done:])
                return len(view)
            except OSError as error:
                self.error = error
        self._unwritten.append((start, bytes(view)))
        self._file.seek(start + len(view))
        return len(view)

    def truncate(self, size: int | None = None) -> int:
        size = self.tell() if size is None else size
        self._apparent_size = size
        if self.error is None:
            try:
                return self._file.truncate(size)
            except OSError as error:
                self.error = error
        return size

    def sync(self) -> None:
        """Raise the recorded write error, or flush the file to disk."""
        self.check()
        os.fsync(self._file.fileno())

    def close(self) -> None:
        if not self.closed:
            self._file.close()
        super().close()

    def _size(self) -> int:
        return self._apparent_size if self.error is not None else os.fstat(self._file.fileno()).st_size


def json_attr(value) -> str:
    """Serialise an attribute value as canonical JSON."""
    return json.dumps(value, sort_keys=True)


def now_iso() -> str:
    """The current UTC time, ISO 8601 to the second."""
    return datetime.now(timezone.utc).isoformat(timespec="seconds")
