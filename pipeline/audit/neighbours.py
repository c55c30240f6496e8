"""`neighbours IMAGE --cache CACHE`: the cached images most similar to a photo, by the audit's cosine.

The photo's features are computed exactly as the cache's were: the cache's feature spec (backbone,
layer, input size, resize policy, precision, store-dtype rounding) with its weights resolved again
and checked against the recorded fingerprint; then pooled and centred like the audit's rows
(`features.py`), so a cached image queried as a photo finds itself at similarity 1.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from pipeline.audit.features import AUDIT_POOLING, AuditFeatures, load_audit_features
from pipeline.backbones.registry import get_backbone
from pipeline.backbones.weights import resolve_weights
from pipeline.cache.rows import pool_rows
from pipeline.cache.similarity import top_k, unit_rows
from pipeline.data.images import ImageDecodeError, ResizeSpec, decode_image, open_rgb
from pipeline.errors import CacheError, DatasetError
from pipeline.explain.plotting import Panel, captioned_grid

DEFAULT_NEIGHBOURS = 8
#: Side of each image in the PNG strip, in pixels, and the grey of a panel whose file is gone.
STRIP_PIXELS = 224
MISSING_GREY = 200


@dataclass(frozen=True)
class Neighbour:
    """A cached image near the query: its relative path, label, split and cosine similarity."""

    path: str
    label: str
    split: str
    similarity: float

    def to_dict(self) -> dict:
        return {"path": self.path, "label": self.label, "split": self.split, "similarity": round(self.similarity, 4)}


def photo_features(image: Path, features: AuditFeatures, cache_dir: Path) -> np.ndarray:
    """(1, c) pooled features of `image`, computed with the cache's extraction; `CacheError` when the cache's
    features cannot be reproduced here (imported, or other weights), `DatasetError` when the image is unreadable."""
    from pipeline.backbones.forward import FeatureExtractor

    info = features.info
    if info.is_imported:
        raise CacheError(f"cache {info.path} holds features imported from an .npz file, made by weights and "
                         "preprocessing this tool cannot verify, so a new photo cannot be placed among them; extract "
                         "the dataset (`extract`) and query that cache")
    spec = info.spec
    backbone = get_backbone(spec.backbone)
    weights = resolve_weights(backbone, info.weights.request, cache_dir, spec.input_size)
    try:
        pixels = decode_image(image, ResizeSpec(spec.input_size, spec.input_size, spec.resize_policy))
    except ImageDecodeError as error:
        raise DatasetError(f"cannot read {image}: {error.reason}; pass an image file (JPEG, PNG, GIF, BMP, "
                           "WebP)") from None
    extractor = FeatureExtractor(backbone, spec.layer, spec.input_size, weights, spec.precision, spec.pooling)
    if extractor.fingerprint != spec.weights_fingerprint:
        raise CacheError(f"the {spec.backbone} weights available here ({weights.describe()}) differ from the ones "
                         f"cache {info.path} was extracted with; use the same weights source (see `weights`)")
    rows = extractor(pixels[None]).astype(spec.store_dtype).astype(np.float32)
    return pool_rows(rows, AUDIT_POOLING)


def nearest(query: np.ndarray, features: AuditFeatures, k: int = DEFAULT_NEIGHBOURS) -> list[Neighbour]:
    """The `k` cached images most similar to the pooled `query` (1, c), best first."""
    indices, cosines = top_k(unit_rows(query, features.mean), features.units, k)
    return [Neighbour(features.relpaths[i], features.class_names[features.labels[i]], features.splits[i], float(s))
            for i, s in zip(indices[0].tolist(), cosines[0].tolist())]


def neighbours(image: Path, cache_path: Path, cache_dir: Path, k: int = DEFAULT_NEIGHBOURS):
    """(features of the cache, the `k` nearest cached images to `image`)."""
    features = load_audit_features(cache_path)
    return features, nearest(photo_features(Path(image), features, cache_dir), features, k)


def write_strip(path: Path, image: Path, found: list[Neighbour], data_root: Path) -> Path:
    """A PNG row: the query photo, then each neighbour with its label, split and similarity."""
    panels = [Panel(_pixels(Path(image)), f"query\n{Path(image).name}")]
    for rank, neighbour in enumerate(found, start=1):
        panels.append(Panel(_pixels(Path(data_root) / neighbour.path),
                            f"{rank}. {neighbour.label} ({neighbour.split or 'no split'})\n"
                            f"cos {neighbour.similarity:.3f}\n{Path(neighbour.path).name}"))
    return captioned_grid(Path(path), [panels], f"nearest cached images to {Path(image).name}")


def _pixels(path: Path) -> np.ndarray:
    try:
        picture = open_rgb(path, draft_size=(STRIP_PIXELS, STRIP_PIXELS))
    except ImageDecodeError:
        return np.full((STRIP_PIXELS, STRIP_PIXELS, 3), MISSING_GREY, np.uint8)
    picture.thumbnail((STRIP_PIXELS, STRIP_PIXELS))
    return np.asarray(picture, dtype=np.uint8)
