"""Fusion: one head on the features of several caches of the same images.

The caches are of one dataset, extracted with different backbones (or layers). Their images are
joined by content hash: every cache must hold the same images, in the same splits, with the same
labels and class names; otherwise `FusionError` says which differ and how.

Naive fusion often loses to the best backbone alone (measured on a 120-breed dog set: the best
single backbone 0.683 mean per-class accuracy, standardised concatenation of all three 0.642,
averaged probabilities 0.612), so how to fuse is chosen on validation among:

- each backbone alone (a head of the asked kind fitted on its cache);
- late fusion: a weighted average of the member heads' calibrated probabilities, the weights on a
  simplex grid in steps of 1/`WEIGHT_GRID_STEPS` (equal weights among them);
- early fusion: one head of the same kind on the concatenated features (standardised by the
  head as always).

The candidate with the best validation top-1 wins; ties go to the lower validation log loss, then
to fewer backbones. Every single backbone is a candidate, so a fused head is never worse on
validation than the best single one, and when a single backbone wins the result says so. Test is
scored once, on the chosen candidate. Validation scores use each member's model selected on
validation (trained without it); choosing the weights on the same split makes the fused
validation figure slightly optimistic, as every selection does - test is the honest estimate.

Saved: a fusion sidecar (kind `fusion`) in the first cache's heads folder naming the members,
their weights and the method (early fusion also saves its head on the concatenated features next
to it, `<stem>.concat.*`), and each member head in its own cache's heads folder, a normal head in
that cache's report too, marked there as a member (`member_of`: the fused heads it serves). A
member identical to a head the cache already has (same kind, settings, metrics and predictions:
`fit-head` on that cache alone fits the same one) is not saved again; that head is marked and
used. `predict` runs the backbone of every member that carries weight.
"""

from __future__ import annotations

import itertools
import time
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np

from pipeline.cache.format import CacheInfo, read_cache_info
from pipeline.errors import HeadError
from pipeline.heads.features import DEFAULT_HEAD_POOLING, FeatureSet, SplitData, load_feature_set
from pipeline.heads.fitting import (
    FitReport,
    FittedHead,
    base_fields,
    cache_ref,
    fit_on_features,
    save_final_confusion,
    save_fitted_head,
)
from pipeline.heads.metrics import classification_metrics
from pipeline.heads.record import ConcatHead, FusedMember, HeadRecord
from pipeline.heads.registry import FUSION_KIND, HEADS
from pipeline.heads.store import heads_dir_of, list_sidecars, load_head, new_head_stem, write_sidecar

LATE, EARLY, SINGLE = "late", "early", "single"
#: Late-fusion weights are multiples of 1/WEIGHT_GRID_STEPS that sum to 1.
WEIGHT_GRID_STEPS = 10
MIN_MEMBERS = 2
#: Early fusion's own head is saved beside the fused sidecar as `<stem>.concat.*`.
CONCAT_SUFFIX = ".concat"
_EXAMPLES = 3  # differing images named in a refusal
_PROBABILITY_FLOOR = 1e-12
_SAME = 1e-6  # an existing head whose accuracies and probabilities are within this of a member's is that member


class FusionError(HeadError):
    """The caches cannot be fused (different images, splits, labels or classes; too few caches)."""


@dataclass(frozen=True)
class Candidate:
    """One way to fuse, scored on validation."""

    method: str
    weights: tuple[float, ...]  # per member (late / single); early fusion uses every member
    valid_top1: float
    valid_log_loss: float
    probabilities: dict  # split -> (n, classes)
    fitted: FittedHead | None = None  # early fusion's own head on the concatenated features

    @property
    def members_used(self) -> int:
        return sum(weight > 0 for weight in self.weights)

    def describe(self, names: list[str]) -> str:
        if self.method == EARLY:
            return "early: one head on " + " + ".join(names)
        if self.method == SINGLE:
            return f"{SINGLE}: " + next(name for name, weight in zip(names, self.weights) if weight > 0)
        used = [f"{name} {weight:.1f}" for name, weight in zip(names, self.weights) if weight > 0]
        return f"{self.method}: " + ", ".join(used)


def aligned_feature_sets(cache_paths: list[Path], target: str | None = None,
                         pooling: str = DEFAULT_HEAD_POOLING) -> list[FeatureSet]:
    """The pooled features of every cache, rows aligned to the first cache's images (see module doc)."""
    if len(cache_paths) < MIN_MEMBERS:
        raise FusionError(f"fusion needs at least {MIN_MEMBERS} caches of the same images, got {len(cache_paths)}")
    infos = [read_cache_info(path) for path in cache_paths]
    for info in infos:
        info.require_whole_dataset()
    reference = infos[0]
    for info in infos[1:]:
        _check_same_images(reference, info)
    sets = []
    for info in infos:
        features = load_feature_set(info.path, info, target, pooling)
        if features.train_views > 1:
            raise FusionError(f"{info.path.name} holds augmented views (extract --views); fusion joins one row per "
                              "image across caches, so fuse caches extracted without --views")
        splits = {}
        for split, data in features.splits.items():
            # Features are per content: this cache's row of each of the reference's images, in its order.
            position_of = {sha: j for j, sha in enumerate(info.images.sha256[info.images.in_split(split)])}
            order = [position_of[sha] for sha in reference.images.sha256[reference.images.in_split(split)]]
            splits[split] = SplitData(data.x[order], data.y[order], tuple(data.relpaths[i] for i in order),
                                      {task: labels[order] for task, labels in data.targets.items()})
        sets.append(replace(features, splits=splits))
    return sets


def fit_fusion(cache_paths: list[Path], kind: str, recipe: str | None = None, target: str | None = None,
               pooling: str = DEFAULT_HEAD_POOLING) -> FitReport:
    """Fit a fused head of `kind` on the caches at `cache_paths` and save it (see module doc)."""
    started = time.perf_counter()
    sets = aligned_feature_sets([Path(p) for p in cache_paths], target, pooling)
    members = [fit_on_features(features, kind, recipe) for features in sets]
    names = [member_name(features.info) for features in sets]
    if "valid" not in sets[0].splits:
        raise FusionError("fusion chooses how to fuse on the validation split, and these caches have none; "
                          "re-run extract with a validation split (--valid-fraction)")
    y_valid = sets[0].splits["valid"].y
    candidates = _single_and_late(members, y_valid) + [_early(sets, kind, recipe, y_valid)]
    chosen = choose(candidates)
    stem = new_head_stem(heads_dir_of(Path(cache_paths[0])), f"{FUSION_KIND}-{members[0].label}")
    member_sidecars = [_member_sidecar(Path(path), features, fitted, stem.name)
                       for path, features, fitted in zip(cache_paths, sets, members)]
    return _save(stem, Path(cache_paths[0]), sets, names, members, member_sidecars, candidates, chosen, kind, recipe,
                 round(time.perf_counter() - started, 3))


def _member_sidecar(cache_path: Path, features: FeatureSet, fitted: FittedHead, fusion_name: str) -> str:
    """The sidecar path of a member head: an identical head the cache has, or this one saved; marked as a
    member of `fusion_name` either way (see the module doc)."""
    twin = _identical_head(cache_path, features, fitted)
    if twin is None:
        return save_fitted_head(cache_path, features.info, fitted, (fusion_name,)).sidecar_path
    return str(write_sidecar(twin.stem, replace(twin, member_of=(*twin.member_of, fusion_name))))


def _identical_head(cache_path: Path, features: FeatureSet, fitted: FittedHead) -> HeadRecord | None:
    """A saved head of the cache that is `fitted` again: same kind, features, target and pooling, the same
    top-1 on every split and the same probabilities (within `_SAME`); None when there is none.
    Rows may be in another order here than in `fit-head`, so figures are compared within rounding."""
    expected = (fitted.kind, features.info.key, fitted.target, fitted.pooling)
    for record in list_sidecars(cache_path):
        if (record.kind, record.feature_key, record.target, record.pooling) != expected:
            continue
        saved = record.metrics
        if set(saved) != set(fitted.metrics) or any(
                abs(saved[split].get("top1", -1) - fitted.metrics[split]["top1"]) > _SAME
                for split in saved):
            continue
        try:
            head, _ = load_head(record.path)
        except HeadError:
            continue
        if all(np.allclose(head.predict_proba(data.x), fitted.head.predict_proba(data.x), atol=_SAME)
               for data in features.splits.values()):
            return record
    return None


def choose(candidates: list[Candidate]) -> Candidate:
    """The best candidate on validation: top-1, then log loss, then fewer backbones (see module doc)."""
    return min(candidates, key=lambda c: (-c.valid_top1, c.valid_log_loss, c.members_used, c.method != SINGLE))


def member_name(info: CacheInfo) -> str:
    """How a member is named in results: backbone, and the layer when it is not the default one."""
    from pipeline.backbones.registry import BACKBONES

    spec = BACKBONES.get(info.spec.backbone)
    default = spec.default_layer if spec is not None else None
    return info.spec.backbone if info.spec.layer == default else f"{info.spec.backbone}/{info.spec.layer}"


def late_weight_grid(members: int, steps: int = WEIGHT_GRID_STEPS) -> list[tuple[float, ...]]:
    """Every weight vector of `members` non-negative multiples of 1/`steps` summing to 1."""
    grid = []
    for cuts in itertools.combinations(range(steps + members - 1), members - 1):
        bounds = (-1, *cuts, steps + members - 1)
        grid.append(tuple((bounds[i + 1] - bounds[i] - 1) / steps for i in range(members)))
    return grid


def _single_and_late(members: list[FittedHead], y_valid: np.ndarray) -> list[Candidate]:
    splits = members[0].probabilities.keys()
    candidates = []
    for weights in late_weight_grid(len(members)):
        probabilities = {split: sum(w * m.probabilities[split] for w, m in zip(weights, members) if w > 0)
                         for split in splits}
        method = SINGLE if sum(w > 0 for w in weights) == 1 else LATE
        candidates.append(_scored(method, weights, probabilities, y_valid))
    return candidates


def _early(sets: list[FeatureSet], kind: str, recipe: str | None, y_valid: np.ndarray) -> Candidate:
    concatenated = _concatenate(sets)
    fitted = fit_on_features(concatenated, kind, recipe)
    candidate = _scored(EARLY, tuple(1.0 for _ in sets), fitted.probabilities, y_valid)
    return replace(candidate, fitted=fitted)


def _concatenate(sets: list[FeatureSet]) -> FeatureSet:
    reference = sets[0]
    splits = {}
    for split, data in reference.splits.items():
        x = np.concatenate([features.splits[split].x for features in sets], axis=1)
        splits[split] = SplitData(x, data.y, data.relpaths, data.targets)
    width = sum(features.splits["train"].x.shape[1] for features in sets)
    return replace(reference, info=replace(reference.info, feature_shape=(width,)), splits=splits)


def _scored(method: str, weights: tuple[float, ...], probabilities: dict, y_valid: np.ndarray) -> Candidate:
    from pipeline.heads.metrics import top_k_accuracy

    valid = probabilities["valid"]
    picked = valid[np.arange(len(y_valid)), y_valid]
    log_loss = float(-np.mean(np.log(np.clip(picked, _PROBABILITY_FLOOR, 1.0))))
    return Candidate(method, tuple(weights), top_k_accuracy(y_valid, valid, 1), log_loss, probabilities)


def _check_same_images(reference: CacheInfo, other: CacheInfo) -> None:
    """`FusionError` unless `other` holds the same images as `reference`, in the same splits, with the same labels."""
    where = f"{other.path.name} and {reference.path.name}"
    if tuple(other.class_names) != tuple(reference.class_names):
        raise FusionError(f"{where} have different classes ({', '.join(other.class_names[:5])} ... vs "
                          f"{', '.join(reference.class_names[:5])} ...); fuse caches of one dataset")
    mine, theirs = _content_table(reference), _content_table(other)
    only_here = sorted(set(mine) - set(theirs))
    only_there = sorted(set(theirs) - set(mine))
    if only_here or only_there:
        raise FusionError(
            f"{where} hold different images: {len(only_there)} only in {other.path.name} "
            f"({_examples(other, only_there)}), {len(only_here)} only in {reference.path.name} "
            f"({_examples(reference, only_here)}). Extract the same dataset folder with each backbone "
            "(unchanged images are never re-extracted), then fuse")
    moved = [sha for sha in mine if mine[sha][0] != theirs[sha][0]]
    if moved:
        raise FusionError(f"{len(moved)} images are in different splits in {where} (e.g. "
                          f"{_examples(reference, moved)}: {mine[moved[0]][0]} vs {theirs[moved[0]][0]}); extract "
                          "both with the same --valid-fraction, --test-fraction and --split-seed")
    relabelled = [sha for sha in mine if mine[sha][1] != theirs[sha][1]]
    if relabelled:
        raise FusionError(f"{len(relabelled)} images have different labels in {where} (e.g. "
                          f"{_examples(reference, relabelled)}); extract both from the same labelled folder")


def _content_table(info: CacheInfo) -> dict:
    """sha256 -> (sorted splits, sorted labels) of every image content in a cache."""
    table: dict[str, tuple[set, set]] = {}
    for sha, split, label in zip(info.images.sha256, info.images.split, info.images.label):
        splits, labels = table.setdefault(str(sha), (set(), set()))
        splits.add(str(split))
        labels.add(int(label))
    return {sha: (tuple(sorted(s)), tuple(sorted(labels))) for sha, (s, labels) in table.items()}


def _examples(info: CacheInfo, shas: list[str]) -> str:
    path_of = {str(sha): relpath for sha, relpath in zip(info.images.sha256, info.images.relpath)}
    return ", ".join(path_of[sha] for sha in shas[:_EXAMPLES]) + (" ..." if len(shas) > _EXAMPLES else "")


def _save(stem: Path, first_cache: Path, sets, names, members, member_sidecars, candidates, chosen: Candidate, kind,
          recipe, fit_seconds) -> FitReport:
    reference = sets[0]
    label = members[0].label
    files = []
    if chosen.method == EARLY:
        files.append(chosen.fitted.head.save(Path(f"{stem}{CONCAT_SUFFIX}")))
    probabilities = chosen.probabilities
    metrics = {split: classification_metrics(data.y, probabilities[split], reference.class_names)
               for split, data in reference.splits.items()}
    png = save_final_confusion(stem, metrics, reference.class_names, f"{FUSION_KIND} {label}")
    if png is not None:
        files.append(png.name)
    carried = [name for name, weight in zip(names, chosen.weights) if weight > 0]
    best_single = max((c for c in candidates if c.method == SINGLE), key=lambda c: (c.valid_top1, -c.valid_log_loss))
    params = {"method": chosen.method, "member_kind": kind, "recipe": recipe,
              "weights": dict(zip(names, chosen.weights)), "carried_by": carried,
              "selected_by": "valid top-1, then valid log loss, then fewer backbones",
              "best_single": names[best_single.weights.index(max(best_single.weights))],
              "best_single_valid_top1": best_single.valid_top1}
    fitted = FittedHead(None, FUSION_KIND, None, metrics, fit_seconds, probabilities, reference.class_names,
                        reference.target, reference.pooling)
    record = HeadRecord(
        **base_fields(stem, fitted),
        hyperparameters=params,
        search=[{"candidate": c.describe(names), "method": c.method, "weights": list(c.weights),
                 "valid_top1": c.valid_top1, "valid_log_loss": c.valid_log_loss} for c in candidates],
        model_file=files[0] if chosen.method == EARLY else None,
        concat_head=(ConcatHead(kind, files[0], chosen.fitted.head.params_) if chosen.method == EARLY else None),
        files=tuple(files),
        members=tuple(FusedMember(name, sidecar, features.info.key, str(Path(features.info.path).resolve()), weight)
                      for name, sidecar, features, weight in zip(names, member_sidecars, sets, chosen.weights)),
        feature_key="+".join(features.info.key for features in sets),
        feature_keys=tuple(features.info.key for features in sets),
        origin=reference.info.origin.to_dict(),
        target=reference.target,
        pooling=reference.pooling,
        class_names=tuple(reference.class_names),
        cache=cache_ref(first_cache, reference.info),
    )
    path = write_sidecar(stem, record)
    files.append(path.name)
    return FitReport(str(path), FUSION_KIND, params, metrics, fit_seconds, files)


def concat_head(record: HeadRecord):
    """Early fusion's head on the concatenated features (member order), loaded like any head (no pickle)."""
    concat = record.concat_head
    concat_record = replace(record, kind=concat.kind, model_file=concat.model_file,
                            hyperparameters=concat.hyperparameters, concat_head=None)
    return HEADS[concat.kind].head_class().load(Path(f"{record.stem}{CONCAT_SUFFIX}"), concat_record)
