"""Near-duplicates: pairs of images whose centred, pooled features point the same way.

The threshold was calibrated on real photos (docs/audit.md): resized, re-compressed, lightly cropped
and mirrored copies of a photo score above it; different photos of the same breed score below.
The search is exact (`similarity.pairs_above`, blocked matrix products in bounded memory).
"""

from __future__ import annotations

from dataclasses import dataclass

from pipeline.audit.features import AuditFeatures
from pipeline.audit.similarity import pairs_above

#: Cosine similarity (centred avg-pooled features) at or above which two images are near-duplicates.
NEAR_DUPLICATE_SIMILARITY = 0.85
#: The splits whose near-duplicates leak into test: a test image with a copy in one of them is not unseen.
SEEN_SPLITS = ("train", "valid")
TEST_SPLIT = "test"


@dataclass(frozen=True)
class NearDuplicate:
    """Two images (`a` before `b` in the cache's image order), their cosine similarity and their splits."""

    a: str
    b: str
    similarity: float
    splits: tuple[str, str]

    @property
    def crosses_splits(self) -> bool:
        return self.splits[0] != self.splits[1]

    def to_dict(self) -> dict:
        return {"a": self.a, "b": self.b, "similarity": round(float(self.similarity), 4), "splits": list(self.splits)}


def near_duplicates(features: AuditFeatures, threshold: float = NEAR_DUPLICATE_SIMILARITY) -> list[NearDuplicate]:
    """Every pair of images at or above `threshold`, most similar first (cross-split pairs first on ties)."""
    first, second, similarity = pairs_above(features.units, threshold)
    found = [NearDuplicate(features.relpaths[i], features.relpaths[j], float(s),
                           (features.splits[i], features.splits[j]))
             for i, j, s in zip(first.tolist(), second.tolist(), similarity.tolist())]
    found.sort(key=lambda pair: (-pair.similarity, not pair.crosses_splits, pair.a, pair.b))
    return found


def leaked_test_images(duplicates: list[NearDuplicate]) -> set[str]:
    """Test images with a near-duplicate in train or valid: they are not unseen, so a test score counts them."""
    leaked = set()
    for pair in duplicates:
        for mine, other, path in ((pair.splits[0], pair.splits[1], pair.a), (pair.splits[1], pair.splits[0], pair.b)):
            if mine == TEST_SPLIT and other in SEEN_SPLITS:
                leaked.add(path)
    return leaked
