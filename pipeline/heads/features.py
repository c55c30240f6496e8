"""Loading a cache's features per split, the way heads consume them.

Heads work on globally average-pooled features: for a (h, w, c) bottleneck the pooled vector is
exactly what a GlobalAveragePooling2D layer feeds its Dense layer, so fitting on pooled rows is
equivalent to fitting GAP+Dense on the full maps, at a fraction of the memory and time. Rows are
streamed from disk in blocks, so only the pooled (n, c) matrix is ever held in memory.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from pipeline.cache.format import CacheInfo, read_cache_info
from pipeline.cache.rows import load_rows
from pipeline.data.dataset import SPLITS
from pipeline.errors import HeadError

HEAD_POOLING = "avg"


@dataclass(frozen=True)
class SplitData:
    """Pooled features `x` (n, c) float32, labels `y` (n,), and the images' relative paths."""

    x: np.ndarray
    y: np.ndarray
    relpaths: tuple[str, ...]

    def __len__(self) -> int:
        return len(self.y)


@dataclass(frozen=True)
class FeatureSet:
    """A cache's pooled features, split by train/valid/test (empty splits are absent)."""

    info: CacheInfo
    splits: dict[str, SplitData]

    @property
    def class_names(self) -> tuple[str, ...]:
        return self.info.class_names

    @property
    def num_classes(self) -> int:
        return len(self.info.class_names)

    def split(self, name: str) -> SplitData:
        if name not in self.splits:
            raise HeadError(f"the cache has no {name} images; re-run extract with a {name} split "
                            "(e.g. --valid-fraction / --test-fraction)")
        return self.splits[name]


def load_feature_set(cache_path, info: CacheInfo | None = None) -> FeatureSet:
    """Read every split's pooled features and labels from the cache at `cache_path`."""
    info = info or read_cache_info(cache_path)
    info.require_whole_dataset()
    images = info.images
    pooled = load_rows(info.path, images.row, pooling=HEAD_POOLING)
    splits = {}
    for split in SPLITS:
        members = images.in_split(split)
        if len(members):
            splits[split] = SplitData(
                x=pooled[members], y=images.label[members].astype(np.int64),
                relpaths=tuple(images.relpath[i] for i in members),
            )
    if "train" not in splits:
        raise HeadError(f"cache {info.path} has no training images; heads need a train split")
    return FeatureSet(info=info, splits=splits)
