"""Generic layout: one folder per class, optionally inside split folders.

    root/train/<class>/*.jpg   root/valid/<class>/*.jpg   root/test/<class>/*.jpg
    root/<class>/*.jpg                      (no split folders: all splits are carved)

Split folders may be named train/training, valid/validation/val, test/testing (any case). Images
may sit in sub-folders of a class folder. Class names are the folder names, sorted.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from pipeline.data.dataset import DatasetIndex, ImageRecord, SkippedFile
from pipeline.data.images import is_candidate_image
from pipeline.data.layouts.files import files_in, ignored_files_note, relpath, scan_images, subdirs
from pipeline.errors import DatasetError

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
    return root.is_dir() and any(subdirs(root))


def load(root: Path, class_name_of: Callable[[str], str] = str, layout_name: str = NAME) -> DatasetIndex:
    """Read `root`; `class_name_of` maps a class folder name to the class name shown to users.

    Classes are ordered by folder name, so a layout whose folders carry an order prefix (like
    `001.Affenpinscher`) keeps that order while showing the bare name.
    """
    if not root.is_dir():
        raise DatasetError(f"{root} is not a folder; {EXPECTED_TREE}")
    found_splits = split_dirs(root)
    notes = []
    if found_splits:
        ignored = sorted(d.name for d in subdirs(root) if d.name.lower() not in SPLIT_FOLDER_NAMES)
        if ignored:
            notes.append(f"ignored folders that are not split folders: {', '.join(ignored)}")
        sources = list(found_splits.items())
        notes.append("official splits from folders: " + ", ".join(f"{s}={f.name}" for s, f in sources))
    else:
        sources = [(None, root)]

    folders = sorted({d.name for _, parent in sources for d in subdirs(parent)})
    if not folders:
        raise DatasetError(f"found no class folders in {root}; {EXPECTED_TREE}")
    class_names = tuple(class_name_of(folder) for folder in folders)
    by_name: dict[str, list[str]] = {}
    for folder, name in zip(folders, class_names):
        by_name.setdefault(name, []).append(folder)
    clashes = [folders_of for folders_of in by_name.values() if len(folders_of) > 1]
    if clashes:
        raise DatasetError(
            f"class folders {' and '.join(clashes[0])} in {root} map to the same class name "
            f"{class_name_of(clashes[0][0])!r}; rename one of them"
        )
    label_of = {folder: label for label, folder in enumerate(folders)}

    records, skipped, others = [], [], []
    for split, parent in sources:
        for path in files_in(parent):
            if is_candidate_image(path):
                skipped.append(SkippedFile(relpath(root, path), "image is not inside a class folder"))
        for class_dir in subdirs(parent):
            images, not_images = scan_images(class_dir)
            others.extend(not_images)
            for path in images:
                records.append(ImageRecord(relpath=relpath(root, path), label=label_of[class_dir.name], split=split))
    if not records:
        raise DatasetError(f"found class folders but no image files in {root}; {EXPECTED_TREE}")
    return DatasetIndex(
        root=root, layout=layout_name, class_names=class_names, records=tuple(records),
        skipped=tuple(skipped), notes=tuple(notes + ignored_files_note(root, others)),
    )


def split_dirs(root: Path) -> dict[str, Path]:
    """The split folders directly inside `root`, as {"train"|"valid"|"test": folder}."""
    found: dict[str, Path] = {}
    for folder in subdirs(root):
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
