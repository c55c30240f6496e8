"""Near-duplicates: pairs of images whose centred, average-pooled cached features point the same way.

One finder for `audit` (which lists them) and `extract --drop-cross-split-duplicates` (which drops
the later-split member of each cross-split pair after extraction). Each image file gets one row
(view 0 in a cache with views), average-pooled over space, centred on the mean of those rows and
scaled to unit length (`similarity.unit_rows`); two images are near-duplicates when the cosine of
their rows is at least `NEAR_DUPLICATE_SIMILARITY`, or, when the pixels were hashed
(`pipeline.data.phash`), their perceptual hashes (or one's and the other's mirror hash) differ in at
most `MAX_HASH_DISTANCE` of 64 bits. Both were calibrated on real photos (docs/audit.md): the
features find resized, re-compressed, lightly cropped and mirrored copies, the hash the heavily
resized and re-compressed ones the features miss; neither flagged a pair of different photos.
The search is exact (`similarity.pairs_above`, blocked products, bounded memory).
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
from pipeline.data.phash import HASH_BITS, PixelHashes

#: Cosine similarity (centred avg-pooled features) at or above which two images are near-duplicates.
NEAR_DUPLICATE_SIMILARITY = 0.85
#: How spatial maps are pooled into the rows compared: average, as a GlobalAveragePooling head sees them.
NEAR_DUPLICATE_POOLING = "avg"
#: Perceptual-hash bits (of 64) in which two images may differ and still be near-duplicates.
MAX_HASH_DISTANCE = 8


@dataclass(frozen=True)
class NearDuplicate:
    """Two images (`a` before `b` in the rows' order), the cosine similarity of their features, their splits,
    and the Hamming distance of their pixel hashes (None when either was not hashed)."""

    a: str
    b: str
    similarity: float
    splits: tuple[str, str]
    hash_distance: int | None = None

    @property
    def crosses_splits(self) -> bool:
        return self.splits[0] != self.splits[1]

    def describe(self) -> str:
        """'similarity 0.934' or 'similarity 0.612, pixel hash distance 2 of 64'."""
        hashed = f", pixel hash distance {self.hash_distance} of {HASH_BITS}" if self.hash_distance is not None else ""
        return f"similarity {self.similarity:.3f}{hashed}"

    def to_dict(self) -> dict:
        return {"a": self.a, "b": self.b, "similarity": round(float(self.similarity), 4), "splits": list(self.splits),
                "hash_distance": self.hash_distance}


def find_near_duplicates(units: np.ndarray, relpaths: Sequence[str], splits: Sequence[str],
                         threshold: float = NEAR_DUPLICATE_SIMILARITY, hashes: PixelHashes | None = None,
                         max_distance: int = MAX_HASH_DISTANCE) -> list[NearDuplicate]:
    """Every pair of images whose unit rows reach `threshold`, or whose `hashes` are within `max_distance`
    (row i is image `relpaths[i]` of `splits[i]`), most similar first (cross-split pairs first on ties)."""
    first, second, _ = pairs_above(units, threshold)
    pairs = set(zip(first.tolist(), second.tolist()))
    if hashes is not None:
        signs, mirrored = _signs(hashes.bits, hashes.ok), _signs(hashes.mirrored, hashes.ok)
        first, second, _ = pairs_above(signs, 1 - 2 * max_distance / HASH_BITS - _ROUNDING, others=mirrored)
        pairs |= set(zip(first.tolist(), second.tolist()))
    found = []
    for i, j in pairs:
        bits = _distance(hashes, i, j) if hashes is not None and hashes.ok[i] and hashes.ok[j] else None
        found.append(NearDuplicate(relpaths[i], relpaths[j], float(units[i] @ units[j]), (splits[i], splits[j]), bits))
    found.sort(key=lambda pair: (-pair.similarity, not pair.crosses_splits, pair.a, pair.b))
    return found


#: Slack under a float32 dot product of +-1/8 vectors, so a pair exactly at the distance limit counts.
_ROUNDING = 1e-4


def _signs(bits: np.ndarray, ok: np.ndarray) -> np.ndarray:
    """+-1/8 per bit (unit rows: the dot product of two is 1 - 2 * distance / 64); 0 rows for unhashed images."""
    return np.where(bits, 1.0, -1.0).astype(np.float32) / np.sqrt(HASH_BITS) * ok[:, None]


def _distance(hashes: PixelHashes, i: int, j: int) -> int:
    """Bits in which image i's hash differs from image j's or from j's mirror hash, the fewer."""
    return int(min((hashes.bits[i] != hashes.bits[j]).sum(), (hashes.bits[i] != hashes.mirrored[j]).sum()))


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
