"""Atomic file writes: every file the tool writes appears whole or not at all.

`atomic_write_path(final)` yields a temporary path in `final`'s folder (same file system, so the
rename is atomic) whose name keeps `final`'s extension, for writers that choose their format by
it (Keras `.keras`, NumPy `.npz`, Matplotlib `.png`). When the block ends normally the temporary
file is fsynced, renamed over `final`, and the folder is fsynced so the rename itself survives a
power cut. When the block raises (a full disk, an interruption), the temporary file is deleted and
`final` is left exactly as it was. Caches, segments, heads, sidecars, converted weights, npz
exports and PNGs are all written through it.

`atomic_write_dir(final)` does the same for a folder (an exported SavedModel): the writer fills a
temporary folder beside `final`; every file and folder in it is fsynced, then it is renamed into
place. An existing `final` is first renamed aside and deleted only after the new folder is in
place, so a reader sees the old folder or the new one, never a mixture.

Temporary names are `.<final name>.tmp<pid><final suffix>`: hidden, unique per process, and
recognisable (`TEMP_MARK`) so that leftovers of a killed process can be found and removed.
Writers that hold a lock remove their leftovers outright (`pipeline.cache.writer`); the others
(`export`, `fit-head`) call `remove_orphaned_temps`, which removes only the temporary files of
processes no longer running on this machine (a SIGKILL leaves them; any other failure already
deleted its own). A folder shared between machines may hold temporary files of a live process
on another host with a pid that is free here: do not run these commands on one folder from
several machines at the same moment.
"""

from __future__ import annotations

import contextlib
import logging
import os
import re
import shutil
from collections.abc import Iterator
from pathlib import Path

#: Every temporary file name contains this mark.
TEMP_MARK = ".tmp"
#: A temporary name: hidden, then anything, then the mark and the writer's pid, then a suffix or nothing.
_TEMP_NAME = re.compile(r"^\..*" + re.escape(TEMP_MARK) + r"(\d+)(?:\.[^/]*)?$")

log = logging.getLogger(__name__)


def temp_path_for(final: Path) -> Path:
    """The temporary path `atomic_write_path` uses for `final` in this process."""
    final = Path(final)
    return final.with_name(f".{final.name}{TEMP_MARK}{os.getpid()}{final.suffix}")


def fsync_file(path: Path) -> None:
    """Flush a written file's data and metadata to disk."""
    descriptor = os.open(path, os.O_RDONLY)
    try:
        os.fsync(descriptor)
    finally:
        os.close(descriptor)


def fsync_folder(folder: Path) -> None:
    """Flush a folder's entries (a rename or a new file in it) to disk."""
    descriptor = os.open(folder, os.O_RDONLY)
    try:
        os.fsync(descriptor)
    finally:
        os.close(descriptor)


@contextlib.contextmanager
def atomic_write_path(final: Path, make_folder: bool = True) -> Iterator[Path]:
    """Yield a temporary path to write; on success it replaces `final` atomically (see module doc).

    `make_folder` creates `final`'s folder first when it does not exist.
    """
    final = Path(final)
    if make_folder:
        final.parent.mkdir(parents=True, exist_ok=True)
    temp = temp_path_for(final)
    try:
        yield temp
        fsync_file(temp)
        os.replace(temp, final)
    finally:
        with contextlib.suppress(FileNotFoundError):
            temp.unlink()
    fsync_folder(final.parent)


def write_bytes_atomically(final: Path, data: bytes) -> Path:
    """Write `data` to `final` atomically; returns `final`."""
    with atomic_write_path(final) as temp:
        temp.write_bytes(data)
    return Path(final)


def write_text_atomically(final: Path, text: str) -> Path:
    """Write UTF-8 `text` to `final` atomically; returns `final`."""
    return write_bytes_atomically(final, text.encode("utf-8"))


@contextlib.contextmanager
def atomic_write_dir(final: Path, make_folder: bool = True) -> Iterator[Path]:
    """Yield a temporary folder to fill; on success it replaces the folder `final` (see module doc)."""
    final = Path(final)
    if make_folder:
        final.parent.mkdir(parents=True, exist_ok=True)
    temp = temp_path_for(final)
    aside = final.with_name(f".{final.name}{TEMP_MARK}{os.getpid()}.old")
    for leftover in (temp, aside):
        shutil.rmtree(leftover, ignore_errors=True)
    temp.mkdir()
    try:
        yield temp
        _fsync_tree(temp)
        if final.exists():
            os.replace(final, aside)
        os.replace(temp, final)
    finally:
        shutil.rmtree(temp, ignore_errors=True)
    fsync_folder(final.parent)
    shutil.rmtree(aside, ignore_errors=True)


def _fsync_tree(folder: Path) -> None:
    for root, _folders, files in os.walk(folder):
        for name in files:
            fsync_file(Path(root) / name)
        fsync_folder(Path(root))


def remove_orphaned_temps(folder: Path, final_name: str | None = None) -> list[Path]:
    """Delete the temporary files and folders in `folder` whose writing process is gone; returns them.

    Only temporaries of `final_name` when given (`.<final_name>.tmp<pid>...`), else every one in
    `folder`. Those of this process and of live processes are kept (see the module doc).
    """
    folder = Path(folder)
    if not folder.is_dir():
        return []
    removed = []
    for path in sorted(folder.iterdir()):
        match = _TEMP_NAME.match(path.name)
        if match is None or (final_name is not None and not path.name.startswith(f".{final_name}{TEMP_MARK}")):
            continue
        if _is_running(int(match.group(1))):
            continue
        if path.is_dir() and not path.is_symlink():
            shutil.rmtree(path, ignore_errors=True)
        else:
            path.unlink(missing_ok=True)
        log.info("removed %s, left behind by an interrupted run", path)
        removed.append(path)
    return removed


def _is_running(pid: int) -> bool:
    if pid == os.getpid():
        return True
    try:
        os.kill(pid, 0)
    except PermissionError:  # another user's live process
        return True
    except (ProcessLookupError, OverflowError, ValueError):  # gone, or a number no process can have
        return False
    return pid > 0  # kill(0, ...) would signal this process group
