"""The audit's view of a cache: one average-pooled, centred unit row per image file, with its labels.

Every image file gets one row (view 0 in a cache with views; files with identical bytes share a
cache row, so they come out as near-duplicates of similarity 1). Rows are centred on the mean of
the cache's rows before normalising (`pipeline.cache.near_duplicates.centred_units`); the mean is kept so a new photo
(`neighbours`) is placed in the same space.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from pipeline.cache.format import CacheInfo, read_cache_info
from pipeline.cache.near_duplicates import NEAR_DUPLICATE_POOLING, centred_units
from pipeline.cache.rows import load_rows
from pipeline.errors import CacheError

#: How spatial maps are pooled for the audit: as the near-duplicate threshold was calibrated.
AUDIT_POOLING = NEAR_DUPLICATE_POOLING


@dataclass(frozen=True)
class AuditFeatures:
    """Per image file: `x` pooled features (n, c) float32, `units` centred unit rows, `relpaths`, `splits`
    (str, "" before carving), `labels` (main label index); the cache's `class_names`, `mean` and `info`."""

    info: CacheInfo
    x: np.ndarray
    units: np.ndarray
    mean: np.ndarray
    relpaths: tuple[str, ...]
    splits: tuple[str, ...]
    labels: np.ndarray
    class_names: tuple[str, ...]

    def __len__(self) -> int:
        return len(self.relpaths)


def load_audit_features(cache_path: Path) -> AuditFeatures:
    """Read every image's pooled features from the whole-dataset cache at `cache_path`."""
    info = read_cache_info(Path(cache_path))
    info.require_whole_dataset()
    images = info.images
    if not len(images):
        raise CacheError(f"cache {info.path} holds no images, so there is nothing to audit; run `extract` on a "
                         "dataset folder first")
    x = load_rows(info.path, np.asarray(images.row), pooling=AUDIT_POOLING)
    units, mean = centred_units(x)
    return AuditFeatures(info=info, x=x, units=units, mean=mean, relpaths=tuple(images.relpath),
                         splits=tuple(_text(split) for split in images.split),
                         labels=np.asarray(images.label, dtype=np.int64), class_names=tuple(info.class_names))


def _text(value) -> str:
    return value.decode() if isinstance(value, bytes) else str(value or "")
