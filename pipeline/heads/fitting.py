"""`fit-head`: fit one head on a cache, score every split, save head + sidecar + confusion PNG.

Honesty rules: hyper-parameters are chosen on validation only; the reported validation metrics
come from the model selected on validation (never trained on it); test is scored once, by the
final model, after every choice was made. With test-time augmentation (`tta`, a cache with views),
valid and test are also scored on the mean over each image's views (`pipeline.heads.tta`), by the
same models, and reported beside the plain view-0 scores under "tta".
"""

from __future__ import annotations

import errno
import os
import time
from dataclasses import dataclass, replace
from datetime import datetime, timezone
from pathlib import Path

from pipeline.atomic import remove_orphaned_temps, temp_path_for
from pipeline.cache.format import read_cache_info
from pipeline.cache.key import library_versions
from pipeline.cache.rows import non_finite_rows
from pipeline.errors import HeadError
from pipeline.heads.diagnosis import require_trainable
from pipeline.heads.features import DEFAULT_HEAD_POOLING, MAIN_TARGET, load_feature_set
from pipeline.heads.kinds.base import FittableHead
from pipeline.heads.metrics import classification_metrics
from pipeline.heads.plots import save_confusion_png
from pipeline.heads.record import CacheRef, HeadRecord
from pipeline.heads.registry import make_head
from pipeline.heads.store import heads_dir_of, new_head_stem, write_sidecar
from pipeline.heads.targets import implied_targets_report
from pipeline.heads.tta import require_views, tta_scores, tta_views_of


@dataclass(frozen=True)
class FitReport:
    """What `fit_head` produced."""

    sidecar_path: str
    kind: str
    params: dict
    metrics: dict
    fit_seconds: float
    files: list
    metrics_by_target: dict | None = None
    implied: dict | None = None
    views: str | None = None  # how a cache with views was used (`FeatureSet.views_note`)
    tta: dict | None = None  # test-time augmentation scores (`TTAScores.to_dict`), when asked for

    def to_dict(self) -> dict:
        return dict(self.__dict__)


@dataclass(frozen=True)
class FittedHead:
    """A head fitted on a FeatureSet, its metrics per split and how long fitting took."""

    head: FittableHead | None  # None for a fused head or an outside model's results (no model of its own)
    kind: str
    recipe: str | None
    metrics: dict
    fit_seconds: float
    probabilities: dict  # split -> (n, classes): valid from the model selected on validation
    class_names: tuple[str, ...] = ()
    target: str = MAIN_TARGET
    pooling: str = DEFAULT_HEAD_POOLING
    metrics_by_target: dict | None = None  # multi-task heads: {target: {split: metrics}}
    implied: dict | None = None  # targets the primary one implies: derived accuracy, consistency
    views: str | None = None  # how a cache with views was used (`FeatureSet.views_note`)
    tta: dict | None = None  # test-time augmentation scores (`TTAScores.to_dict`), when asked for

    @property
    def label(self) -> str:
        """The name heads are saved under: kind, then recipe, target and pooling where not the defaults
        (e.g. "gap-dense-classic", "logreg-species", "svm-avgmax")."""
        parts = [self.kind]
        if self.recipe not in (None, "default"):
            parts.append(self.recipe)
        if self.target != MAIN_TARGET:
            parts.append(self.target)
        if self.pooling != DEFAULT_HEAD_POOLING:
            parts.append(self.pooling)
        return "-".join(parts)


def fit_on_features(features, kind: str, recipe: str | None = None, **options) -> FittedHead:
    """Fit a `kind` head on `features` and score every split (see the module doc for the honesty rules).

    `options` go to the head (e.g. a multi-task head's targets and task weights).
    """
    head = make_head(kind, recipe, **options)
    require_trainable(features)  # before any fitting: one class would crash a solver or score a hollow 100%
    require_finite(features)
    started = time.perf_counter()
    head.fit(features)
    fit_seconds = time.perf_counter() - started
    by_target = {features.target: {}}
    for split, data in features.splits.items():
        if hasattr(head, "predict_all"):  # a multi-task head predicts every target
            outputs = head.valid_probabilities_by_target_ if split == "valid" else head.predict_all(data.x)
        else:
            outputs = {features.target: head.valid_probabilities_ if split == "valid" else head.predict_proba(data.x)}
        for target, output in outputs.items():
            by_target.setdefault(target, {})[split] = output
    metrics = {split: classification_metrics(data.y, by_target[features.target][split], features.class_names)
               for split, data in features.splits.items()}
    metrics_by_target = None
    if len(by_target) > 1:
        classes = head.class_names_
        metrics_by_target = {target: {split: classification_metrics(
            features.splits[split].targets[target] if target != features.target else features.splits[split].y,
            output, classes[target]) for split, output in outputs_by_split.items()}
            for target, outputs_by_split in by_target.items()}
    implied = implied_targets_report(features, by_target) if features.splits["train"].targets else None
    return FittedHead(head, kind, recipe, metrics, round(fit_seconds, 3), by_target[features.target],
                      features.class_names, features.target, features.pooling, metrics_by_target, implied or None,
                      features.views_note())


#: Image paths named in the refusal of non-finite features (the count is always given).
NAMED_ROWS = 5


def require_finite(features) -> None:
    """`HeadError` naming the images whose features hold NaN or infinite values, in any split.

    Such rows come from a cache written before `extract` refused them, or from a tampered one;
    every solver would fail on them (or fit NaN weights), so no head is fitted.
    """
    bad = [(split, data.relpaths[i]) for split, data in features.splits.items()
           for i in non_finite_rows(data.x)]
    if bad:
        named = ", ".join(f"{path} ({split})" for split, path in bad[:NAMED_ROWS])
        more = f" and {len(bad) - NAMED_ROWS} more" if len(bad) > NAMED_ROWS else ""
        raise HeadError(
            f"{len(bad)} images of {features.info.path} have NaN or infinite features: {named}{more}. No head can "
            "be fitted on them (`cache verify` reports them too); delete the cache (`cache rm`) and run `extract` "
            "again (with --store-dtype float32 if float16 overflowed)")


def fit_head(cache_path: Path, kind: str, recipe: str | None = None, target: str | None = None,
             pooling: str = DEFAULT_HEAD_POOLING, tta: str | tuple[int, ...] | None = None, **options) -> FitReport:
    """Fit a `kind` head on the cache at `cache_path` and save it under the cache's heads folder.

    `target` picks an extra label of the cache instead of the main one; `pooling` how spatial maps
    are pooled (`pipeline.cache.rows.HEAD_POOLINGS`); `tta` a view set (`pipeline.heads.tta`) to
    also score valid/test with test-time augmentation (`HeadError`, before fitting, for a cache
    without views) and record its views, so `predict` averages them too; `options` go to the head.
    """
    info = read_cache_info(cache_path)
    features = load_feature_set(cache_path, info, target, pooling)
    if tta is not None:
        require_views(features)
    fitted = fit_on_features(features, kind, recipe, **options)
    if tta is None:
        return save_fitted_head(cache_path, info, fitted)
    fitted = replace(fitted, tta=tta_scores(fitted.head, features, tta).to_dict())
    return save_fitted_head(cache_path, info, fitted, tta_views=tta_views_of(features, tta))


def save_fitted_head(cache_path: Path, info, fitted: FittedHead, member_of: tuple[str, ...] = (),
                     tta_views: tuple[int, ...] | None = None) -> FitReport:
    """Save `fitted` under the heads folder of `cache_path`: model file, confusion PNG, sidecar (marked as a
    member of the fused heads `member_of`, if any, and with the views `tta_views` predict averages).

    The model file and the PNG are written under temporary names (`.<stem>.tmp<pid>...`) and
    renamed only once both exist, then the sidecar is written last: a run killed at any point
    leaves temporary files only, which the next `fit-head` on that folder deletes
    (`remove_orphaned_temps`); any other failure (a full disk, a read-only folder) deletes them at
    once and raises `HeadError` saying so.
    """
    folder = heads_dir_of(cache_path)
    written: list[Path] = []
    try:
        remove_orphaned_temps(folder)
        stem = new_head_stem(folder, fitted.label)
        temp_stem = temp_path_for(stem)
        written.append(temp_stem.with_name(fitted.head.save(temp_stem)))
        title = f"{fitted.label} on {info.dataset.name or ''}"
        png = save_final_confusion(temp_stem, fitted.metrics, fitted.class_names, title)
        written += [png] if png is not None else []
        files = []
        for index, temp in enumerate(list(written)):
            final = folder / (stem.name + temp.name[len(temp_stem.name):])
            os.replace(temp, final)
            written[index] = final
            files.append(final.name)
        path = write_sidecar(stem, _record(stem, cache_path, info, fitted, files, member_of, tta_views))
    except OSError as error:
        for leftover in written:
            leftover.unlink(missing_ok=True)
        raise HeadError(f"could not save the head in {folder} ({error.strerror or error}); "
                        f"{_fix_for_write(error)} run `fit-head` again. Nothing was saved") from error
    files.append(path.name)
    return FitReport(str(path), fitted.kind, fitted.head.params_, fitted.metrics, fitted.fit_seconds, files,
                     fitted.metrics_by_target, fitted.implied, fitted.views, fitted.tta)


def _fix_for_write(error: OSError) -> str:
    if error.errno in (errno.ENOSPC, errno.EDQUOT):
        return "the disk is full: free some space and"
    if error.errno in (errno.EACCES, errno.EPERM, errno.EROFS):
        return ("the folder cannot be written: copy the cache to a folder you can write to (or pass --cache-dir "
                "one) and")
    return "fix the cause and"


def _record(stem: Path, cache_path: Path, info, fitted: FittedHead, files: list[str],
            member_of: tuple[str, ...], tta_views: tuple[int, ...] | None) -> HeadRecord:
    return HeadRecord(
        **base_fields(stem, fitted),
        hyperparameters=fitted.head.params_,
        search=fitted.head.search_,
        model_file=files[0],
        files=tuple(files),
        feature_key=info.key,
        feature_spec=info.spec,
        origin=info.origin.to_dict(),
        target=fitted.target,
        pooling=fitted.pooling,
        head_input=f"{fitted.pooling}-pooled features" if len(info.feature_shape) == 3 else "features as cached",
        extraction={"weights": info.weights.to_dict()},
        cache=cache_ref(cache_path, info),
        class_names=tuple(fitted.class_names),
        member_of=tuple(member_of),
        metrics_by_target=fitted.metrics_by_target,
        implied_targets=fitted.implied,
        views=fitted.views,
        tta=fitted.tta,
        tta_views=tta_views,
    )


def base_fields(stem: Path, fitted) -> dict:
    """What every head record says first (`HeadRecord` keyword arguments): kind, name, time, fit seconds,
    metrics and how to read them."""
    return {
        "kind": fitted.kind,
        "name": stem.name,
        "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "fit_seconds": fitted.fit_seconds,
        "versions": library_versions(),
        "metrics_note": "valid: model selected on validation (trained without it); test: final model, scored once",
        "metrics": fitted.metrics,
    }


def cache_ref(cache_path: Path, info) -> CacheRef:
    """How a head records the cache it was fitted on."""
    return CacheRef(str(Path(cache_path).resolve()), info.dataset.name, info.split_sizes())


def save_final_confusion(stem: Path, metrics: dict, class_names, title: str) -> Path | None:
    """The confusion-matrix PNG of the last scored split (test, else valid), or None without either."""
    final_split = "test" if "test" in metrics else "valid" if "valid" in metrics else None
    if final_split is None:
        return None
    return save_confusion_png(metrics[final_split]["confusion_matrix"], class_names,
                              Path(f"{stem}.confusion-{final_split}.png"),
                              f"{title} ({final_split}, row-normalised)")
