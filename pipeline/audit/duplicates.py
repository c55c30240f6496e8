"""Near-duplicates in an audited cache, and the test images they leak.

The finder and its threshold are `pipeline.cache.near_duplicates`, the code `extract
--drop-cross-split-duplicates` drops near-duplicates with; here it runs on the audit's rows and, when
the image files are still as extracted, their pixel hashes.
"""

from __future__ import annotations

from pipeline.audit.features import AuditFeatures
from pipeline.cache.near_duplicates import NEAR_DUPLICATE_SIMILARITY, NearDuplicate, find_near_duplicates

#: The splits whose near-duplicates leak into test: a test image with a copy in one of them is not unseen.
SEEN_SPLITS = ("train", "valid")
TEST_SPLIT = "test"


def near_duplicates(features: AuditFeatures, threshold: float = NEAR_DUPLICATE_SIMILARITY) -> list[NearDuplicate]:
    """Every pair of images at or above `threshold`, most similar first (cross-split pairs first on ties)."""
    return find_near_duplicates(features.units, features.relpaths, features.splits, threshold, features.hashes)


def leaked_test_images(duplicates: list[NearDuplicate]) -> set[str]:
    """Test images with a near-duplicate in train or valid: they are not unseen, so a test score counts them."""
    leaked = set()
    for pair in duplicates:
        for mine, other, path in ((pair.splits[0], pair.splits[1], pair.a), (pair.splits[1], pair.splits[0], pair.b)):
            if mine == TEST_SPLIT and other in SEEN_SPLITS:
                leaked.add(path)
    return leaked
