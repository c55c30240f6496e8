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
from pipeline.data.phash import PixelHashes, hash_files
from pipeline.errors import CacheError

#: How spatial maps are pooled for the audit: as the near-duplicate threshold was calibrated.
AUDIT_POOLING = NEAR_DUPLICATE_POOLING


@dataclass(frozen=True)
class AuditFeatures:
    """Per image file: `x` pooled features (n, c) float32, `units` centred unit rows, `relpaths`, `splits`
    (str, "" before carving), `labels` (main label index); the cache's `class_names`, `mean` and `info`;
    `hashes`, the pixel hashes of the files still as extracted (None when not asked for)."""

    info: CacheInfo
    x: np.ndarray
    units: np.ndarray
    mean: np.ndarray
    relpaths: tuple[str, ...]
    splits: tuple[str, ...]
    labels: np.ndarray
    class_names: tuple[str, ...]
    hashes: PixelHashes | None = None

    def __len__(self) -> int:
        return len(self.relpaths)


def load_audit_features(cache_path: Path, hash_pixels: bool = False) -> AuditFeatures:
    """Read every image's pooled features from the whole-dataset cache at `cache_path`; with `hash_pixels`,
    also hash the image files that still have the size and modification time the cache recorded (the
    others - moved, edited, deleted - are compared by their features only)."""
    info = read_cache_info(Path(cache_path))
    info.require_whole_dataset()
    images = info.images
    if not len(images):
        raise CacheError(f"cache {info.path} holds no images, so there is nothing to audit; run `extract` on a "
                         "dataset folder first")
    x = load_rows(info.path, np.asarray(images.row), pooling=AUDIT_POOLING)
    units, mean = centred_units(x)
    hashes = hash_files(_unchanged_files(info)) if hash_pixels else None
    return AuditFeatures(info=info, x=x, units=units, mean=mean, relpaths=tuple(images.relpath),
                         splits=tuple(_text(split) for split in images.split),
                         labels=np.asarray(images.label, dtype=np.int64), class_names=tuple(info.class_names),
                         hashes=hashes)


def _unchanged_files(info: CacheInfo) -> list[Path | None]:
    """The path of each image file whose size and modification time are those recorded; None for the others."""
    root, images, paths = info.data_root, info.images, []
    for relpath, size, mtime_ns in zip(images.relpath, images.size, images.mtime_ns):
        path = root / relpath
        try:
            stat = path.stat()
        except OSError:
            paths.append(None)
            continue
        paths.append(path if (stat.st_size, stat.st_mtime_ns) == (int(size), int(mtime_ns)) else None)
    return paths


def _text(value) -> str:
    return value.decode() if isinstance(value, bytes) else str(value or "")
