"""Folder-walking helpers shared by the layout readers.

Listings are sorted by name so every run (and every machine) sees files in the same order.
Hidden entries (names starting with `.`) are skipped. Files that are not images by name are
never silently lost: `scan_images` returns them so layouts can say what they ignored.
"""

from __future__ import annotations

import os
from pathlib import Path

from pipeline.data.images import is_candidate_image
from pipeline.errors import DatasetError

#: Ignored files named in a note before "and N more"; enough to recognise the pattern.
EXAMPLES_SHOWN = 3


def subdirs(folder: Path) -> list[Path]:
    """Visible sub-folders of `folder`, sorted by name."""
    try:
        entries = sorted(os.scandir(folder), key=lambda e: e.name)
    except OSError as error:
        raise DatasetError(
            f"cannot list {folder}: {error.strerror or error}; check the path and its permissions") from error
    return [Path(e.path) for e in entries if e.is_dir() and not e.name.startswith(".")]


def files_in(folder: Path) -> list[Path]:
    """Visible regular files directly inside `folder`, sorted by name."""
    try:
        entries = sorted(os.scandir(folder), key=lambda e: e.name)
    except OSError as error:
        raise DatasetError(
            f"cannot list {folder}: {error.strerror or error}; check the path and its permissions") from error
    return [Path(e.path) for e in entries if e.is_file() and not e.name.startswith(".")]


def scan_images(folder: Path, recursive: bool = True) -> tuple[list[str], list[str]]:
    """(image files, other files) under `folder`, as sorted absolute path strings.

    "Image files" are candidates by name (`is_candidate_image`); their content is checked later.
    "Other files" are visible files that are not, such as `Thumbs.db` or `.mat` annotations.
    """
    images, others = [], []
    for dirpath, dirnames, filenames in os.walk(folder):
        dirnames[:] = sorted(d for d in dirnames if not d.startswith(".")) if recursive else []
        for name in sorted(filenames):
            if name.startswith("."):
                continue
            target = images if is_candidate_image(Path(name)) else others
            target.append(os.path.join(dirpath, name))
    return sorted(images), sorted(others)


def relpath(root: Path, path: str | Path) -> str:
    """`path` relative to `root`, with `/` separators."""
    return Path(os.path.relpath(path, root)).as_posix()


def ignored_files_note(root: Path, others: list[str]) -> list[str]:
    """A one-line note naming the non-image files a layout skipped (empty when there are none)."""
    if not others:
        return []
    return [f"ignored {count_of(len(others), 'file')} not named like an image: "
            f"{examples(relpath(root, p) for p in others)}"]


def examples(items, limit: int = EXAMPLES_SHOWN) -> str:
    """The first `limit` items joined with commas, plus "and N more" when there are more."""
    items = list(items)
    text = ", ".join(str(item) for item in items[:limit])
    return text + (f" and {len(items) - limit} more" if len(items) > limit else "")


def count_of(number: int, noun: str, plural: str | None = None) -> str:
    """"1 file", "3 files": a count with its noun in the right number (`plural` when not noun + "s")."""
    return f"{number} {noun}" if number == 1 else f"{number} {plural or noun + 's'}"
