"""One writer per cache: an exclusive `flock` on `<cache>.lock`, which exists only while it is held.

The kernel releases an flock when its holder dies, so a lock can never go stale; the lock file
records who holds it, for the message a second writer gets. Readers never take the lock.

The holder deletes the file before it releases the lock, so no `.lock` stays beside a cache.
Deleting an flock'ed file is safe only with a check: a waiter may lock the old file (inode) just
as it is unlinked while a newcomer creates and locks a new one. So a writer that obtains the lock
checks that the path still names the file it locked (same device and inode) and otherwise starts
over; whoever holds a lock on the file the path names is the one writer. A holder killed with
SIGKILL leaves its file behind, unlocked: the next writer takes it and deletes it when done.
"""

from __future__ import annotations

import contextlib
import fcntl
import logging
import os
import socket
from pathlib import Path

from pipeline.cache.format import lock_path_of
from pipeline.cache.key import now_iso
from pipeline.errors import CacheError, CacheLockedError

log = logging.getLogger(__name__)

_WAIT_HINT = "wait for it to finish, or pass --wait to start when it does"


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

    def __enter__(self) -> CacheLock:
        while True:
            handle = self._open()
            try:
                fcntl.flock(handle, fcntl.LOCK_EX | (0 if self.wait else fcntl.LOCK_NB))
            except BlockingIOError:
                handle.seek(0)
                holder = handle.read().strip() or "unknown process"
                handle.close()
                raise CacheLockedError(
                    f"cache {self.cache_path.name} is being written by another extract ({holder}); {self.busy_hint}"
                ) from None
            if _names_this_file(self.path, handle):
                break
            handle.close()  # its holder deleted it while we waited: lock the file the path names now
        self._handle = handle
        try:  # who holds the lock is only shown to a second writer: best effort on a full disk
            handle.seek(0)
            handle.truncate()
            handle.write(f"pid {os.getpid()} on {socket.gethostname()}, since {now_iso()}")
            handle.flush()
        except OSError as error:
            log.warning("could not record the lock holder in %s (%s)", self.path, error.strerror or error)
        return self

    def _open(self):
        """The lock file, opened for appending; `CacheError` with the fix where its folder cannot be written."""
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            return open(self.path, "a+")
        except OSError as error:  # a read-only folder (a shared cache), a full disk, a read-only mount
            raise CacheError(
                f"cannot take the writer lock {self.path} ({error.strerror or error}): the folder "
                f"{self.path.parent} cannot be written. Pass --cache-dir (or set BOTTLENECK_CACHE_DIR to) a folder "
                "you can write to, copying the cache there first if it holds rows you want to reuse") from error

    def __exit__(self, *exc) -> None:
        if self._handle is not None:
            with contextlib.suppress(OSError):
                self.path.unlink()  # while still holding the lock (module doc)
            fcntl.flock(self._handle, fcntl.LOCK_UN)
            self._handle.close()
            self._handle = None


def _names_this_file(path: Path, handle) -> bool:
    """True when `path` still names the open file `handle` (it was not deleted or replaced meanwhile)."""
    try:
        named = os.stat(path)
    except FileNotFoundError:
        return False
    held = os.fstat(handle.fileno())
    return (named.st_dev, named.st_ino) == (held.st_dev, held.st_ino)
