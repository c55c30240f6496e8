"""Loading a cache's features per split, the way heads consume them.

Heads work on spatially pooled features: for a (h, w, c) bottleneck, the average-pooled vector
is exactly what a GlobalAveragePooling2D layer feeds its Dense layer, so fitting on pooled rows
is equivalent to fitting GAP+Dense on the full maps, at a fraction of the memory and time. The
pooling is chosen at fit time (`HEAD_POOLINGS`: avg, max, or both side by side) and recorded
with the head; `predict` applies the same. Rows are streamed from disk in blocks, so only the
pooled (n, c) matrix is ever held in memory.

The labels a head learns are the cache's main label by default, or any extra target the layout
stored (`target`, e.g. Oxford-IIIT Pet's "species"); every split also carries all targets'
labels (`SplitData.targets`), which multi-task heads use.

Views (`extract --views K`): the train split holds every view of every training image (K + 1 rows
per image, view 0 first), so heads learn from the augmented views (`train_views="plain"` keeps view
0 only: exactly the rows a cache without views holds); validation and test hold view 0 (the plain
image) only, so every choice made on validation and the test score are about plain images,
comparable with a cache without views. `split_views` reads every view of a split's images, for
test-time augmentation (`pipeline.heads.tta`).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from pipeline.cache.format import CacheInfo, read_cache_info
from pipeline.cache.rows import HEAD_POOLINGS, load_rows
from pipeline.data.dataset import SPLITS
from pipeline.errors import HeadError, UsageError

#: The pooling a head is fitted on by default (for caches of spatial maps; `cache.rows.HEAD_POOLINGS` lists all).
DEFAULT_HEAD_POOLING = "avg"
#: The name of a cache's main label among its targets.
MAIN_TARGET = "label"
#: Which views of a cache with views the train split holds: every view (the default), or view 0 only.
TRAIN_VIEWS = ("all", "plain")


@dataclass(frozen=True)
class SplitData:
    """Pooled features `x` (n, c) float32, labels `y` (n,) of the head's target, the images' relative
    paths, and every target's labels (`targets`: name -> (n,), the main label included)."""

    x: np.ndarray
    y: np.ndarray
    relpaths: tuple[str, ...]
    targets: dict = field(default_factory=dict)

    def __len__(self) -> int:
        return len(self.y)


@dataclass(frozen=True)
class FeatureSet:
    """A cache's pooled features, split by train/valid/test (empty splits are absent).

    `target` names the labels in `y` and `names` their class names (None: the cache's main
    classes); `target_classes` maps every target to its class names; `pooling` is how maps were
    pooled.
    """

    info: CacheInfo
    splits: dict[str, SplitData]
    target: str = MAIN_TARGET
    pooling: str = DEFAULT_HEAD_POOLING
    names: tuple[str, ...] | None = None
    target_classes: dict = field(default_factory=dict)
    train_views: int = 1  # rows per training image: K + 1 with views, else 1

    def views_note(self) -> str | None:
        """What a head's report says about views, or None for a cache without them."""
        if self.train_views == 1:
            return None
        return (f"train: all {self.train_views} views of each image (view 0 = the plain image, "
                f"{self.train_views - 1} augmented); valid and test: view 0 only")

    @property
    def class_names(self) -> tuple[str, ...]:
        return tuple(self.names) if self.names is not None else tuple(self.info.class_names)

    @property
    def num_classes(self) -> int:
        return len(self.class_names)

    def split(self, name: str) -> SplitData:
        if name not in self.splits:
            raise HeadError(f"the cache has no {name} images; re-run extract with a {name} split "
                            "(e.g. --valid-fraction / --test-fraction)")
        return self.splits[name]


def load_feature_set(cache_path, info: CacheInfo | None = None, target: str | None = None,
                     pooling: str = DEFAULT_HEAD_POOLING, train_views: str = "all") -> FeatureSet:
    """Read every split's pooled features and labels of `target` (default: the main label).

    `train_views` (`TRAIN_VIEWS`): in a cache with views, train on every view of each training
    image ("all") or on view 0 only ("plain"); a cache without views has view 0 only either way.
    """
    info = info or read_cache_info(cache_path)
    info.require_whole_dataset()
    if pooling not in HEAD_POOLINGS:
        raise UsageError(f"unknown head pooling {pooling!r}; choose one of: {', '.join(HEAD_POOLINGS)}")
    if train_views not in TRAIN_VIEWS:
        raise UsageError(f"unknown train views {train_views!r}; choose one of: {', '.join(TRAIN_VIEWS)}")
    classes = target_classes(info)
    target = target or MAIN_TARGET
    if target not in classes:
        raise UsageError(f"cache {info.path.name} has no target {target!r}; its targets are: {', '.join(classes)}")
    images = info.images
    labels = {MAIN_TARGET: images.label, **{task: column for task, (_, column) in info.extra_targets.items()}}
    views = images.view_rows.shape[1] if images.view_rows is not None and train_views == "all" else 1
    splits = {}
    for split in SPLITS:
        members = images.in_split(split)
        if not len(members):
            continue
        rows = images.view_rows[members].reshape(-1) if split == "train" and views > 1 else images.row[members]
        repeat = views if split == "train" else 1
        splits[split] = SplitData(
            x=load_rows(info.path, rows, pooling=pooling),
            y=np.repeat(labels[target][members], repeat).astype(np.int64),
            relpaths=tuple(images.relpath[i] for i in members for _ in range(repeat)),
            targets={task: np.repeat(column[members], repeat).astype(np.int64) for task, column in labels.items()},
        )
    if "train" not in splits:
        raise HeadError(f"cache {info.path} has no training images; heads need a train split")
    return FeatureSet(info=info, splits=splits, target=target, pooling=pooling, names=classes[target],
                      target_classes=classes, train_views=views)


def target_classes(info: CacheInfo) -> dict[str, tuple[str, ...]]:
    """Every target of a cache and its class names, the main label first."""
    return {MAIN_TARGET: tuple(info.class_names),
            **{task: tuple(names) for task, (names, _) in info.extra_targets.items()}}


def cached_views(info: CacheInfo) -> int:
    """Rows per image a cache holds: K + 1 in a cache with views (view 0 first), else 1."""
    return info.images.view_rows.shape[1] if info.images.view_rows is not None else 1


def split_views(features: FeatureSet, split: str, views: tuple[int, ...]) -> np.ndarray:
    """(images, len(views), c) pooled features of the `views` (indices, 0 = the plain image) of every image
    of `split`, in the split's image order (that of `features.split(split)`), pooled as `features` is.

    `HeadError` when the cache holds no such view.
    """
    info = features.info
    available = cached_views(info)
    missing = sorted({view for view in views if not 0 <= view < available})
    if missing:
        raise HeadError(f"cache {info.path.name} has views 0..{available - 1} of each image, not {missing}; "
                        f"re-extract with --views {max(missing)} or more")
    members = info.images.in_split(split)
    table = info.images.view_rows if info.images.view_rows is not None else info.images.row[:, None]
    rows = table[members][:, list(views)]
    x = load_rows(info.path, rows.reshape(-1), pooling=features.pooling)
    return x.reshape(len(members), len(views), -1)
