"""Why a cache cannot be fitted, in the user's terms: too few classes, an empty validation split.

Every head calls `require_trainable` before fitting, and raises `missing_split_error` when it
needs a split the cache lacks. The messages say what the cache holds, why the split is empty and
what would fill it: for a carved validation split, the smallest --valid-fraction that gives every
class a validation image, found by replaying extract's content-hash draws with the fractions and
seed the cache records (`CacheInfo.carving`).
"""

from __future__ import annotations

import math

import numpy as np

from pipeline.data.splits import DEFAULT_VALID_FRACTION, split_draw
from pipeline.errors import HeadError

MIN_CLASSES = 2
_SHOWN_CLASSES = 5
#: Fractions recovered from a first-release cache were printed as whole percents: this much either way.
_PERCENT_ROUNDING = 0.005
#: Replayed fractions are offered with two decimals.
_FRACTION_STEP = 0.01
#: A suggestion never takes more than this share of the training images for validation.
_MAX_SUGGESTED_FRACTION = 0.5


def require_trainable(features) -> None:
    """`HeadError` unless the cache has two or more classes and the train split holds at least two of them.

    A classifier fitted on one class either crashes (scikit-learn's solvers) or "succeeds" with a
    meaningless 100% accuracy, so every head refuses before fitting.
    """
    names = features.class_names
    where = _cache_name(features)
    dataset = getattr(features.info, "dataset", None)
    root = dataset.root if dataset is not None else None
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


def missing_split_error(features, split: str, purpose: str) -> HeadError:
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
    carved = _carving(features)
    if carved is not None and not carved.valid_fraction:
        why = (f"extract ran with --valid-fraction 0 and the dataset has no valid/ folder, so its {total} training "
               f"images ({shown}) all stayed in train")
    elif carved is not None:
        why = (f"the dataset has only {total} training images ({shown}), and carving {carved.valid_fraction:.0%} of so "
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


def _cache_name(features) -> str:
    path = getattr(features.info, "path", None)
    return f"cache {path.name}" if path is not None else "this cache"


def _carving(features):
    """The cache's carving record, or None (also for stand-in caches without one)."""
    return getattr(features.info, "carving", None)


def _replayed_valid_fraction(features, carved) -> float | None:
    """The smallest --valid-fraction (in steps of `_FRACTION_STEP`) that gives every class with training
    images a validation image while leaving each one a training image, replaying extract's content-hash
    draws with the recorded seed and test share; None if there is none."""
    images = getattr(features.info, "images", None)
    if carved is None or images is None:
        return None
    margin = _PERCENT_ROUNDING if carved.rounded_to_percent else 0.0
    test = carved.test_fraction
    members = images.in_split("train")
    if not len(members):
        return None
    draws = np.array([split_draw(sha.decode() if isinstance(sha, bytes) else str(sha), carved.seed)
                      for sha in images.sha256[members]])
    labels = images.label[members]
    lowest = max(draws[labels == c].min() for c in np.unique(labels))
    highest = min(draws[labels == c].max() for c in np.unique(labels))
    # An image moves to valid when its draw < test + valid.
    steps = 1 / _FRACTION_STEP
    fraction = math.floor((lowest - test + margin) * steps) / steps + _FRACTION_STEP
    if fraction + test + margin > highest or fraction + test >= 1.0:
        return None
    return round(fraction, 2)


def _expected_valid_fraction(features) -> float | None:
    """Without the draws: the fraction that gives the smallest class one validation image in expectation."""
    train = features.splits.get("train")
    if train is None or not len(train):
        return None
    smallest = int(np.unique(train.y, return_counts=True)[1].min())
    if smallest < MIN_CLASSES:
        return None
    steps = 1 / _FRACTION_STEP
    return min(math.ceil(steps / smallest) / steps, _MAX_SUGGESTED_FRACTION)
