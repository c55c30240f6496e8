"""Test-time augmentation (TTA) from cached views: score each image on the mean over several of its views.

A cache with views (`extract --views K`) holds K seeded augmented rows of every validation and
test image beside the plain one (view 0, `pipeline.data.views`). TTA scores an image on the mean
of the head's class probabilities over a set of its views. The plain score (view 0 alone) stays
what a head reports first, so the two compare directly; TTA is reported beside it, never instead.
Honesty is the plain scores' own: validation is scored by the model selected on validation and
trained without it (`pipeline.heads.kinds.base.validation_model`), test by the final model, once.

View sets (`VIEW_SETS`), or explicit view indices (e.g. (0, 1, 2)):

- "all": view 0 and every augmented view;
- "mild": view 0 and the augmented views whose random crop kept at least `MILD_CROP_AREA` of the
  image (crops that cut most of the object away hurt more than they help at test time);
- "augmented": the augmented views without view 0.

A head fitted with TTA records the views it averages in its sidecar (`HeadRecord.tta_views`, from
`tta_views_of`, read by `head_tta`), so `predict` renders those views of a new image
(`pipeline.data.views`, seeded by the file's sha256 as the cache seeded them) and averages the same way.

`DEFAULT_VIEW_SET` is the set measured best on the real-photo samples (docs/search-measurements.md).
A view's crop comes from the first two draws of its own random generator (`render_view` draws the
area, then the aspect factor, from `view_generator(spec, sha256, view)`), so "mild" needs no
pixels, only the cache's view spec; `VIEWS_VERSION` changes whenever that rendering does.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from pipeline.data.views import ViewSpec, view_generator
from pipeline.errors import HeadError, UsageError
from pipeline.heads.features import FeatureSet, cached_views, split_views
from pipeline.heads.kinds.base import validation_model
from pipeline.heads.metrics import classification_metrics
from pipeline.heads.record import HeadRecord

VIEW_SETS = ("all", "mild", "augmented")
DEFAULT_VIEW_SET = "all"
#: "mild" keeps augmented views whose crop kept at least this share of the image's area.
MILD_CROP_AREA = 0.75
#: The splits TTA scores (train is what the head learnt from).
TTA_SPLITS = ("valid", "test")
TTA_NOTE = ("mean of the head's probabilities over each image's views; valid: the model selected on validation "
            "(trained without it), test: the final model - as the plain view-0 scores")


@dataclass(frozen=True)
class TTAScores:
    """TTA metrics (`classification_metrics`) and probabilities per split, the view set and how many views each
    image averaged (mean over the images scored)."""

    view_set: str
    views_per_image: float
    metrics: dict
    probabilities: dict

    def to_dict(self) -> dict:
        """What a sidecar records (no probabilities)."""
        return {"view_set": self.view_set, "views_per_image": self.views_per_image, "metrics": self.metrics,
                "note": TTA_NOTE}


@dataclass(frozen=True)
class HeadTTA:
    """The views a saved head averages at prediction time: `views` (indices, 0 = the plain image), and with
    `mild` only those augmented views whose crop kept at least `MILD_CROP_AREA` of each image."""

    views: tuple[int, ...]
    mild: bool = False


def tta_views_of(features: FeatureSet, view_set: str | tuple[int, ...]) -> tuple[int, ...]:
    """The view indices a head fitted with `view_set` records (`HeadRecord.tta_views`; see `head_tta`)."""
    return _views_of(features, view_set)


def head_tta(record: HeadRecord) -> HeadTTA | None:
    """The views a head recorded (`tta_views_of`) for prediction, or None for a head fitted without TTA.

    The record's reader has checked `tta_views` lists view indices (`pipeline.heads.checks`)."""
    if not record.tta_views:
        return None
    return HeadTTA(tuple(record.tta_views), (record.tta or {}).get("view_set") == "mild")


def image_view_mask(spec: ViewSpec, sha256: str, views: tuple[int, ...], mild: bool) -> list[bool]:
    """Which of `views` one image (its sha256) averages: every one, or with `mild` view 0 and the mild crops."""
    return [not mild or view == 0 or crop_area_of(spec, sha256, view) >= MILD_CROP_AREA for view in views]


def parse_view_set(text: str) -> str | tuple[int, ...]:
    """A view set from the command line: a name of `VIEW_SETS`, or comma-separated view indices ("0,1,2")."""
    if text in VIEW_SETS:
        return text
    try:
        views = tuple(int(part) for part in text.split(","))
    except ValueError:
        views = ()
    if not views or min(views) < 0 or len(set(views)) != len(views):
        raise UsageError(f"unknown TTA view set {text!r}; choose one of: {', '.join(VIEW_SETS)}, or distinct view "
                         "indices such as 0,1,2 (0 is the plain image)")
    return views


def require_views(features: FeatureSet) -> int:
    """Rows per image of a cache with views; `HeadError` that says how to get views for a cache without them."""
    per_image = cached_views(features.info)
    if per_image == 1:
        raise HeadError(f"test-time augmentation averages over cached views, and cache {features.info.path.name} "
                        "has none (view 0 only); re-extract with --views K (e.g. --views 4) to cache K augmented "
                        "views of every image, or fit without --tta")
    return per_image


def crop_area_of(spec: ViewSpec, sha256: str, view: int) -> float:
    """The share of the image's area the random crop of augmented `view` (>= 1) kept (to pixel rounding).

    Replays `render_view`'s first two draws: the area, then the aspect factor; a side that does not fit
    is clipped to the image, which keeps less than the drawn area (the same share at any image size).
    """
    rng = view_generator(spec, sha256, view)
    area = rng.uniform(*spec.crop_area)
    aspect = math.exp(rng.uniform(math.log(spec.crop_aspect[0]), math.log(spec.crop_aspect[1])))
    return float(min(1.0, math.sqrt(area * aspect)) * min(1.0, math.sqrt(area / aspect)))


def view_mask(features: FeatureSet, split: str, view_set: str | tuple[int, ...]) -> tuple[tuple[int, ...], np.ndarray]:
    """The cached views a view set reads, and which of them each image of `split` averages: (views, mask of
    shape (images, len(views)))."""
    images = features.info.images.in_split(split)
    views = _views_of(features, view_set)
    if view_set == "mild":
        spec, shas = features.info.views, features.info.images.sha256[images]
        mask = np.array([image_view_mask(spec, sha, views, True) for sha in shas],
                        dtype=bool).reshape(len(images), len(views))
        return views, mask
    return views, np.ones((len(images), len(views)), dtype=bool)


def _views_of(features: FeatureSet, view_set: str | tuple[int, ...]) -> tuple[int, ...]:
    """The cached view indices a view set reads (`HeadError` for a cache without views)."""
    per_image = require_views(features)
    if view_set in ("all", "mild"):
        return tuple(range(per_image))
    if view_set == "augmented":
        return tuple(range(1, per_image))
    if isinstance(view_set, str):
        raise UsageError(f"unknown TTA view set {view_set!r}; choose one of: {', '.join(VIEW_SETS)}")
    return tuple(int(view) for view in view_set)


def average_over_views(predict, x_views: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """(images, classes): per image, the mean of `predict`'s probabilities over its views where `mask` is set.

    `x_views` is (images, views, c); `predict` maps (n, c) rows to (n, classes) probabilities.
    """
    images, views = x_views.shape[:2]
    if not mask.any(axis=1).all():
        raise HeadError("test-time augmentation needs at least one view of every image; this view set leaves some "
                        "images none")
    probabilities = np.asarray(predict(x_views.reshape(images * views, -1)), dtype=np.float64)
    probabilities = probabilities.reshape(images, views, -1)
    weights = mask.astype(np.float64)
    return (probabilities * weights[:, :, None]).sum(axis=1) / weights.sum(axis=1, keepdims=True)


def tta_scores(head, features: FeatureSet, view_set: str | tuple[int, ...] = DEFAULT_VIEW_SET,
               splits: tuple[str, ...] = TTA_SPLITS) -> TTAScores:
    """Score a fitted `head` (as `fit` returned it) on the mean of its probabilities over `view_set`'s views of
    each image of `splits` (those `features` has), with the models the plain scores use.

    A recipe search chooses with `splits=("valid",)` and scores test once, for the final recipe.
    `HeadError` for a cache without views, or a loaded head refit on train + validation asked for valid.
    """
    metrics, probabilities, counts = {}, {}, []
    for split in splits:
        if split not in features.splits:
            continue
        views, mask = view_mask(features, split, view_set)
        model = validation_model(head) if split == "valid" else head
        probabilities[split] = average_over_views(model.predict_proba, split_views(features, split, views), mask)
        metrics[split] = classification_metrics(features.splits[split].y, probabilities[split],
                                                features.class_names)
        counts.append(mask.sum(axis=1))
    if not metrics:
        raise HeadError(f"cache {features.info.path.name} has no {' or '.join(splits)} images to score with "
                        "test-time augmentation")
    name = view_set if isinstance(view_set, str) else ",".join(str(view) for view in view_set)
    return TTAScores(name, round(float(np.concatenate(counts).mean()), 3), metrics, probabilities)
