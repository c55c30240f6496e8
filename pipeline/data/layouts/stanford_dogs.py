"""Stanford Dogs: `Images/<wnid>-<Breed>/*.jpg` with the official split in MATLAB lists.

    Images/n02085620-Chihuahua/n02085620_10074.jpg        (120 breeds, 20,580 images)
    lists/train_list.mat, lists/test_list.mat             (12,000 train / 8,580 test)

`lists.tar` unpacks its `.mat` files without a folder, so they are looked for in `lists/` and
next to `Images/`. The Kaggle copy nests the images one level deeper (`images/Images/`); that is
found too. Each list holds `file_list` (a cell array of paths relative to `Images/`) and
`labels` (1-based); they are read with `scipy.io.loadmat`. The class is the folder name after
the first `-` (`Chihuahua`, `Japanese_spaniel`); classes are ordered by folder name, i.e. by
WordNet id, which is the official label order. Labels come from each file's folder; the lists'
labels are checked to name one folder each, so a damaged list can never mislabel.

With the lists: their split is used (validation is carved from train), listed files that are
missing are reported as skipped, and images no list names are left out with a note. Without
them (e.g. only `images.tar` was downloaded) every split is carved, and a note says so.
"""

from __future__ import annotations

import math
import re
from pathlib import Path

import numpy as np

from pipeline.data.dataset import DatasetIndex, ImageRecord, SkippedFile, safe_relpath
from pipeline.data.layouts.files import count_of, examples, ignored_files_note, relpath, scan_images, subdirs
from pipeline.errors import DatasetError

NAME = "stanford-dogs"
DESCRIPTION = "Stanford Dogs: Images/nXXXXXXXX-Breed/ folders, split by lists/train_list.mat and test_list.mat"

IMAGE_FOLDERS = ("Images", "images")
LIST_FOLDER = "lists"
#: Official list files and the split each one becomes.
SPLIT_LISTS = {"train_list.mat": "train", "test_list.mat": "test"}
SPLIT_LISTS_BY_SPLIT = {split: name for name, split in SPLIT_LISTS.items()}
#: `n02085620-Chihuahua`: a WordNet id, a dash, the breed.
CLASS_FOLDER = re.compile(r"^n\d{8}-(?P<breed>.+)$")
#: Most entries a list may declare (the official ones hold 12,000 and 8,580); larger is refused unread.
MAX_LIST_ENTRIES = 1_000_000
_MAX_CELL_DEPTH = 8  # nesting of 1-element arrays around a cell's text (loadmat gives two)
_SHOWN_VALUE = 40


def breed_name(folder: str) -> str:
    """The class name of a `<wnid>-<Breed>` folder: everything after the first `-`."""
    return folder.split("-", 1)[1]


def detect(root: Path) -> bool:
    return _images_dir(root) is not None


def load(root: Path) -> DatasetIndex:
    """Read the images, labelled by folder, with the official split when the lists are present."""
    images_dir = _images_dir(root)
    if images_dir is None:
        raise DatasetError(
            f"{root} is not a Stanford Dogs folder: expected Images/ holding folders like "
            "n02085620-Chihuahua/ (from images.tar), and lists/train_list.mat, lists/test_list.mat (from lists.tar)"
        )
    folders = [folder.name for folder in subdirs(images_dir)]
    odd = [name for name in folders if not CLASS_FOLDER.match(name)]
    if odd:
        raise DatasetError(f"{images_dir} holds folders that are not <wnid>-<Breed> class folders: {examples(odd)}; "
                           "move them out, or use --layout generic")
    label_of = {folder: label for label, folder in enumerate(folders)}
    images, others = scan_images(images_dir)
    on_disk = {relpath(images_dir, path) for path in images}

    lists = _list_files(root, images_dir)
    if lists:
        chosen, split_of, skipped, notes = _use_lists(lists, root, images_dir, on_disk)
    else:
        chosen, split_of, skipped = sorted(on_disk), {}, []
        notes = [f"no official split lists ({', '.join(SPLIT_LISTS)}) found in {LIST_FOLDER}/ or next to "
                 f"{images_dir.name}/: validation and test are carved from all images"]

    records = []
    for path in chosen:
        folder = path.split("/", 1)[0]
        if folder not in label_of:
            skipped.append(SkippedFile(path, "image is not inside a <wnid>-<Breed> class folder"))
            continue
        records.append(ImageRecord(relpath=path, label=label_of[folder], split=split_of.get(path)))
    if not records:
        raise DatasetError(f"found no usable images in {images_dir}")
    return DatasetIndex(
        root=images_dir, layout=NAME, class_names=tuple(breed_name(f) for f in folders), records=tuple(records),
        skipped=tuple(skipped), notes=tuple(notes + ignored_files_note(images_dir, others)),
    )


def _use_lists(lists: list[Path], root: Path, images_dir: Path, on_disk: set[str]):
    """(listed images on disk, their splits, skipped files, notes) under the official lists."""
    split_of = _official_split(lists, images_dir)
    skipped = [SkippedFile(path, f"listed in {SPLIT_LISTS_BY_SPLIT[split_of[path]]} but the file is missing")
               for path in sorted(set(split_of) - on_disk)]
    notes = []
    unlisted = sorted(on_disk - set(split_of))
    if unlisted:
        notes.append(f"left out {count_of(len(unlisted), 'image')} that neither list names (not in the official "
                     f"split): {examples(unlisted)}")
    counts = {split: sum(1 for s in split_of.values() if s == split) for split in SPLIT_LISTS.values()}
    notes.append("official split from " + " and ".join(
        f"{relpath(root, path)} ({counts[SPLIT_LISTS[path.name]]} {SPLIT_LISTS[path.name]})" for path in lists
    ) + "; validation is carved from train")
    return sorted(on_disk & set(split_of)), split_of, skipped, notes


def _images_dir(root: Path) -> Path | None:
    """The folder of wnid class folders: `root/Images` (or `images`, or `images/Images`), or `root` itself."""
    if not root.is_dir():
        return None
    nested = [root / outer / inner for outer in IMAGE_FOLDERS for inner in IMAGE_FOLDERS]
    for candidate in [root / name for name in IMAGE_FOLDERS] + nested + [root]:
        if candidate.is_dir():
            folders = subdirs(candidate)
            if folders and all(CLASS_FOLDER.match(folder.name) for folder in folders):
                return candidate
    return None


def _list_files(root: Path, images_dir: Path) -> list[Path]:
    """The official list files, from the first folder holding all of them (empty when none does)."""
    for folder in dict.fromkeys((root / LIST_FOLDER, root, images_dir.parent / LIST_FOLDER, images_dir.parent)):
        paths = [folder / name for name in SPLIT_LISTS]
        if all(path.is_file() for path in paths):
            return paths
    return []


def _official_split(lists: list[Path], images_dir: Path) -> dict[str, str]:
    """relpath (under Images/) -> split, checking that every list label names one folder."""
    split_of: dict[str, str] = {}
    folder_of_label: dict[int, str] = {}
    for path in lists:
        split = SPLIT_LISTS[path.name]
        for listed, label in _read_list(path):
            listed = safe_relpath(listed, images_dir)
            folder = listed.split("/", 1)[0]
            if folder_of_label.setdefault(label, folder) != folder:
                raise DatasetError(
                    f"{path.name} gives label {label} to both {folder_of_label[label]}/ and {folder}/; the lists "
                    "are damaged or belong to another release - re-extract lists.tar"
                )
            if split_of.setdefault(listed, split) != split:
                raise DatasetError(f"{listed} is in both train_list.mat and test_list.mat; "
                                   "an image must be in one split")
    return split_of


def _read_list(path: Path) -> list[tuple[str, int]]:
    """(path, label) pairs of one official `.mat` list; `DatasetError` for anything else.

    Only MATLAB 5 files are read (the official format); a v7.3 (HDF5) save, variables of the wrong
    kind or size, cells that are not text, labels that are not positive whole numbers: each is a
    `DatasetError` naming the file, what it holds and what a list must hold. Variable shapes are
    checked from the headers (`whosmat`) before the data is read.
    """
    from scipy.io import loadmat, whosmat

    try:
        declared = {name: shape for name, shape, _ in whosmat(path)}
    except NotImplementedError:  # scipy's answer to a MATLAB v7.3 file, which is HDF5
        raise DatasetError(f"{path} is a MATLAB v7.3 (HDF5) file; the Stanford Dogs lists are MATLAB 5 files. "
                           "Re-extract the original lists.tar, or save the lists again with "
                           "save(..., '-v7') in MATLAB") from None
    except Exception as error:  # noqa: BLE001 - scipy raises many kinds for a malformed file
        raise DatasetError(f"cannot read {path} as a MATLAB file ({_one_line(error)}); re-extract lists.tar") from None
    if "file_list" not in declared or "labels" not in declared:
        raise DatasetError(f"{path} has no file_list/labels variables; is it one of the Stanford Dogs lists?")
    for name in ("file_list", "labels"):
        if math.prod(declared[name]) > MAX_LIST_ENTRIES:
            raise DatasetError(f"{path} declares {name} of shape {declared[name]}, more than the "
                               f"{MAX_LIST_ENTRIES:,} entries a list may hold; re-extract lists.tar")
    try:
        content = loadmat(path, variable_names=("file_list", "labels"))
    except Exception as error:  # noqa: BLE001
        raise DatasetError(f"cannot read {path} as a MATLAB file ({_one_line(error)}); re-extract lists.tar") from None
    files = [_cell_text(cell, path) for cell in np.asarray(content["file_list"]).ravel()]
    labels = [_label(label, path) for label in np.asarray(content["labels"]).ravel()]
    if len(files) != len(labels):
        raise DatasetError(f"{path} lists {len(files)} files but {len(labels)} labels; re-extract lists.tar")
    return list(zip(files, labels))


def _cell_text(cell, path: Path) -> str:
    """A MATLAB cell holding a char array, as loadmat returns it (a 1-element array of str)."""
    for _ in range(_MAX_CELL_DEPTH):
        if isinstance(cell, str):
            if cell:
                return cell
            break
        if not isinstance(cell, np.ndarray) or cell.size != 1 or cell.dtype.names is not None:
            break
        cell = cell.item() if cell.dtype.kind in "OU" else cell.ravel()[0]
    raise DatasetError(f"{path}: file_list holds {_kind_of(cell)} where a list holds text (a path under Images/); "
                       "re-extract lists.tar")


def _label(value, path: Path) -> int:
    """A list label: a whole number from 1 up (MATLAB stores them as doubles or small integers)."""
    try:
        number = float(value)
    except (TypeError, ValueError):
        number = math.nan
    if not math.isfinite(number) or number != int(number) or not 1 <= number <= MAX_LIST_ENTRIES:
        raise DatasetError(f"{path}: labels holds {_kind_of(value)} where a list holds whole numbers from 1 "
                           "(one per breed); re-extract lists.tar")
    return int(number)


def _kind_of(value) -> str:
    if isinstance(value, np.void) and value.dtype.names is not None:
        return "a struct"
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, np.ndarray):
        if value.dtype.names is not None:
            return "a struct"
        return "an empty cell" if value.size == 0 else f"an array of {value.size} {value.dtype.kind!r} values"
    text = repr(value)
    return text if len(text) <= _SHOWN_VALUE else text[:_SHOWN_VALUE] + "..."


def _one_line(error: BaseException) -> str:
    text = str(error).strip() or type(error).__name__
    return text.splitlines()[0][:_SHOWN_VALUE * 4]
