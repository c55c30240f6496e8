"""Content hashes of image files, with a safe stat-based shortcut for unchanged files.

An image's identity is the sha256 of its bytes: renaming or relabelling a file never changes it,
and identical files share one identity. Hashing every file again on each run is wasted work, so
a previous run's hashes are reused for a file whose path, size and modification time (in
nanoseconds) are all unchanged - the same test `git` and `make` rely on.
"""

from __future__ import annotations

import hashlib
import os
import stat
from collections.abc import Iterable, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

#: Bytes read per call while hashing; large enough to amortise syscalls, small for memory.
READ_CHUNK_BYTES = 1 << 20
#: Threads hashing in parallel (hashlib releases the GIL, and reads overlap).
HASH_THREADS = 4


@dataclass(frozen=True)
class FileStamp:
    """What a file looked like when it was hashed."""

    size: int
    mtime_ns: int


@dataclass(frozen=True)
class HashResult:
    """The sha256 (hex) of one file, or the reason it could not be read."""

    path: Path
    sha256: str | None
    stamp: FileStamp | None
    error: str | None = None
    reused: bool = False


def sha256_file(path: Path | str) -> str:
    """Return the hex sha256 of the file's bytes."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(READ_CHUNK_BYTES), b""):
            digest.update(block)
    return digest.hexdigest()


def hash_files(
    paths: Iterable[Path],
    known: Mapping[str, tuple[FileStamp, str]] | None = None,
    key_of=str,
) -> list[HashResult]:
    """Hash `paths`, reusing `known[key_of(path)] = (stamp, sha256)` when the stamp still matches.

    Results are returned in the order of `paths`. Unreadable files get `sha256=None` and an
    `error` sentence instead of raising, so one bad file never stops a run.
    """
    known = known or {}

    def one(path: Path) -> HashResult:
        try:
            info = os.stat(path)
        except FileNotFoundError:
            reason = "broken symbolic link (its target does not exist)" if path.is_symlink() else "file not found"
            return HashResult(path, None, None, reason)
        except OSError as error:
            return HashResult(path, None, None, f"cannot read file ({error.strerror or error})")
        stamp = FileStamp(size=info.st_size, mtime_ns=info.st_mtime_ns)
        if not stat.S_ISREG(info.st_mode):
            return HashResult(path, None, stamp, "not a regular file (a pipe, socket or device), so it is not read")
        previous = known.get(key_of(path))
        if previous is not None and previous[0] == stamp:
            return HashResult(path, previous[1], stamp, reused=True)
        try:
            return HashResult(path, sha256_file(path), stamp)
        except PermissionError:
            return HashResult(path, None, stamp, "permission denied while reading the file")
        except OSError as error:
            return HashResult(path, None, stamp, f"cannot read file ({error.strerror or error})")

    paths = list(paths)
    with ThreadPoolExecutor(max_workers=HASH_THREADS) as pool:
        return list(pool.map(one, paths))
