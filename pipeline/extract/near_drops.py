"""`extract --drop-cross-split-duplicates`, second pass: near-duplicates across splits, found on the
features just extracted.

Identical files are dropped before extraction (`pipeline.data.hygiene`); a resized, re-compressed,
cropped or mirrored copy has other bytes, and only its features show it. Once every row exists,
this pass runs the audit's finder (`pipeline.cache.near_duplicates`: same rows, centring and
threshold, and the same perceptual hash of the pixels, `pipeline.data.phash`, which decodes every
image once more) over every usable image and drops, from each cross-split pair, the image in the later
split (train, then valid, then test: the evaluation splits become clean, training keeps every
image). An image is dropped when it has a near-duplicate in any earlier split, whether or not
that one is itself dropped, so the set does not depend on the order pairs are visited.

Dropped images become skipped files, each with the image it copies and their similarity; their
rows stay in the cache (`CacheContents.kept_rows`), so the next run computes no features and, from
the same rows and pixels, drops the same images. Every reader of the cache's splits (fit-head, report,
search, audit) sees the cache without them.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from pipeline.cache.near_duplicates import (
    MAX_HASH_DISTANCE,
    NEAR_DUPLICATE_SIMILARITY,
    NearDuplicate,
    centred_units,
    find_near_duplicates,
    pooled_rows_of,
)
from pipeline.cache.segments import RowSource
from pipeline.data.dataset import DatasetIndex, ImageRecord, SkippedFile
from pipeline.data.hygiene import SPLIT_RANK
from pipeline.data.phash import hash_files

OPTION = "--drop-cross-split-duplicates"


@dataclass(frozen=True)
class DroppedNearDuplicate:
    """An image dropped from `split` because `near`, in the earlier split `near_split`, looks the same
    (`pair`: the two as the finder found them)."""

    path: str
    split: str
    near: str
    near_split: str
    pair: NearDuplicate

    def reason(self) -> str:
        return (f"near-duplicate of {self.near} in {self.near_split} ({self.pair.describe()}); dropped from "
                f"{self.split} by {OPTION}")

    def to_dict(self) -> dict:
        return {"path": self.path, "split": self.split, "near": self.near, "near_split": self.near_split,
                "similarity": round(float(self.pair.similarity), 4), "hash_distance": self.pair.hash_distance}


def find_near_drops(records: Sequence[ImageRecord], sources: Mapping[str, RowSource], paths: Sequence[Path | None],
                    threshold: float = NEAR_DUPLICATE_SIMILARITY) -> list[DroppedNearDuplicate]:
    """The images of `records` to drop (see the module doc), in dataset order; `sources[sha256]` is where
    each image's view-0 row is now (the cache, a segment, a sibling cache), `paths` its file (hashed)."""
    if len(records) < 2:
        return []
    x = pooled_rows_of([(sources[r.sha256].path, sources[r.sha256].row) for r in records])
    units, _ = centred_units(x)
    pairs = find_near_duplicates(units, [r.relpath for r in records], [r.split or "" for r in records], threshold,
                                 hash_files(paths))
    dropped: dict[str, DroppedNearDuplicate] = {}
    for pair in pairs:  # most similar first: each image is reported with its closest earlier-split copy
        (early, early_split), (late, late_split) = sorted(zip((pair.a, pair.b), pair.splits), key=_rank)
        if _rank((early, early_split)) < _rank((late, late_split)) < len(SPLIT_RANK) and late not in dropped:
            dropped[late] = DroppedNearDuplicate(late, late_split, early, early_split, pair)
    return [dropped[r.relpath] for r in records if r.relpath in dropped]


def without_near_drops(index: DatasetIndex, drops: Sequence[DroppedNearDuplicate]) -> DatasetIndex:
    """`index` without the dropped images, which become skipped files with their reasons, and a note."""
    if not drops:
        return index
    gone = {drop.path for drop in drops}
    note = (f"dropped {len(drops)} near-duplicates of images in an earlier split (cosine of the features >= "
            f"{NEAR_DUPLICATE_SIMILARITY} or pixel hash distance <= {MAX_HASH_DISTANCE}, as `audit` finds them; "
            f"{OPTION}); they are listed with the failures, each with the image it copies (`cache show`)")
    return index.with_records([r for r in index.records if r.relpath not in gone],
                              skipped=[SkippedFile(drop.path, drop.reason()) for drop in drops], notes=[note])


def _rank(member: tuple[str, str]) -> int:
    return SPLIT_RANK.get(member[1], len(SPLIT_RANK))
