"""Kaggle dogs-vs-cats: one flat folder, the label in each file name (`cat.123.jpg`, `dog.45.jpg`).

    dogs-vs-cats/train/cat.0.jpg ... dog.12499.jpg     (25,000 labelled images)
    dogs-vs-cats/test1/1.jpg ...                       (12,500 unlabelled competition images)

Pass the download folder (holding `train/`) or `train/` itself. The label is the file-name
prefix before the first `.`; classes are the sorted prefixes (`cat`, `dog`). There is no
labelled test set, so validation and test are carved from `train/` by content hash. The
unlabelled `test1/` is never mixed in: a note counts its images and says they are unused.
Image files in the labelled folder whose names do not follow `<label>.<number>.<ext>` are
reported as skipped rather than guessed at.
"""

from __future__ import annotations

import re
from pathlib import Path

from pipeline.data.dataset import DatasetIndex, ImageRecord, SkippedFile
from pipeline.data.images import is_candidate_image
from pipeline.data.layouts.files import files_in, ignored_files_note, relpath, scan_images, subdirs
from pipeline.errors import DatasetError

NAME = "kaggle-dogs-vs-cats"
DESCRIPTION = "Kaggle dogs-vs-cats: train/cat.N.jpg, train/dog.N.jpg (label = name prefix); test1/ unlabelled"

LABELLED_FOLDER = "train"
#: Folders of the Kaggle download holding unlabelled competition images.
UNLABELLED_FOLDERS = ("test1", "test")
#: `cat.123.jpg` -> label "cat".
LABELLED_NAME = re.compile(r"^(?P<label>[A-Za-z][A-Za-z_-]*)\.\d+\.[A-Za-z0-9]+$")
#: Fewer distinct prefixes than this is not a classification dataset.
MIN_CLASSES = 2
#: Share of images that must carry a label in their name for the layout to be recognised: a few
#: stray files do not hide it (they are reported as skipped), a folder of camera photos is not it.
DETECT_LABELLED_SHARE = 0.9


def detect(root: Path) -> bool:
    """A flat folder of images (root or root/train) nearly all named `<label>.<number>.<ext>`, 2+ labels."""
    folder = _labelled_dir(root)
    if folder is None:
        return False
    names = [path.name for path in files_in(folder) if is_candidate_image(path)]
    matches = [m for m in (LABELLED_NAME.match(name) for name in names) if m]
    return (bool(names) and len(matches) >= DETECT_LABELLED_SHARE * len(names)
            and len({m.group("label") for m in matches}) >= MIN_CLASSES)


def load(root: Path) -> DatasetIndex:
    """Label every image of the labelled folder by its name prefix; note the unlabelled folders."""
    folder = _labelled_dir(root)
    if folder is None:
        raise DatasetError(f"{root} is not a dogs-vs-cats folder: expected {LABELLED_FOLDER}/cat.0.jpg, "
                           f"{LABELLED_FOLDER}/dog.0.jpg, ... (or pass {LABELLED_FOLDER}/ itself)")
    images, others = scan_images(folder, recursive=False)
    labelled, skipped = [], []
    for path in images:
        match = LABELLED_NAME.match(Path(path).name)
        if match:
            labelled.append((path, match.group("label")))
        else:
            skipped.append(SkippedFile(relpath(folder, path), "file name does not start with a label "
                                       "(expected <label>.<number>.jpg, e.g. cat.12.jpg)"))
    class_names = tuple(sorted({label for _, label in labelled}))
    if len(class_names) < MIN_CLASSES:
        raise DatasetError(f"{folder} has images of {len(class_names)} label(s) ({', '.join(class_names) or 'none'}); "
                           f"a classifier needs at least {MIN_CLASSES}")
    label_of = {name: index for index, name in enumerate(class_names)}
    records = [ImageRecord(relpath=relpath(folder, path), label=label_of[label]) for path, label in labelled]
    notes = _unlabelled_notes(folder) + _ignored_folder_notes(folder)
    return DatasetIndex(
        root=folder, layout=NAME, class_names=class_names, records=tuple(records), skipped=tuple(skipped),
        notes=tuple(notes + ignored_files_note(folder, others)),
    )


def _labelled_dir(root: Path) -> Path | None:
    if not root.is_dir():
        return None
    inner = root / LABELLED_FOLDER
    return inner if inner.is_dir() else root


def _unlabelled_notes(folder: Path) -> list[str]:
    notes = []
    for name in UNLABELLED_FOLDERS:
        candidate = folder.parent / name
        if candidate != folder and candidate.is_dir():
            count = len(scan_images(candidate)[0])
            notes.append(f"{name}/ holds {count} unlabelled images (the competition test set); they have no labels, "
                         "so they are not used")
    return notes


def _ignored_folder_notes(folder: Path) -> list[str]:
    inner = [path.name for path in subdirs(folder)]
    return [f"ignored sub-folders of {folder.name}/: {', '.join(inner)}"] if inner else []
