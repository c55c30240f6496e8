"""Oxford-IIIT Pet: `images/*.jpg` described by `annotations/list.txt`, split by trainval/test.

    images/Abyssinian_1.jpg ...               (37 breeds; 7,349 annotated images)
    annotations/list.txt                      "#" comment lines, then rows: Image CLASS-ID SPECIES BREED-ID
    annotations/trainval.txt, test.txt        the official split, rows in the same format

The class is the breed: the image name without its trailing `_N` (`Abyssinian`,
`american_bulldog`), ordered by CLASS-ID. Species (1 = cat, 2 = dog) is kept as the extra target
"species", for multi-task use. trainval becomes train (validation is carved from it), test stays
test. Images are decoded by content later: the release ships PNG and GIF data behind `.jpg`
names (decoded as what they are) and two corrupt JPEGs (reported as failures).

Rules, so nothing is mislabelled or dropped unseen: every breed name must map to one CLASS-ID
and every row of the split files must agree with list.txt, else the dataset is refused; images
listed but missing are reported as skipped; images on disk that no annotation file lists are
left out (the official dataset is the annotated set) and named in a note.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

from pipeline.data.dataset import DatasetIndex, ImageRecord, SkippedFile
from pipeline.data.layouts.files import count_of, examples, ignored_files_note, relpath, scan_images
from pipeline.errors import DatasetError

NAME = "oxford-pets"
DESCRIPTION = "Oxford-IIIT Pet: images/ plus annotations/list.txt (trainval.txt/test.txt official split)"

IMAGES_FOLDER = "images"
ANNOTATIONS_FOLDER = "annotations"
LIST_FILE = "list.txt"
#: Official split files and the split each one becomes.
SPLIT_FILES = {"trainval.txt": "train", "test.txt": "test"}
#: SPECIES column values, in extra-target order.
SPECIES_NAMES = {1: "cat", 2: "dog"}
SPECIES_TASK = "species"
_SPECIES_LABEL = {code: label for label, code in enumerate(SPECIES_NAMES)}
PREFERRED_EXTENSION = ".jpg"
_TRAILING_NUMBER = re.compile(r"_\d+$")
_COLUMNS = 4  # Image CLASS-ID SPECIES BREED-ID


@dataclass(frozen=True)
class _Row:
    """One annotation row."""

    name: str
    class_id: int
    species: int
    source: str  # "list.txt line 12", for error messages


def breed_of(image_name: str) -> str:
    """The breed of an Oxford image name: the name without its trailing `_N`."""
    return _TRAILING_NUMBER.sub("", image_name)


def detect(root: Path) -> bool:
    return root.is_dir() and (root / IMAGES_FOLDER).is_dir() and (root / ANNOTATIONS_FOLDER / LIST_FILE).is_file()


def load(root: Path) -> DatasetIndex:
    """Read the annotated images with breed labels, species extra labels and the official split."""
    images_dir, annotations = root / IMAGES_FOLDER, root / ANNOTATIONS_FOLDER
    if not images_dir.is_dir() or not (annotations / LIST_FILE).is_file():
        raise DatasetError(
            f"{root} is not an Oxford-IIIT Pet folder: expected {IMAGES_FOLDER}/ and "
            f"{ANNOTATIONS_FOLDER}/{LIST_FILE} (from images.tar.gz and annotations.tar.gz)"
        )
    rows = {row.name: row for row in _read_rows(annotations / LIST_FILE)}
    split_of, notes = {}, []
    for file_name, split in SPLIT_FILES.items():
        path = annotations / file_name
        if not path.is_file():
            notes.append(f"{ANNOTATIONS_FOLDER}/{file_name} not found: its images get a carved split instead")
            continue
        for row in _read_rows(path):
            _merge(rows, row, split_of, split)
    class_names = _class_names(rows.values())
    label_of = {class_id: label for label, class_id in enumerate(sorted({r.class_id for r in rows.values()}))}

    images, others = scan_images(images_dir, recursive=False)
    file_of = _files_by_stem(images)
    records, skipped = [], []
    for name in sorted(rows):
        row = rows[name]
        path = file_of.get(name)
        if path is None:
            skipped.append(SkippedFile(f"{IMAGES_FOLDER}/{name}{PREFERRED_EXTENSION}",
                                       f"listed in {row.source} but missing from {IMAGES_FOLDER}/"))
            continue
        records.append(ImageRecord(relpath=relpath(root, path), label=label_of[row.class_id],
                                   split=split_of.get(name), extra_labels=(_SPECIES_LABEL[row.species],)))
    unlisted = sorted(stem for stem in file_of if stem not in rows)
    if unlisted:
        notes.append(f"left out {count_of(len(unlisted), 'image')} of {IMAGES_FOLDER}/ that no annotation file lists "
                     f"(not part of the official dataset): {examples(unlisted)}")
    if split_of:
        notes.append("official split from annotations: trainval.txt -> train (validation is carved from it), "
                     "test.txt -> test")
    if not records:
        raise DatasetError(f"none of the images listed in {ANNOTATIONS_FOLDER}/{LIST_FILE} exist in {images_dir}")
    return DatasetIndex(
        root=root, layout=NAME, class_names=class_names, records=tuple(records), skipped=tuple(skipped),
        extra_targets={SPECIES_TASK: tuple(SPECIES_NAMES.values())},
        notes=tuple(notes + ignored_files_note(root, others)),
    )


def _read_rows(path: Path) -> list[_Row]:
    rows = []
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except (OSError, UnicodeDecodeError) as error:
        raise DatasetError(f"cannot read {path}: {error}; re-extract annotations.tar.gz") from error
    for number, line in enumerate(lines, start=1):
        text = line.strip()
        if not text or text.startswith("#"):
            continue
        fields = text.split()
        where = f"{path.name} line {number}"
        try:
            if len(fields) != _COLUMNS:
                raise ValueError
            name, class_id, species = fields[0], int(fields[1]), int(fields[2])
        except ValueError:
            raise DatasetError(f"{path} line {number} is not `Image CLASS-ID SPECIES BREED-ID`: {text!r}") from None
        if species not in SPECIES_NAMES:
            raise DatasetError(f"{where}: species {species} is not 1 (cat) or 2 (dog)")
        rows.append(_Row(name, class_id, species, where))
    return rows


def _merge(rows: dict, row: _Row, split_of: dict, split: str) -> None:
    """Add a split-file row, refusing any disagreement with list.txt or with the other split file."""
    known = rows.get(row.name)
    if known is None:
        rows[row.name] = row
    elif (known.class_id, known.species) != (row.class_id, row.species):
        raise DatasetError(
            f"{row.source} gives {row.name} class {row.class_id} species {row.species}, but {known.source} "
            f"says class {known.class_id} species {known.species}; the annotation files disagree - "
            "re-extract annotations.tar.gz"
        )
    if split_of.get(row.name, split) != split:
        raise DatasetError(f"{row.name} is listed in both trainval.txt and test.txt; an image must be in one split")
    split_of[row.name] = split


def _class_names(rows) -> tuple[str, ...]:
    breeds_of: dict[int, set[str]] = {}
    for row in rows:
        breeds_of.setdefault(row.class_id, set()).add(breed_of(row.name))
    for class_id, breeds in breeds_of.items():
        if len(breeds) > 1:
            raise DatasetError(
                f"CLASS-ID {class_id} is given to images of {len(breeds)} breeds ({examples(sorted(breeds))}); "
                "each class id must name one breed - re-extract annotations.tar.gz"
            )
    names = [next(iter(breeds_of[class_id])) for class_id in sorted(breeds_of)]
    if len(set(names)) != len(names):
        repeated = sorted({n for n in names if names.count(n) > 1})
        raise DatasetError(f"breeds {examples(repeated)} have more than one CLASS-ID; re-extract annotations.tar.gz")
    return tuple(names)


def _files_by_stem(images: list[str]) -> dict[str, str]:
    """Image name (file name without extension) -> path, preferring `.jpg` when names repeat."""
    found: dict[str, str] = {}
    for path in images:
        stem, suffix = Path(path).stem, Path(path).suffix.lower()
        if stem not in found or suffix == PREFERRED_EXTENSION:
            found[stem] = path
    return found
