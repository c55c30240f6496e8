"""Loading a cache's features per split, the way heads consume them.

Heads work on globally average-pooled features: for a (h, w, c) bottleneck the pooled vector is
exactly what a GlobalAveragePooling2D layer feeds its Dense layer, so fitting on pooled rows is
equivalent to fitting GAP+Dense on the full maps, at a fraction of the memory and time. Rows are
streamed from disk in blocks, so only the pooled (n, c) matrix is ever held in memory.

Views (`extract --views K`): the train split holds every view of every training image (K + 1 rows
per image, view 0 first), so heads learn from the augmented views; validation and test hold view 0
(the plain image) only, so every choice made on validation and the test score are about plain
images, comparable with a cache without views.
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
    train_views: int = 1  # rows per training image: K + 1 with views, else 1

    def views_note(self) -> str | None:
        """What a head's report says about views, or None for a cache without them."""
        if self.train_views == 1:
            return None
        return (f"train: all {self.train_views} views of each image (view 0 = the plain image, "
                f"{self.train_views - 1} augmented); valid and test: view 0 only")

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
    """Read every split's pooled features and labels from the cache at `cache_path` (views: see the module doc)."""
    info = info or read_cache_info(cache_path)
    info.require_whole_dataset()
    images = info.images
    views = images.view_rows.shape[1] if images.view_rows is not None else 1
    splits = {}
    for split in SPLITS:
        members = images.in_split(split)
        if not len(members):
            continue
        rows = images.view_rows[members].reshape(-1) if split == "train" and views > 1 else images.row[members]
        repeat = views if split == "train" else 1
        splits[split] = SplitData(
            x=load_rows(info.path, rows, pooling=HEAD_POOLING), y=np.repeat(images.label[members], repeat),
            relpaths=tuple(images.relpath[i] for i in members for _ in range(repeat)),
        )
    if "train" not in splits:
        raise HeadError(f"cache {info.path} has no training images; heads need a train split")
    return FeatureSet(info=info, splits=splits, train_views=views)
