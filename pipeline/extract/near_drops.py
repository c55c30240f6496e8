"""`extract --drop-cross-split-duplicates`, second pass: near-duplicates across splits, found on the
features just extracted.

Identical files are dropped before extraction (`pipeline.data.hygiene`); a resized, re-compressed,
cropped or mirrored copy has other bytes, and only its features show it. Once every row exists,
this pass runs the audit's finder (`pipeline.cache.near_duplicates`: same rows, centring and
threshold) over every usable image and drops, from each cross-split pair, the image in the later
split (train, then valid, then test: the evaluation splits become clean, training keeps every
image). An image is dropped when it has a near-duplicate in any earlier split, whether or not
that one is itself dropped, so the set does not depend on the order pairs are visited.

Dropped images become skipped files, each with the image it copies and their similarity; their
rows stay in the cache (`CacheContents.kept_rows`), so the next run computes nothing and, from
the same rows, drops the same images. Every reader of the cache's splits (fit-head, report,
search, audit) sees the cache without them.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from pipeline.cache.near_duplicates import (
    NEAR_DUPLICATE_SIMILARITY,
    centred_units,
    find_near_duplicates,
    pooled_rows_of,
)
from pipeline.cache.segments import RowSource
from pipeline.data.dataset import DatasetIndex, ImageRecord, SkippedFile
from pipeline.data.hygiene import SPLIT_RANK

OPTION = "--drop-cross-split-duplicates"


@dataclass(frozen=True)
class DroppedNearDuplicate:
    """An image dropped from `split` because `near`, in the earlier split `near_split`, looks the same."""

    path: str
    split: str
    near: str
    near_split: str
    similarity: float

    def reason(self) -> str:
        return (f"near-duplicate of {self.near} in {self.near_split} (similarity {self.similarity:.3f} >= "
                f"{NEAR_DUPLICATE_SIMILARITY}); dropped from {self.split} by {OPTION}")

    def to_dict(self) -> dict:
        return {"path": self.path, "split": self.split, "near": self.near, "near_split": self.near_split,
                "similarity": round(float(self.similarity), 4)}


def find_near_drops(records: Sequence[ImageRecord], sources: Mapping[str, RowSource],
                    threshold: float = NEAR_DUPLICATE_SIMILARITY) -> list[DroppedNearDuplicate]:
    """The images of `records` to drop (see the module doc), in dataset order; `sources[sha256]` is where
    each image's view-0 row is now (the cache, a segment, a sibling cache)."""
    if len(records) < 2:
        return []
    x = pooled_rows_of([(sources[r.sha256].path, sources[r.sha256].row) for r in records])
    units, _ = centred_units(x)
    pairs = find_near_duplicates(units, [r.relpath for r in records], [r.split or "" for r in records], threshold)
    dropped: dict[str, DroppedNearDuplicate] = {}
    for pair in pairs:  # most similar first: each image is reported with its closest earlier-split copy
        (early, early_split), (late, late_split) = sorted(zip((pair.a, pair.b), pair.splits), key=_rank)
        if _rank((early, early_split)) < _rank((late, late_split)) < len(SPLIT_RANK) and late not in dropped:
            dropped[late] = DroppedNearDuplicate(late, late_split, early, early_split, pair.similarity)
    return [dropped[r.relpath] for r in records if r.relpath in dropped]


def without_near_drops(index: DatasetIndex, drops: Sequence[DroppedNearDuplicate]) -> DatasetIndex:
    """`index` without the dropped images, which become skipped files with their reasons, and a note."""
    if not drops:
        return index
    gone = {drop.path for drop in drops}
    note = (f"dropped {len(drops)} near-duplicates of images in an earlier split (cosine of the features >= "
            f"{NEAR_DUPLICATE_SIMILARITY}, as `audit` finds them; {OPTION}); they are listed with the failures, "
            "each with the image it copies (`cache show`)")
    return index.with_records([r for r in index.records if r.relpath not in gone],
                              skipped=[SkippedFile(drop.path, drop.reason()) for drop in drops], notes=[note])


def _rank(member: tuple[str, str]) -> int:
    return SPLIT_RANK.get(member[1], len(SPLIT_RANK))
