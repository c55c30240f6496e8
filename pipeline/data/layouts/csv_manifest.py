"""A CSV manifest: one row per image, `path,label[,split]`, paths relative to the CSV's folder.

    path,label,split                 a header is optional; without one the columns are
    photos/rex.jpg,dog,train         path, label and optionally split, in that order
    photos/tom.png,cat,

DATA_DIR is the CSV file itself, or a folder holding exactly one `.csv` file whose header names
a path column and a label column (a folder with several CSVs is ambiguous: pass the file).

Header names (case-insensitive): path column `path`, `file`, `filename`, `filepath`, `image`
or `image_path`; label column `label`, `class`, `category` or `target`; split column `split` or
`subset` (values train/training, valid/validation/val/dev, test/testing, or empty to let the
tool carve one). Every other named column is an extra label for multi-task use (e.g. `species`
beside a breed `label`); its classes are its sorted values.

Paths are untrusted: an absolute path or one with `..` that leaves the CSV's folder is refused
(`safe_relpath`), and so is a path that leaves it through a symbolic link (`folder/secret.jpg`
where `folder` links outside): symbolic links are resolved before the check, so a file is
accepted or refused alike whichever way it is named. Listed files that do not exist are
reported as skipped. A path listed twice with the same label and split is used once (noted);
listed twice with different labels or splits, the manifest is refused - multi-label targets are
not supported.
"""

from __future__ import annotations

import csv
import errno
from pathlib import Path

from pipeline.data.dataset import DatasetIndex, ImageRecord, SkippedFile, safe_relpath
from pipeline.data.layouts.files import count_of, examples, files_in
from pipeline.data.layouts.generic import SPLIT_FOLDER_NAMES
from pipeline.errors import DatasetError

NAME = "csv"
DESCRIPTION = "a CSV manifest path,label[,split] (DATA_DIR = the .csv file, or a folder holding one)"

SUFFIX = ".csv"
PATH_COLUMNS = ("path", "file", "filename", "filepath", "image", "image_path")
LABEL_COLUMNS = ("label", "class", "category", "target")
SPLIT_COLUMNS = ("split", "subset")
SPLIT_VALUES = {**SPLIT_FOLDER_NAMES, "dev": "valid"}
#: Positional columns of a manifest without a header.
POSITIONAL = ("path", "label", "split")
#: UTF-8 with an optional byte-order mark (spreadsheet exports add one).
ENCODING = "utf-8-sig"
#: The longest file name most file systems accept (NAME_MAX), in bytes.
NAME_MAX_BYTES = 255


def detect(root: Path) -> bool:
    """A `.csv` file, or a folder holding exactly one `.csv` whose header names path and label columns."""
    if root.is_file():
        return root.suffix.lower() == SUFFIX
    candidates = _csv_files(root) if root.is_dir() else []
    return len(candidates) == 1 and _header_columns(_first_row(candidates[0])) is not None


def load(root: Path) -> DatasetIndex:
    """Read the manifest into records; the dataset root is the CSV's folder."""
    manifest = _manifest_path(root)
    base = manifest.parent
    rows = _read_rows(manifest)
    header = _header_columns(rows[0][1]) if rows else None
    if header is None:
        columns = _positional_columns(rows, manifest)
    else:
        columns, rows = header, rows[1:]
    if not rows:
        raise DatasetError(f"{manifest} lists no images; expected rows like `photos/rex.jpg,dog`")
    path_at, label_at = columns["path"], columns["label"]
    split_at = columns.get("split")
    extra_at = columns["extra"]

    entries: dict[str, tuple] = {}
    skipped, repeats = [], []
    for line, cells in rows:
        where = f"{manifest.name} line {line}"
        cells = [cell.strip() for cell in cells]
        if len(cells) > columns["width"]:
            raise DatasetError(
                f"{where} has {len(cells)} columns but the manifest has {columns['width']}; "
                "put paths or labels that contain commas in double quotes"
            )
        cells += [""] * (columns["width"] - len(cells))
        raw_path, label = cells[path_at], cells[label_at]
        if not raw_path or not label:
            raise DatasetError(f"{where} has an empty path or label: {','.join(cells)!r}; every row needs both")
        relpath = _inside(safe_relpath(raw_path, base), base, raw_path)
        split = _split(cells[split_at], where) if split_at is not None else None
        extras = tuple(cells[i] for i in extra_at.values())
        for task, value in zip(extra_at, extras):
            if not value:
                raise DatasetError(f"{where} has no value in column {task!r}; fill it in or drop the column")
        entry = (label, split, extras, where)
        if relpath in entries:
            if entries[relpath][:3] != entry[:3]:
                raise DatasetError(
                    f"{relpath} is listed on {entries[relpath][3]} and on {where} with different labels or splits; "
                    "an image can have one label and one split (multi-label targets are not supported)"
                )
            repeats.append(where)
            continue
        unusable = _unusable_file(base / relpath)
        if unusable:
            skipped.append(SkippedFile(relpath, f"listed on {where} but {unusable}"))
            continue
        entries[relpath] = entry

    if not entries:
        raise DatasetError(f"none of the files listed in {manifest} exist; paths are relative to {base}")
    class_names = tuple(sorted({label for label, *_ in entries.values()}))
    label_of = {name: index for index, name in enumerate(class_names)}
    extra_classes = {task: tuple(sorted({entry[2][i] for entry in entries.values()}))
                     for i, task in enumerate(extra_at)}
    extra_label_of = {task: {name: index for index, name in enumerate(names)} for task, names in extra_classes.items()}
    records = [
        ImageRecord(relpath=relpath, label=label_of[label], split=split,
                    extra_labels=tuple(extra_label_of[task][value] for task, value in zip(extra_at, extras)))
        for relpath, (label, split, extras, _) in sorted(entries.items())
    ]
    notes = [f"read {count_of(len(rows), 'row')} of {manifest.name}"
             + (f"; extra label columns: {', '.join(extra_at)}" if extra_at else "")]
    if repeats:
        notes.append(f"{count_of(len(repeats), 'row')} repeating an earlier row used once: {examples(repeats)}")
    return DatasetIndex(
        root=base, layout=NAME, class_names=class_names, records=tuple(records), skipped=tuple(skipped),
        extra_targets=extra_classes, notes=tuple(notes),
    )


def _inside(relpath: str, base: Path, raw_path: str) -> str:
    """`relpath` when the file it names, symbolic links resolved, lies inside `base`; else `DatasetError`."""
    try:
        target = (base / relpath).resolve()
        allowed = target.is_relative_to(base.resolve())
    except (OSError, RuntimeError):  # a symbolic link loop
        allowed = False
    if not allowed:
        raise DatasetError(
            f"path {raw_path!r} leads outside the dataset root {base} through a symbolic link; paths in manifests "
            "must stay inside the dataset folder (move the file in, or point at the right root)")
    return relpath


def _unusable_file(path: Path) -> str | None:
    """Why a listed path cannot be used (as the end of a sentence), or None for a regular file."""
    try:
        if path.is_file():
            return None
    except OSError as error:  # e.g. a name over the file system's limit (ENAMETOOLONG): not a file here
        longest = max(len(part.encode("utf-8", "surrogateescape")) for part in path.parts)
        if error.errno == errno.ENAMETOOLONG:
            return (f"its name is too long for the file system ({longest} bytes in one part of the path, the usual "
                    f"limit is {NAME_MAX_BYTES}): shorten it in the manifest")
        return f"it cannot be checked ({error.strerror or error})"
    return "the file does not exist"


def _csv_files(folder: Path) -> list[Path]:
    return [path for path in files_in(folder) if path.suffix.lower() == SUFFIX]


def _manifest_path(root: Path) -> Path:
    if root.is_file():
        return root
    candidates = _csv_files(root) if root.is_dir() else []
    if len(candidates) != 1:
        found = f"{len(candidates)} CSV files ({examples(p.name for p in candidates)})" if candidates else "no CSV file"
        raise DatasetError(f"{root} holds {found}; pass the manifest CSV file itself as DATA_DIR")
    return candidates[0]


def _read_rows(manifest: Path) -> list[tuple[int, list[str]]]:
    """(line number, cells) of every non-blank row."""
    try:
        with open(manifest, newline="", encoding=ENCODING) as handle:
            reader = csv.reader(handle)
            return [(reader.line_num, cells) for cells in reader if any(cell.strip() for cell in cells)]
    except (OSError, UnicodeDecodeError, csv.Error) as error:
        raise DatasetError(f"cannot read {manifest} as a UTF-8 CSV file ({error}); save it as CSV UTF-8") from error


def _first_row(manifest: Path) -> list[str]:
    try:
        with open(manifest, newline="", encoding=ENCODING) as handle:
            return next(csv.reader(handle), [])
    except (OSError, UnicodeDecodeError, csv.Error):
        return []


def _header_columns(cells: list[str]) -> dict | None:
    """Column positions when `cells` is a header naming a path and a label column, else None."""
    names = [cell.strip().lower() for cell in cells]

    def position(aliases):
        found = [i for i, name in enumerate(names) if name in aliases]
        return found[0] if found else None

    path_at, label_at, split_at = position(PATH_COLUMNS), position(LABEL_COLUMNS), position(SPLIT_COLUMNS)
    if path_at is None or label_at is None:
        return None
    used = {path_at, label_at, split_at}
    extra = {cells[i].strip(): i for i in range(len(cells)) if i not in used and cells[i].strip()}
    return {"path": path_at, "label": label_at, "split": split_at, "extra": extra, "width": len(cells)}


def _positional_columns(rows, manifest: Path) -> dict:
    width = max(len(cells) for _, cells in rows) if rows else 0
    if not 2 <= width <= len(POSITIONAL):
        raise DatasetError(
            f"{manifest} has no header and {width} columns; without a header the columns must be path,label "
            "or path,label,split. Add a header row (e.g. path,label,split,species) to name extra columns"
        )
    return {"path": 0, "label": 1, "split": 2 if width == 3 else None, "extra": {}, "width": width}


def _split(value: str, where: str) -> str | None:
    if not value:
        return None
    split = SPLIT_VALUES.get(value.lower())
    if split is None:
        raise DatasetError(f"{where}: split {value!r} is not one of {', '.join(sorted(SPLIT_VALUES))} (or empty)")
    return split
