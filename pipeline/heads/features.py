"""Loading a cache's features per split, the way heads consume them.

Heads work on globally average-pooled features: for a (h, w, c) bottleneck the pooled vector is
exactly what a GlobalAveragePooling2D layer feeds its Dense layer, so fitting on pooled rows is
equivalent to fitting GAP+Dense on the full maps, at a fraction of the memory and time. Rows are
streamed from disk in blocks, so only the pooled (n, c) matrix is ever held in memory.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass

import numpy as np

from pipeline.cache.format import CacheInfo, load_rows, read_cache_info
from pipeline.data.dataset import SPLITS
from pipeline.errors import HeadError
from pipeline.data.splits import DEFAULT_VALID_FRACTION, split_draw

HEAD_POOLING = "avg"
MIN_CLASSES = 2
_SHOWN_CLASSES = 5
#: The note `pipeline.data.splits.assign_splits` stores in the cache when it carves splits.
_CARVED_NOTE = re.compile(
    r"^carved (?P<parts>.+?) of the \d+ images without an official split.*\(seed (?P<seed>-?\d+)\)")
_CARVED_PART = re.compile(r"\b(valid|test) (\d+(?:\.\d+)?)%")
_PERCENT_ROUNDING = 0.005  # the note prints fractions as whole percents


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


def require_trainable(features: FeatureSet) -> None:
    """`HeadError` unless the cache has two or more classes and the train split holds at least two of them.

    A classifier fitted on one class either crashes (scikit-learn's solvers) or "succeeds" with a
    meaningless 100% accuracy, so every head refuses before fitting.
    """
    names = features.class_names
    where = _cache_name(features)
    root = (getattr(features.info, "dataset", None) or {}).get("root")
    folder = f" under {root}" if root else ""
    if len(names) < MIN_CLASSES:
        only = f" ({names[0]!r})" if names else ""
        raise HeadError(
            f"{where} has only one class{only}; a classifier needs at least {MIN_CLASSES} classes to tell apart. "
            f"Put each class's images in its own folder{folder} (one folder per class, next to "
            f"{names[0] if names else 'the existing one'}/) and re-run extract.")
    labelled = {split: np.unique(data.y) for split, data in features.splits.items()}
    anywhere = np.unique(np.concatenate(list(labelled.values()))) if labelled else np.array([], dtype=np.int64)
    if len(anywhere) < MIN_CLASSES:
        present = ", ".join(names[i] for i in anywhere) or "none"
        raise HeadError(
            f"{where} lists {len(names)} classes but only one has usable images ({present}); a classifier needs "
            f"images of at least {MIN_CLASSES} classes. Add images to the other class folders{folder} "
            "(see the failures extract reported) and re-run extract.")
    in_train = labelled.get("train", np.array([], dtype=np.int64))
    if len(in_train) < MIN_CLASSES:
        only = ", ".join(names[i] for i in in_train) or "none"
        missing = [i for i in anywhere if i not in set(in_train.tolist())]
        shown = "; ".join(
            f"{names[i]}: " + ", ".join(f"{int(np.sum(data.y == i))} {split}" for split, data in features.splits.items()
                                        if np.any(data.y == i))
            for i in missing[:_SHOWN_CLASSES]) + ("; ..." if len(missing) > _SHOWN_CLASSES else "")
        raise HeadError(
            f"the train split of {where} holds images of only one class ({only}); the others have none for "
            f"training ({shown}). A classifier needs at least {MIN_CLASSES} classes in train: add training images "
            "for those classes, or lower --valid-fraction / --test-fraction, and re-run extract.")


def missing_split_error(features: FeatureSet, split: str, purpose: str) -> HeadError:
    """The error for a head that needs `split` (e.g. "valid") on a cache where it is empty.

    It says why the split is empty, how many training images each class has, and what would fill it:
    for a carved validation split, a --valid-fraction that gives every class a validation image
    (computed from the images' content-hash draws, exactly as extract assigns them) or, when no
    fraction can, to add images.
    """
    label = "validation" if split == "valid" else split
    lead = f"{purpose}, but the {label} split of {_cache_name(features)} is empty"
    if split != "valid":
        return HeadError(f"{lead}; re-run extract with a {split} split (e.g. --{split}-fraction) "
                         f"or add a {split}/ folder")
    train = features.splits.get("train")
    counts = {features.class_names[i]: int(n) for i, n in zip(*np.unique(train.y, return_counts=True))} if train else {}
    total = sum(counts.values())
    smallest = sorted(counts.items(), key=lambda item: (item[1], item[0]))
    shown = ", ".join(f"{name} {n}" for name, n in smallest[:_SHOWN_CLASSES]) + (
        f", ... ({len(counts)} classes)" if len(counts) > _SHOWN_CLASSES else "")
    carved = _carved_fractions(features)
    if carved is not None and "valid" not in carved[0]:
        why = (f"extract ran with --valid-fraction 0 and the dataset has no valid/ folder, so its {total} training "
               f"images ({shown}) all stayed in train")
    elif carved is not None:
        why = (f"the dataset has only {total} training images ({shown}), and carving {carved[0]['valid']:.0%} of so "
               "few images by content hash left validation none")
    else:
        why = f"the cache has {total} training images ({shown}) and none for validation"
    needed = math.ceil(1 / DEFAULT_VALID_FRACTION)
    add = (f"add images (a class needs about {needed} for the default --valid-fraction {DEFAULT_VALID_FRACTION} "
           "to give it a validation image)")
    exact = _replayed_valid_fraction(features, carved)
    if exact is not None:
        fix = (f"re-run extract with --valid-fraction {exact:.2f} (replaying extract's content-hash draws, this "
               f"gives every class a validation image and still leaves it a training image), {add}, or add a "
               "valid/ folder")
    elif carved is not None:
        fix = (f"{add} and re-run extract, or add a valid/ folder; with these images no --valid-fraction gives "
               "every class a validation image while leaving it one for training")
    else:
        expected = _expected_valid_fraction(features)
        raise_it = (f" or re-run extract with --valid-fraction {expected:.2f} (one validation image per class in "
                    "expectation)," if expected is not None else "")
        fix = f"{add} and re-run extract,{raise_it} or add a valid/ folder"
    return HeadError(f"{lead}: {why}. To fix, {fix}.")


def _cache_name(features: FeatureSet) -> str:
    path = getattr(features.info, "path", None)
    return f"cache {path.name}" if path is not None else "this cache"


def _carved_fractions(features: FeatureSet) -> tuple[dict, int] | None:
    """({"valid": 0.15, "test": 0.15}, seed) from the note extract stored when it carved splits, or None."""
    notes = getattr(features.info, "dataset", None)
    notes = notes.get("notes", []) if isinstance(notes, dict) else []
    for note in notes:
        match = _CARVED_NOTE.match(str(note))
        if match:
            fractions = {name: float(value) / 100 for name, value in _CARVED_PART.findall(match.group("parts"))}
            return fractions, int(match.group("seed"))
    return None


def _replayed_valid_fraction(features: FeatureSet, carved) -> float | None:
    """The smallest --valid-fraction (2 decimals, plus a margin for the note's rounded test share) that gives
    every class with training images a validation image while leaving each one a training image, replaying
    extract's content-hash draws; None if there is none."""
    images = getattr(features.info, "images", None)
    if carved is None or images is None:
        return None
    fractions, seed = carved
    test = fractions.get("test", 0.0)
    members = images.in_split("train")
    if not len(members):
        return None
    draws = np.array([split_draw(sha.decode() if isinstance(sha, bytes) else str(sha), seed)
                      for sha in images.sha256[members]])
    labels = images.label[members]
    lowest = max(draws[labels == c].min() for c in np.unique(labels))
    highest = min(draws[labels == c].max() for c in np.unique(labels))
    # An image moves to valid when its draw < test + valid; the note's test share is rounded.
    fraction = math.floor((lowest - test + _PERCENT_ROUNDING) * 100) / 100 + 0.01
    if fraction + test + _PERCENT_ROUNDING > highest or fraction + test >= 1.0:
        return None
    return round(fraction, 2)


def _expected_valid_fraction(features: FeatureSet) -> float | None:
    """Without the draws: the fraction that gives the smallest class one validation image in expectation."""
    train = features.splits.get("train")
    if train is None or not len(train):
        return None
    smallest = int(np.unique(train.y, return_counts=True)[1].min())
    if smallest < MIN_CLASSES:
        return None
    return min(math.ceil(100 / smallest) / 100, 0.5)
