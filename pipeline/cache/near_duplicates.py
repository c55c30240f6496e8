"""Near-duplicates: pairs of images whose centred, average-pooled cached features point the same way.

One finder for `audit` (which lists them) and `extract --drop-cross-split-duplicates` (which drops
the later-split member of each cross-split pair after extraction). Each image file gets one row
(view 0 in a cache with views), average-pooled over space, centred on the mean of those rows and
scaled to unit length (`similarity.unit_rows`); two images are near-duplicates when the cosine of
their rows is at least `NEAR_DUPLICATE_SIMILARITY`, calibrated on real photos (docs/audit.md):
resized, re-compressed, lightly cropped and mirrored copies score above it, different photos of
the same breed below. The search is exact (`similarity.pairs_above`, blocked products, bounded memory).
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import h5py
import numpy as np

from pipeline.cache.rows import read_open_rows
from pipeline.cache.similarity import pairs_above, unit_rows

#: Cosine similarity (centred avg-pooled features) at or above which two images are near-duplicates.
NEAR_DUPLICATE_SIMILARITY = 0.85
#: How spatial maps are pooled into the rows compared: average, as a GlobalAveragePooling head sees them.
NEAR_DUPLICATE_POOLING = "avg"


@dataclass(frozen=True)
class NearDuplicate:
    """Two images (`a` before `b` in the rows' order), their cosine similarity and their splits."""

    a: str
    b: str
    similarity: float
    splits: tuple[str, str]

    @property
    def crosses_splits(self) -> bool:
        return self.splits[0] != self.splits[1]

    def to_dict(self) -> dict:
        return {"a": self.a, "b": self.b, "similarity": round(float(self.similarity), 4), "splits": list(self.splits)}


def find_near_duplicates(units: np.ndarray, relpaths: Sequence[str], splits: Sequence[str],
                         threshold: float = NEAR_DUPLICATE_SIMILARITY) -> list[NearDuplicate]:
    """Every pair of unit rows at or above `threshold` (row i is image `relpaths[i]` of `splits[i]`), most
    similar first (cross-split pairs first on ties)."""
    first, second, similarity = pairs_above(units, threshold)
    found = [NearDuplicate(relpaths[i], relpaths[j], float(s), (splits[i], splits[j]))
             for i, j, s in zip(first.tolist(), second.tolist(), similarity.tolist())]
    found.sort(key=lambda pair: (-pair.similarity, not pair.crosses_splits, pair.a, pair.b))
    return found


def centred_units(x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(unit rows, mean): the pooled rows `x` (one per image file) centred on their mean and normalised."""
    mean = np.asarray(x, dtype=np.float32).mean(axis=0)
    return unit_rows(x, mean), mean


def pooled_rows_of(sources: Sequence[tuple[Path, int]]) -> np.ndarray:
    """float32 rows pooled with `NEAR_DUPLICATE_POOLING`, one per (file, row) of a cache or committed
    segment file, in the order given (what `extract` has before it writes the cache)."""
    by_file = defaultdict(list)
    for position, (path, row) in enumerate(sources):
        by_file[Path(path)].append((position, row))
    out = None
    for path, wanted in by_file.items():
        positions, rows = (np.array(column, dtype=np.int64) for column in zip(*wanted))
        with h5py.File(path, "r") as handle:
            block = read_open_rows(handle, rows, NEAR_DUPLICATE_POOLING)
        if out is None:
            out = np.empty((len(sources), *block.shape[1:]), np.float32)
        out[positions] = block
    return out if out is not None else np.zeros((0, 0), np.float32)
