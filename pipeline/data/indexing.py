"""Indexing a dataset: read its layout, hash every file, carve missing splits, check hygiene.

`index_dataset` is what `extract` and `inspect` see of a dataset folder: a `DatasetIndex` whose
records carry their content hash, size, modification time and split, with unreadable files moved
to `skipped` (with a reason) and leakage reported in the notes (`pipeline.data.hygiene`).
"""

from __future__ import annotations

import re
from pathlib import Path

from pipeline.data.dataset import DatasetIndex, ImageRecord, SkippedFile
from pipeline.data.hashing import hash_files
from pipeline.data.hygiene import apply_hygiene
from pipeline.data.layouts import discover
from pipeline.data.splits import DEFAULT_SPLIT_SEED, DEFAULT_TEST_FRACTION, DEFAULT_VALID_FRACTION, assign_splits

#: Characters kept in dataset names (they become part of cache file names).
_UNSAFE_NAME_CHARACTERS = re.compile(r"[^A-Za-z0-9_.-]+")


def dataset_name_of(data_dir: Path) -> str:
    """A file-name-safe name for a dataset folder (its base name; a manifest file's name without suffix)."""
    path = Path(data_dir).resolve()
    name = _UNSAFE_NAME_CHARACTERS.sub("_", path.stem if path.is_file() else path.name).strip("._")
    return name or "dataset"


def index_dataset(data_dir: Path, layout: str = "auto", valid_fraction: float = DEFAULT_VALID_FRACTION,
                  test_fraction: float = DEFAULT_TEST_FRACTION, split_seed: int = DEFAULT_SPLIT_SEED,
                  drop_cross_split_duplicates: bool = False, known_stamps: dict | None = None) -> DatasetIndex:
    """Discover, hash and split the dataset, then check it for leakage (`pipeline.data.hygiene`).

    `known_stamps` ({path: (FileStamp, sha256)}, from a previous run's cache) lets unchanged
    files skip hashing. Unreadable files move to `skipped` with a reason.
    """
    hashed = hash_dataset(discover(data_dir, layout), known_stamps)
    split = assign_splits(hashed, valid_fraction, test_fraction, split_seed)
    return apply_hygiene(split, drop_cross_split=drop_cross_split_duplicates)


def hash_dataset(index: DatasetIndex, known_stamps: dict | None = None) -> DatasetIndex:
    """Fill in every record's sha256, size and mtime; files that cannot be read become skipped."""
    results = hash_files((index.path_of(r) for r in index.records), known=known_stamps or {})
    records, skipped = [], []
    for record, result in zip(index.records, results):
        if result.sha256 is None:
            skipped.append(SkippedFile(record.relpath, result.error))
        else:
            records.append(ImageRecord(
                relpath=record.relpath, label=record.label, split=record.split, sha256=result.sha256,
                size=result.stamp.size, mtime_ns=result.stamp.mtime_ns, extra_labels=record.extra_labels,
            ))
    return index.with_records(records, skipped=skipped)
