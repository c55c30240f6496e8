"""Udacity dog project (`dogImages`): split folders holding `NNN.Breed_Name` class folders.

    dogImages/train/001.Affenpinscher/Affenpinscher_00001.jpg
    dogImages/valid/001.Affenpinscher/...    dogImages/test/001.Affenpinscher/...

The release has 133 breeds and 6,680 / 835 / 836 images. Class names drop the number prefix
(`Affenpinscher`, `Afghan_hound`); classes are ordered by the folder names, i.e. by the prefix,
which is also the label order of `sklearn.datasets.load_files` that the classic notebook (and
its precomputed `DogVGG16Data.npz`) used. The split folders are the official split.
"""

from __future__ import annotations

import re
from pathlib import Path

from pipeline.data.dataset import DatasetIndex
from pipeline.data.layouts import generic
from pipeline.data.layouts.files import count_of, examples, subdirs
from pipeline.errors import DatasetError

NAME = "dogimages"
DESCRIPTION = "Udacity dogImages: train/ valid/ test/ folders of NNN.Breed_Name class folders"

#: `001.Affenpinscher` -> number "001", breed "Affenpinscher".
CLASS_FOLDER = re.compile(r"^(?P<number>\d+)\.(?P<breed>.+)$")


def breed_name(folder: str) -> str:
    """The class name of a `NNN.Breed_Name` folder: the part after the number."""
    match = CLASS_FOLDER.match(folder)
    return match.group("breed") if match else folder


def detect(root: Path) -> bool:
    """A folder whose class folders (inside split folders, if any) are all named `NNN.Name`."""
    if not root.is_dir():
        return False
    parents = list(generic.split_dirs(root).values()) or [root]
    folders = [folder.name for parent in parents for folder in subdirs(parent)]
    return bool(folders) and all(CLASS_FOLDER.match(name) for name in folders)


def load(root: Path) -> DatasetIndex:
    """Read the tree with the generic reader, showing bare breed names, and check its numbering."""
    parents = list(generic.split_dirs(root).values()) or [root]
    folders_by_split = {parent.name: {folder.name for folder in subdirs(parent)} for parent in parents}
    all_folders = set().union(*folders_by_split.values())
    unnumbered = sorted(name for name in all_folders if not CLASS_FOLDER.match(name))
    if unnumbered:
        raise DatasetError(
            f"{root} is not a dogImages tree: class folders {examples(unnumbered)} lack the `NNN.` number "
            "prefix (expected e.g. train/001.Affenpinscher/); use --layout generic for plain class folders"
        )
    _check_numbering(root, all_folders)
    index = generic.load(root, class_name_of=breed_name, layout_name=NAME)
    notes = []
    for split_folder, folders in folders_by_split.items():
        missing = sorted(all_folders - folders)
        if missing:
            notes.append(f"{split_folder}/ has no folder for {count_of(len(missing), 'class', 'classes')}: "
                         f"{examples(missing)}")
    return index.with_records(index.records, notes=notes)


def _check_numbering(root: Path, folders: set[str]) -> None:
    """One number per breed and one breed per number, so the prefix order is unambiguous."""
    breeds_of: dict[int, set[str]] = {}
    for name in folders:
        match = CLASS_FOLDER.match(name)
        breeds_of.setdefault(int(match.group("number")), set()).add(match.group("breed"))
    for number, breeds in sorted(breeds_of.items()):
        if len(breeds) > 1:
            raise DatasetError(
                f"class number {number} in {root} names {len(breeds)} breeds ({examples(sorted(breeds))}); "
                "each number must belong to one breed in every split - rename the odd folder"
            )
