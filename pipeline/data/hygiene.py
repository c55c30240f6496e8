"""Leakage and hygiene checks on a hashed, split dataset: duplicates, label conflicts, imbalance.

An image's identity is the sha256 of its bytes. Once every record has a hash and a split:

- Cross-split duplicates: the same bytes in two or more splits. A head scored on images it was
  trained on looks better than it is, so these are always reported. With
  `drop_cross_split_duplicates` the copy in the earliest split is kept (train, then valid, then
  test) and the later copies are dropped - the evaluation splits become clean and training keeps
  every distinct image. Dropped files are listed as skipped, with the file they duplicate.
  Carved splits never cause this: an unassigned image's split is a function of its bytes, so
  identical copies land together. Only official splits (folders, lists, manifests) can leak.
- Label conflicts: the same bytes under two or more labels. Reported, never resolved here: which
  label is right is the user's call.
- Repeats: the same bytes more than once within one split and label. Harmless but each file is
  a separate sample, so they weigh twice in fitting and scoring; counted.
- Imbalance: per split, the largest class count over the smallest.

Empty (zero-byte) files all share one hash but are not images; they are left out of these
checks (they are reported as unreadable instead).
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, replace

from pipeline.data.dataset import SPLITS, DatasetIndex, SkippedFile

#: Split precedence when a duplicate must be dropped: the earliest split keeps its copy.
SPLIT_RANK = {split: rank for rank, split in enumerate(SPLITS)}
#: A largest/smallest class ratio from which accuracy alone starts to mislead, worth a note.
IMBALANCE_NOTE_RATIO = 2.0
_IMBALANCE_NOTE_START = "class imbalance in "
_EXAMPLES = 2  # duplicate groups quoted in a note


@dataclass(frozen=True)
class Copy:
    """One file of a group of identical images."""

    relpath: str
    split: str | None
    label: str

    def to_dict(self) -> dict:
        return {"path": self.relpath, "split": self.split, "label": self.label}


@dataclass(frozen=True)
class DuplicateGroup:
    """Files with identical bytes, ordered by split (train, valid, test) then path."""

    sha256: str
    copies: tuple[Copy, ...]

    def splits(self) -> list[str | None]:
        return sorted({c.split for c in self.copies}, key=_rank)

    def labels(self) -> list[str]:
        return sorted({c.label for c in self.copies})

    def describe(self) -> str:
        return " = ".join(f"{c.relpath} ({c.split}, {c.label})" for c in self.copies)

    def to_dict(self) -> dict:
        return {"sha256": self.sha256, "copies": [c.to_dict() for c in self.copies]}


@dataclass(frozen=True)
class HygieneReport:
    """Groups of identical images found in a dataset, by kind (a group can be in several)."""

    cross_split: tuple[DuplicateGroup, ...]
    conflicts: tuple[DuplicateGroup, ...]
    repeats: tuple[DuplicateGroup, ...]

    def notes(self, dropping: bool = False) -> list[str]:
        """One line per kind of problem found, for summaries (`dropping`: cross-split copies are being dropped)."""
        notes = []
        if self.cross_split:
            found = (f"{len(self.cross_split)} images are in more than one split (identical bytes), e.g. "
                     f"{_quote(self.cross_split)}")
            if dropping:
                notes.append(f"{found}; only the copy in the earliest split is kept")
            else:
                notes.append(f"{found}; scores on the later split are inflated by them. Pass "
                             "--drop-cross-split-duplicates to keep only the earliest copy "
                             "(train, then valid, then test)")
        if self.conflicts:
            notes.append(
                f"{len(self.conflicts)} images have conflicting labels (identical bytes under different "
                f"classes), e.g. {_quote(self.conflicts)}; both copies are kept - fix the labels"
            )
        if self.repeats:
            extra = sum(len(g.copies) - 1 for g in self.repeats)
            notes.append(f"{extra} files repeat another file's bytes in the same split and class "
                         "(kept: each copy counts as a sample)")
        return notes

    def to_dict(self) -> dict:
        return {
            "cross_split": [g.to_dict() for g in self.cross_split],
            "conflicts": [g.to_dict() for g in self.conflicts],
            "repeats": [g.to_dict() for g in self.repeats],
        }


def check_hygiene(index: DatasetIndex) -> HygieneReport:
    """Find identical images across splits, under different labels, and repeated within a split.

    Records must carry their `sha256` (see `pipeline.data.indexing.hash_dataset`).
    """
    groups = defaultdict(list)
    for record in index.records:
        if record.sha256 is None:
            raise ValueError(f"record {record.relpath} has no content hash; hash the dataset first")
        if record.size != 0:
            groups[record.sha256].append(record)
    cross, conflicts, repeats = [], [], []
    for sha, records in sorted(groups.items(), key=lambda item: min(r.relpath for r in item[1])):
        if len(records) < 2:
            continue
        copies = tuple(sorted((Copy(r.relpath, r.split, index.class_names[r.label]) for r in records),
                              key=lambda c: (_rank(c.split), c.relpath)))
        group = DuplicateGroup(sha, copies)
        if len(group.splits()) > 1:
            cross.append(group)
        if len(group.labels()) > 1:
            conflicts.append(group)
        if len({(c.split, c.label) for c in copies}) < len(copies):
            repeats.append(_repeated_part(group))
    return HygieneReport(tuple(cross), tuple(conflicts), tuple(repeats))


def drop_cross_split_duplicates(index: DatasetIndex, report: HygieneReport) -> DatasetIndex:
    """Drop the copies of each cross-split group outside its earliest split; they become skipped files."""
    dropped: dict[str, str] = {}
    for group in report.cross_split:
        keep_split = group.splits()[0]
        kept = next(c for c in group.copies if c.split == keep_split)
        for copy in group.copies:
            if copy.split != keep_split:
                dropped[copy.relpath] = (f"identical to {kept.relpath} in {keep_split}; dropped from {copy.split} "
                                         "by --drop-cross-split-duplicates")
    if not dropped:
        return index
    records = [r for r in index.records if r.relpath not in dropped]
    skipped = [SkippedFile(path, reason) for path, reason in dropped.items()]
    note = (f"dropped {len(dropped)} copies of images already in an earlier split "
            "(--drop-cross-split-duplicates); they are listed with the failures")
    return index.with_records(records, skipped=skipped, notes=[note])


def class_imbalance(index: DatasetIndex) -> dict[str, dict]:
    """Per split: the largest and smallest non-empty class, their count ratio, and the empty classes."""
    result = {}
    for split, counts in index.class_counts().items():
        present = {name: count for name, count in counts.items() if count}
        largest = max(present.items(), key=lambda item: item[1])
        smallest = min(present.items(), key=lambda item: item[1])
        result[split] = {
            "largest": {"class": largest[0], "count": largest[1]},
            "smallest": {"class": smallest[0], "count": smallest[1]},
            "ratio": round(largest[1] / smallest[1], 3),
            "empty_classes": [name for name, count in counts.items() if count == 0],
        }
    return result


def imbalance_notes(imbalance: dict[str, dict]) -> list[str]:
    """Notes for splits whose classes are imbalanced enough to matter (see IMBALANCE_NOTE_RATIO)."""
    notes = []
    for split, item in imbalance.items():
        largest, smallest = item["largest"], item["smallest"]
        if item["ratio"] >= IMBALANCE_NOTE_RATIO:
            notes.append(f"{_IMBALANCE_NOTE_START}{split}: {largest['class']} has {largest['count']} images, "
                         f"{smallest['class']} {smallest['count']} ({item['ratio']:.1f}x); read per-class recall, "
                         "not only accuracy")
    return notes


def recount_imbalance(index: DatasetIndex, usable) -> DatasetIndex:
    """`index` with its imbalance notes counted again on `usable`, the records that have features.

    Indexing counts every image file; files that then fail to decode (or give non-finite features)
    get no row, so the counts a head will train on are those of `usable`.
    """
    kept = tuple(note for note in index.notes if not note.startswith(_IMBALANCE_NOTE_START))
    counted = replace(index, records=tuple(usable))
    fresh = imbalance_notes(class_imbalance(counted)) if counted.records else []
    return replace(index, notes=kept + tuple(fresh))


def apply_hygiene(index: DatasetIndex, drop_cross_split: bool = False) -> DatasetIndex:
    """Check `index`; add notes on what was found; drop cross-split copies when asked."""
    report = check_hygiene(index)
    checked = index.with_records(index.records, notes=report.notes(dropping=drop_cross_split))
    if drop_cross_split:
        checked = drop_cross_split_duplicates(checked, report)
    return checked.with_records(checked.records, notes=imbalance_notes(class_imbalance(checked)))


def _repeated_part(group: DuplicateGroup) -> DuplicateGroup:
    """The copies of `group` that share a split and label with another copy."""
    seen = defaultdict(list)
    for copy in group.copies:
        seen[(copy.split, copy.label)].append(copy)
    return DuplicateGroup(group.sha256, tuple(c for copies in seen.values() if len(copies) > 1 for c in copies))


def _quote(groups) -> str:
    return "; ".join(g.describe() for g in groups[:_EXAMPLES])


def _rank(split: str | None) -> int:
    return SPLIT_RANK.get(split, len(SPLIT_RANK))
