"""Generic layout: one folder per class, optionally inside split folders.

    root/train/<class>/*.jpg   root/valid/<class>/*.jpg   root/test/<class>/*.jpg
    root/<class>/*.jpg                      (no split folders: all splits are carved)

Split folders may be named train/training, valid/validation/val, test/testing (any case). Images
may sit in sub-folders of a class folder. Class names are the folder names, sorted.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Callable

from pipeline.dataset import DatasetIndex, ImageRecord, SkippedFile
from pipeline.errors import DatasetError
from pipeline.images import is_candidate_image

NAME = "generic"
DESCRIPTION = "one folder per class, optionally under train/ valid|validation|val/ test/"

SPLIT_FOLDER_NAMES = {
    "train": "train",
    "training": "train",
    "valid": "valid",
    "validation": "valid",
    "val": "valid",
    "test": "test",
    "testing": "test",
}

EXPECTED_TREE = (
    "expected one folder per class (DATA/<class>/*.jpg), optionally inside split folders "
    "(DATA/train/<class>/*.jpg, DATA/valid/<class>/*.jpg, DATA/test/<class>/*.jpg)"
)


def detect(root: Path) -> bool:
    """Any folder with sub-folders can be read as the generic layout; it is the fallback."""
    return any(_subdirs(root))


def load(root: Path, class_name_of: Callable[[str], str] = str, layout_name: str = NAME) -> DatasetIndex:
    """Read `root`; `class_name_of` maps a class folder name to the class name shown to users.

    Classes are ordered by folder name, so a layout whose folders carry an order prefix (like
    `001.Affenpinscher`) keeps that order while showing the bare name.
    """
    split_dirs = _split_dirs(root)
    notes = []
    if split_dirs:
        ignored = sorted(d.name for d in _subdirs(root) if d.name.lower() not in SPLIT_FOLDER_NAMES)
        if ignored:
            notes.append(f"ignored folders that are not split folders: {', '.join(ignored)}")
        sources = [(split, folder) for split, folder in split_dirs.items()]
        notes.append("official splits from folders: " + ", ".join(f"{s}={f.name}" for s, f in sources))
    else:
        sources = [(None, root)]

    folders = sorted({d.name for _, parent in sources for d in _subdirs(parent)})
    if not folders:
        raise DatasetError(f"found no class folders in {root}; {EXPECTED_TREE}")
    class_names = tuple(class_name_of(folder) for folder in folders)
    if len(set(class_names)) != len(class_names):
        raise DatasetError(f"two class folders in {root} map to the same class name; rename one of them")
    label_of = {folder: label for label, folder in enumerate(folders)}

    records, skipped = [], []
    for split, parent in sources:
        for entry in sorted(os.scandir(parent), key=lambda e: e.name):
            if entry.is_file() and is_candidate_image(Path(entry.path)):
                skipped.append(SkippedFile(_relpath(root, entry.path), "image is not inside a class folder"))
        for class_dir in _subdirs(parent):
            for path in _image_files(class_dir):
                records.append(ImageRecord(relpath=_relpath(root, path), label=label_of[class_dir.name], split=split))
    if not records:
        raise DatasetError(f"found class folders but no image files in {root}; {EXPECTED_TREE}")
    return DatasetIndex(
        root=root, layout=layout_name, class_names=class_names, records=tuple(records),
        skipped=tuple(skipped), notes=tuple(notes),
    )


def _split_dirs(root: Path) -> dict[str, Path]:
    found: dict[str, Path] = {}
    for folder in _subdirs(root):
        split = SPLIT_FOLDER_NAMES.get(folder.name.lower())
        if split is None:
            continue
        if split in found:
            raise DatasetError(
                f"both {found[split].name}/ and {folder.name}/ in {root} look like the {split} split; "
                "keep one of them or rename the other"
            )
        found[split] = folder
    return found


def _subdirs(folder: Path) -> list[Path]:
    try:
        entries = sorted(os.scandir(folder), key=lambda e: e.name)
    except OSError as error:
        raise DatasetError(f"cannot list {folder}: {error.strerror or error}; check the path and its permissions")
    return [Path(e.path) for e in entries if e.is_dir() and not e.name.startswith(".")]


def _image_files(folder: Path) -> list[str]:
    found = []
    for dirpath, dirnames, filenames in os.walk(folder):
        dirnames[:] = sorted(d for d in dirnames if not d.startswith("."))
        found.extend(os.path.join(dirpath, name) for name in filenames if is_candidate_image(Path(name)))
    return sorted(found)


def _relpath(root: Path, path: str) -> str:
    return Path(os.path.relpath(path, root)).as_posix()
