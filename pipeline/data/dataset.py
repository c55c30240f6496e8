"""The plain values that describe an image dataset: records, class names, splits.

A layout reader (`pipeline.data.layouts`) produces a `DatasetIndex`; hashing fills in each record's
content hash; `pipeline.data.splits` assigns the splits a layout left open. Nothing here touches a model.

Conventions:
- `relpath` is the path relative to the dataset root, with `/` separators. Non-UTF-8 bytes in file
  names are kept as surrogate escapes (`os.fsdecode`), so every file round-trips exactly.
- `label` indexes `class_names`, which are sorted (or in the layout's official order) once and
  stored with every cache and head, so class order never drifts between runs.
- `split` is "train", "valid" or "test", or None when the layout has no official split for the
  image and `pipeline.data.splits` must carve one.
"""

from __future__ import annotations

import os
import posixpath
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path

from pipeline.errors import DatasetError

SPLITS = ("train", "valid", "test")


@dataclass(frozen=True)
class ImageRecord:
    """One image file of a dataset."""

    relpath: str
    label: int
    split: str | None = None
    sha256: str | None = None
    size: int | None = None
    mtime_ns: int | None = None
    extra_labels: tuple[int, ...] = ()

    def __post_init__(self):
        if self.split is not None and self.split not in SPLITS:
            raise ValueError(f"split {self.split!r} is not one of {SPLITS}")


@dataclass(frozen=True)
class SkippedFile:
    """A file that belongs to the dataset but cannot be used, and why."""

    relpath: str
    reason: str


@dataclass(frozen=True)
class SplitCarving:
    """How `pipeline.data.splits.assign_splits` carved the splits a dataset lacked.

    `valid_fraction` and `test_fraction` are the shares actually carved (0 for a split the dataset
    has officially), `seed` the draw seed, `pool` how many images were drawn. `rounded_to_percent`
    is True only when the fractions were recovered from a first-release cache's note.
    """

    valid_fraction: float
    test_fraction: float
    seed: int
    pool: int
    rounded_to_percent: bool = False

    def to_dict(self) -> dict:
        return {"valid_fraction": self.valid_fraction, "test_fraction": self.test_fraction, "seed": self.seed,
                "pool": self.pool, "rounded_to_percent": self.rounded_to_percent}

    @classmethod
    def from_dict(cls, fields: dict | None) -> SplitCarving | None:
        return None if fields is None else cls(**fields)


@dataclass(frozen=True)
class DatasetIndex:
    """Everything a layout reader found in a dataset folder.

    `extra_targets` maps a task name (e.g. "species") to its class names; each record's
    `extra_labels` holds that task's label indexes in the same order as `extra_targets`.
    `notes` are one-line facts worth telling the user (e.g. which split file was used).
    `carving` says how missing splits were carved (None when nothing was carved).
    """

    root: Path
    layout: str
    class_names: tuple[str, ...]
    records: tuple[ImageRecord, ...]
    skipped: tuple[SkippedFile, ...] = ()
    extra_targets: Mapping[str, tuple[str, ...]] = field(default_factory=dict)
    notes: tuple[str, ...] = ()
    carving: SplitCarving | None = None

    def __post_init__(self):
        for record in self.records:
            if not 0 <= record.label < len(self.class_names):
                raise ValueError(f"label {record.label} of {record.relpath} is outside 0..{len(self.class_names) - 1}")

    def path_of(self, record: ImageRecord) -> Path:
        """The absolute path of a record's file."""
        return self.root / os.fsdecode(record.relpath)

    def with_records(self, records, skipped=None, notes=()) -> DatasetIndex:
        """A copy with new records, more skipped files and extra notes."""
        return replace(
            self,
            records=tuple(records),
            skipped=self.skipped + tuple(skipped or ()),
            notes=self.notes + tuple(notes),
        )

    def split_counts(self) -> dict[str, int]:
        """Number of records per split ("unassigned" for records without one)."""
        counts: dict[str, int] = {}
        for record in self.records:
            key = record.split or "unassigned"
            counts[key] = counts.get(key, 0) + 1
        return counts

    def class_counts(self) -> dict[str, dict[str, int]]:
        """Per split, the number of records of each class name (classes with none included)."""
        table = {split: dict.fromkeys(self.class_names, 0) for split in SPLITS}
        for record in self.records:
            if record.split is not None:
                table[record.split][self.class_names[record.label]] += 1
        return {split: counts for split, counts in table.items() if any(counts.values())}


def safe_relpath(relpath: str, root: Path | None = None) -> str:
    """Normalise a dataset-relative path and refuse one that escapes the dataset root.

    Used for paths read from manifests and caches, which are not trusted: absolute paths and
    `..` components that climb out of the root raise `DatasetError`.
    """
    text = str(relpath).replace("\\", "/")
    if root is not None and os.path.isabs(text):
        try:
            text = Path(text).resolve().relative_to(Path(root).resolve()).as_posix()
        except ValueError:
            raise DatasetError(
                f"path {relpath!r} is outside the dataset root {root}; paths in manifests and caches "
                "must stay inside the dataset folder (move the file in, or point at the right root)"
            ) from None
    normal = posixpath.normpath(text)
    if normal.startswith(("/", "../")) or normal == "..":
        raise DatasetError(
            f"path {relpath!r} escapes the dataset root; paths in manifests and caches must be "
            "relative and stay inside the dataset folder"
        )
    return normal
