"""Writing HDF5 files atomically and surviving a full disk.

`write_h5_atomically(final, fill)` creates the file through `pipeline.atomic.atomic_write_path`
(temporary file, fsync, rename, folder fsync) and writes it through `RecordingFile`: when the
disk fills up (or any write fails) the error is recorded and HDF5 is never shown a failed write,
because HDF5 cannot close a file whose flush failed and h5py then crashes the interpreter (h5py
issue #914). The half-written temporary file is deleted and the first error is raised, with its
errno, for the caller to explain (`describe_write_error`, `fix_for`).
"""

from __future__ import annotations

import errno
import io
import os
from pathlib import Path

import h5py

from pipeline.atomic import atomic_write_path


def write_h5_atomically(final: Path, fill) -> None:
    """Create `final` with `fill(handle, check)`; it appears whole or not at all (see module doc).

    `fill` should call `check()` between large writes: it raises as soon as a write has failed.
    Any failure (a full disk, an interruption) leaves `final` as it was.
    """
    with atomic_write_path(final, make_folder=False) as temp:
        with RecordingFile(temp) as raw:
            try:
                with h5py.File(raw, "w") as handle:
                    fill(handle, raw.check)
            except (OSError, RuntimeError) as error:
                if raw.error is None:
                    raise
                raise raw.error from error  # the first failure explains the rest
            raw.sync()


def describe_write_error(error: BaseException) -> str:
    """One line for a failed write; HDF5's own messages span lines and carry timestamps."""
    if isinstance(error, OSError) and error.errno is not None and error.strerror:
        return f"{error.strerror}, errno {error.errno}"
    return (str(error).strip() or type(error).__name__).splitlines()[0]


def fix_for(error: BaseException) -> str:
    """The first half of the fix for a failed write, completed by the caller ("... and run X again")."""
    if isinstance(error, OSError) and error.errno in (errno.ENOSPC, errno.EDQUOT):
        return "the disk is full: free some space (or use another --cache-dir) and"
    return "fix the cause and"


class RecordingFile(io.RawIOBase):
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
