"""Which rung of the transfer-learning ladder a cache's leaderboard suggests next.

The four cases of the teaching material (target data small or large, similar to ImageNet or not)
map onto four rungs this tool climbs (docs/finetune.md has the commands):

1. frozen top-layer features + a head            (small data, similar to ImageNet)
2. earlier-layer features (`extract --layer`)     (small data, different)
3. fine-tune the top block (`fine-tune --unfreeze`) (large data, similar)
4. fine-tune more blocks                          (large data, different)

`next_rung` reads the evidence a leaderboard has - the best frozen head's train and validation
top-1, the training images per class, fine-tuned models and their validation score, and heads
fitted on other layers of the same dataset and backbone (sibling caches in the folder) - and
names the rung with the reason and the command. The thresholds are rules of thumb, named below;
the advice says which evidence it used, so it can be weighed. No TensorFlow is imported.
"""

from __future__ import annotations

import math
from pathlib import Path

from pipeline.cache.format import CacheInfo, find_caches, read_cache_info
from pipeline.errors import CacheError
from pipeline.heads.registry import FINE_TUNED
from pipeline.heads.store import list_sidecars

#: Train top-1 at or above this is "near 1.0": the head can fit its training data.
NEAR_PERFECT_TRAIN = 0.98
#: Validation this far below train is over-fitting.
OVERFIT_GAP = 0.10
#: Train top-1 below this: the features do not separate the classes (under-fitting).
UNDERFIT_TRAIN = 0.90
#: Validation top-1 at or above this leaves little for another rung to win.
SOLVED_VALID = 0.98
#: Training images per class from which fine-tuning has data to move pretrained weights (a rule of thumb:
#: the teaching material says "large" without a number; a few hundred per class is where it usually pays).
LARGE_PER_CLASS = 100
#: Another layer's best head must beat this cache's by more than this on validation to count.
LAYER_MARGIN = 0.02


def next_rung(cache_path: Path, rows: list[dict]) -> dict:
    """{"rung", "case", "advice", "command"} for the cache at `cache_path` with leaderboard `rows`."""
    info = read_cache_info(cache_path)
    frozen = [row for row in rows if row["kind"] != FINE_TUNED and row["valid_top1"] is not None]
    tuned = [row for row in rows if row["kind"] == FINE_TUNED and row["valid_top1"] is not None]
    train_images = info.split_sizes()["train"]
    per_class = train_images / max(1, len(info.class_names))
    size = (f"{train_images} training images, {per_class:.0f} per class: "
            f"{'large' if per_class >= LARGE_PER_CLASS else 'small'} data (large from {LARGE_PER_CLASS} per class)")
    if not frozen:
        return _rung(1, "no head yet", "fit a frozen head on these features first",
                     f"fit-head {cache_path} --head logreg")
    best = frozen[0]
    large = per_class >= LARGE_PER_CLASS
    unfreeze = _top_block(info)
    tune = f"fine-tune {cache_path} --from-head {best['path']} --unfreeze {unfreeze}"
    if tuned:
        return _after_fine_tuning(best, tuned[0], large, size, tune)
    other = _better_layer(info, best["valid_top1"])
    if other is not None:
        layer, score, earlier = other
        where = "an earlier layer" if earlier else "another layer"
        advice = (f"features of {where}, {layer}, score {score:.3f} on validation against {best['valid_top1']:.3f} "
                  "here: the data differs from what ImageNet's top layers encode")
        if large:
            return _rung(4, "large, different", f"{advice}; with {size}, fine-tune more blocks", tune)
        return _rung(2, "small, different", f"{advice}; with {size}, use that cache's best head",
                     f"report {cache_path.parent} (the {layer} cache)")
    train = best.get("train_top1")
    if best["valid_top1"] >= SOLVED_VALID:
        return _rung(1, "similar", f"the frozen head already scores {best['valid_top1']:.3f} on validation: rung 1 "
                                   "is enough", None)
    if train is not None and train >= NEAR_PERFECT_TRAIN and train - best["valid_top1"] >= OVERFIT_GAP:
        gap = f"train top-1 {train:.3f} and validation {best['valid_top1']:.3f}: the head over-fits"
        if large:
            return _rung(3, "large, similar", f"{gap}; with {size}, fine-tune the top block with augmented views",
                         f"{tune} --views 4")
        return _rung(2, "small", f"{gap}; with {size}, fine-tuning would over-fit further: add data or views "
                                 f"(extract --views 4, then fit-head), or try earlier-layer features (extract "
                                 "--layer, see `layers`)", f"extract {info.data_root} --views 4")
    if train is not None and train < UNDERFIT_TRAIN:
        gap = f"train top-1 is only {train:.3f}: these features do not separate the classes"
        if large:
            return _rung(4, "large, different", f"{gap}; with {size}, fine-tune more than the top block", tune)
        return _rung(2, "small, different", f"{gap}; with {size}, try earlier-layer features (extract --layer, see "
                                            "`layers`)", f"extract {info.data_root} --layer <an earlier layer>")
    if large:
        return _rung(3, "large, similar", f"the frozen head scores {best['valid_top1']:.3f} on validation; with "
                                          f"{size}, fine-tuning the top block can move the features", tune)
    return _rung(1, "small, similar", f"the frozen head scores {best['valid_top1']:.3f} on validation; with {size}, "
                                      "stay with frozen features (views may help: extract --views 4)", None)


def _after_fine_tuning(best: dict, tuned: dict, large: bool, size: str, tune: str) -> dict:
    scores = f"fine-tuned {tuned['valid_top1']:.3f} vs frozen {best['valid_top1']:.3f} on validation"
    if tuned["valid_top1"] > best["valid_top1"]:
        if large:
            return _rung(4, "large", f"{scores}: fine-tuning helps; with {size}, unfreeze one more block "
                                     "(--unfreeze the block before; see `layers`)", tune)
        return _rung(3, "small", f"{scores}: fine-tuning helps; with {size}, tuning more blocks would likely "
                                 "over-fit: stay at rung 3, views may help", f"{tune} --views 4")
    return _rung(1, "small", f"{scores}: fine-tuning did not help; with {size}, keep the frozen head "
                             f"({best['name']})", None)


def _rung(rung: int, case: str, advice: str, command: str | None) -> dict:
    return {"rung": rung, "case": case, "advice": advice, "command": command}


def _top_block(info: CacheInfo) -> str:
    from pipeline.backbones.registry import get_backbone

    spec = get_backbone(info.spec.backbone)
    block = spec.block_of(info.spec.layer) if spec.block_of is not None else None
    return block or "<block> (see `layers`)"


def _better_layer(info: CacheInfo, score: float) -> tuple[str, float, bool] | None:
    """(layer, its best frozen validation top-1, whether it is earlier) of a sibling cache of another layer
    of the same dataset and backbone that beats `score` by more than `LAYER_MARGIN`, or None."""
    best = None
    for path in find_caches(info.path.parent):
        if path == info.path:
            continue
        try:
            other = read_cache_info(path)
        except CacheError:
            continue
        spec, mine = other.spec, info.spec
        same = (spec.backbone == mine.backbone and spec.input_size == mine.input_size and spec.layer != mine.layer
                and other.dataset.name == info.dataset.name and other.weights == info.weights
                and spec.views is None and other.shard is None)
        if not same:
            continue
        scores = [r.metrics["valid"]["top1"] for r in list_sidecars(path)
                  if r.kind != FINE_TUNED and r.metrics.get("valid", {}).get("top1") is not None]
        if scores and max(scores) > score + LAYER_MARGIN and (best is None or max(scores) > best[1]):
            best = (spec.layer, max(scores), _spatial(other) > _spatial(info))
    return best


def _spatial(info: CacheInfo) -> int:
    """Positions per feature map (a larger map sits earlier in a CNN); 1 for pooled features."""
    return math.prod(info.feature_shape[:-1]) if len(info.feature_shape) == 3 else 1
