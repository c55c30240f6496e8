"""Outliers: images far from every other image (wrong content, not a pet at all).

Rule (calibrated in docs/audit.md): an image's typicality is the mean cosine similarity of its
`NEIGHBOURS` nearest other images, on the pooled features as they are (not centred: centring makes
a handful of odd images look alike, since they all point away from the mean together). An image
is an outlier when its typicality lies more than `OUTLIER_MADS` robust standard deviations
(1.4826 x the median absolute deviation) below the median of all images. Each outlier carries its
typicality, those deviations, and the class centroid it is closest to.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from pipeline.audit.features import AuditFeatures
from pipeline.cache.similarity import top_k, unit_rows

#: Neighbours averaged for typicality; robust deviations below the median that make an outlier.
NEIGHBOURS = 10
OUTLIER_MADS = 5.0
#: The MAD of a normal distribution is this fraction of its standard deviation's inverse.
MAD_TO_STD = 1.4826
_TINY = 1e-12


@dataclass(frozen=True)
class Outlier:
    """An image far from the rest: `typicality` (mean cosine to its nearest images), the class it is
    closest to and that cosine, and `deviations` (robust standard deviations below the median)."""

    path: str
    label: str
    nearest_class: str
    class_similarity: float
    typicality: float
    deviations: float

    def to_dict(self) -> dict:
        return {"path": self.path, "label": self.label, "nearest_class": self.nearest_class,
                "class_similarity": round(self.class_similarity, 4), "typicality": round(self.typicality, 4),
                "deviations": round(self.deviations, 2)}


def robust_deviations(values: np.ndarray) -> np.ndarray:
    """(median - value) in robust standard deviations: positive below the median."""
    median = np.median(values)
    spread = MAD_TO_STD * np.median(np.abs(values - median))
    return (median - values) / max(spread, _TINY)


def class_similarity(features: AuditFeatures) -> tuple[np.ndarray, np.ndarray]:
    """Per image: the index of the class centroid it is closest to, and that cosine."""
    labels = features.labels
    present = np.unique(labels)
    centroids = unit_rows(np.stack([features.units[labels == c].mean(axis=0) for c in present]),
                          mean=np.zeros(features.units.shape[1], np.float32))
    best, cosines = top_k(features.units, centroids, 1)
    return present[best[:, 0]], cosines[:, 0]


def outliers(features: AuditFeatures, mads: float = OUTLIER_MADS) -> list[Outlier]:
    """Images that break the rule above, farthest first."""
    if len(features) <= NEIGHBOURS:  # too few images to say what is typical
        return []
    raw = unit_rows(features.x, mean=np.zeros(features.x.shape[1], np.float32))
    _, cosines = top_k(raw, raw, NEIGHBOURS, exclude_self=True)
    typicality = cosines.mean(axis=1)
    deviations = robust_deviations(typicality)
    nearest, similarity = class_similarity(features)
    flagged = np.flatnonzero(deviations > mads)
    flagged = flagged[np.argsort(-deviations[flagged], kind="stable")]
    names = features.class_names
    return [Outlier(features.relpaths[i], names[features.labels[i]], names[nearest[i]], float(similarity[i]),
                    float(typicality[i]), float(deviations[i])) for i in flagged]
