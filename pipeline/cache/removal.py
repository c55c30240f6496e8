"""Deleting a cache file with what the cache stage keeps beside it, under the cache's lock.

`remove_cache_files` removes the file, its unfinished segments (`<cache>.partial/`), temporary
files a killed writer left and the lock file, plus any `companions` the caller names: folders
that belong to the cache but are laid out by a later stage (the heads folder; see
`pipeline.caches.admin.remove_cache`). It refuses while an `extract` writes the cache, and never
removes a file that is not a feature cache.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterable
from pathlib import Path

import h5py

from pipeline.cache.format import CACHE_SUFFIX, FORMAT_NAME, lock_path_of, partial_dir_of
from pipeline.cache.lock import CacheLock
from pipeline.cache.writer import remove_stale_temps
from pipeline.errors import CacheError

_RM_BUSY_HINT = "stop it (Ctrl-C keeps its finished rows) or let it finish, then run `cache rm` again"


def remove_cache_files(path: Path, companions: Iterable[Path] = ()) -> list[str]:
    """Delete a cache file with its partial segments, temporary files, `companions` and any lock file a killed
    writer left.

    Returns what was removed. Refuses (`CacheLockedError`) while an `extract` is writing the cache, and
    (`CacheError`) when `path` is not a feature cache or does not exist.
    """
    path = Path(path)
    if not path.exists() and not partial_dir_of(path).is_dir():
        raise CacheError(f"{path} does not exist (and has no unfinished rows); `cache ls` lists the caches")
    _refuse_foreign(path)
    removed = []
    lock_file = lock_path_of(path)
    had_lock_file = lock_file.exists()
    with CacheLock(path, busy_hint=_RM_BUSY_HINT):
        try:
            removed += [str(p) for p in remove_stale_temps(path)]
            for extra in (partial_dir_of(path), *companions):
                if extra.is_symlink():  # remove the link only: its target may be anywhere, and is not ours
                    target = os.readlink(extra)
                    extra.unlink()
                    removed.append(f"{extra} (a symbolic link; its target {target} was kept)")
                elif extra.exists():
                    shutil.rmtree(extra)
                    removed.append(str(extra))
            if path.exists() or path.is_symlink():
                path.unlink()
                removed.append(str(path))
            lock_file.unlink(missing_ok=True)
        except OSError as error:
            done = f"; removed so far: {', '.join(removed)}" if removed else ""
            raise CacheError(f"could not remove {error.filename or path} ({error.strerror or error}); fix its "
                             f"permissions and run `cache rm` again{done}") from error
    return removed + ([str(lock_file)] if had_lock_file else [])


def _refuse_foreign(path: Path) -> None:
    """Only feature caches, damaged ones included, may be removed: never someone's other .h5 file."""
    if path.suffix != CACHE_SUFFIX:
        raise CacheError(f"{path} is not a feature cache (caches end in {CACHE_SUFFIX}); nothing was removed")
    if not path.exists():
        return  # only the unfinished rows of a stopped first run remain
    try:
        with h5py.File(path, "r") as handle:
            foreign = handle.attrs.get("format") != FORMAT_NAME
    except OSError:
        return  # not readable as HDF5: a damaged cache, which `cache rm` is meant for
    if foreign:
        raise CacheError(f"{path} is an HDF5 file but not a feature cache made by this tool; nothing was removed")
