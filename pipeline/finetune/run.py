"""`fine-tune CACHE --from-head HEAD --unfreeze BLOCK`: small steps over one `FineTuneRun` value.

1. `_start`: the cache and the head fitted on it (refusing what cannot start a fine-tune: an
   imported or shard cache, a head of another cache, a head with no gradient, a model that is
   already fine-tuned); the backbone rebuilt with the same weights (their fingerprint checked);
   the cut (`pipeline.finetune.cut`).
2. `_boundary_cache`: the cache of the boundary layer's output, through `extract` itself (same
   keys, crash safety, reuse: an existing one costs a hash check), for the same dataset, splits,
   weights, resizing, precision and store dtype as CACHE, with `--views K` when asked. Its images
   must sit in the same splits as CACHE's.
3. `_starting_head`: the head it starts from. Linear heads were refit on train + validation after
   choosing C; here they are refit with that C on train only (their model selected on
   validation), so that validation stays unseen while fine-tuning chooses epochs on it.
4. `_train`: the tuned model (`pipeline.finetune.model`) trained by `pipeline.finetune.train` on
   the starting head's own objective (cross-entropy, or an SVM's squared hinge), resumable from a
   checkpoint per epoch.
5. `_save`: every split scored once with the best weights (train and validation on view 0; test
   scored here for the first time), compared on validation with the head it started from (a
   warning when fine-tuning is worse there), and saved as a `fine-tuned` head next to the frozen
   heads of CACHE, so `report` ranks them together and `predict` uses it.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np

from pipeline.backbones.registry import BackboneSpec, get_backbone
from pipeline.backbones.weights import ResolvedWeights, resolve_weights
from pipeline.cache.format import CacheInfo, read_cache_info
from pipeline.cache.key import library_versions, now_iso
from pipeline.data.dataset import SPLITS
from pipeline.data.views import DEFAULT_VIEW_SEED
from pipeline.errors import CacheError, HeadError
from pipeline.extract.options import DEFAULT_BATCH_SIZE, ExtractOptions
from pipeline.finetune.batches import SplitRows
from pipeline.finetune.checkpoint import checkpoint_dir, remove_checkpoints, run_key
from pipeline.finetune.cut import Cut, resolve_cut
from pipeline.finetune.model import TunedModel, build_backbone, check_start_weights, cut_fingerprint, tuned_model
from pipeline.finetune.recipe import Recipe
from pipeline.finetune.train import Trainer, TrainingResult, selection_rule, smaller_drops, train
from pipeline.heads.features import MAIN_TARGET, load_feature_set
from pipeline.heads.fitting import cache_ref
from pipeline.heads.graph import require_differentiable
from pipeline.heads.kinds.base import Head
from pipeline.heads.metrics import classification_metrics
from pipeline.heads.record import HeadRecord
from pipeline.heads.registry import FINE_TUNED
from pipeline.heads.store import check_feature_key, heads_dir_of, load_head, new_head_stem, write_sidecar

log = logging.getLogger(__name__)

#: Metrics compared with the head a fine-tune started from, on validation.
COMPARED = ("top1", "mean_per_class_accuracy", "log_loss")
_NAMES_SHOWN = 4  # class names quoted in a refusal


@dataclass(frozen=True)
class FineTuneOptions:
    """What `fine-tune` can be asked besides the cache and the head."""

    unfreeze: str | None = None
    from_layer: str | None = None
    views: int = 0
    view_seed: int = DEFAULT_VIEW_SEED
    frozen_mode: str = "inference"
    recipe: Recipe = field(default_factory=Recipe)
    extract_batch_size: int = DEFAULT_BATCH_SIZE
    workers: int | None = None


@dataclass(frozen=True)
class FineTuneReport:
    """What `fine_tune` produced, for the CLI and `--json`."""

    sidecar_path: str
    boundary_cache: str
    cut: dict
    best_epoch: int
    epochs_run: int
    resumed_from: int
    metrics: dict
    comparison: dict
    warning: str | None
    history: list
    seconds: dict
    views: str | None
    files: list
    selection: str = ""  # how the best epoch was chosen (`selection_rule`)
    objective: str = ""  # what training minimised (the starting head's own objective)
    smaller_drops: list = field(default_factory=list)  # [epoch, how much lower]: lower loss, not chosen

    def to_dict(self) -> dict:
        return dict(self.__dict__)


@dataclass
class FineTuneRun:
    """One run of `fine-tune`, filled in step by step (see the module doc)."""

    cache_path: Path
    cache_dir: Path
    options: FineTuneOptions
    info: CacheInfo
    head: Head
    record: HeadRecord
    backbone: BackboneSpec
    weights: ResolvedWeights
    base: object
    cut: Cut
    boundary: CacheInfo | None = None
    start_head: Head | None = None
    start_note: str = ""
    tuned: TunedModel | None = None
    result: TrainingResult | None = None
    trainer: Trainer | None = None
    checkpoint: Path | None = None
    seconds: dict = field(default_factory=dict)


def fine_tune(cache_path: Path, head_path: Path, cache_dir: Path, options: FineTuneOptions,
              extract_progress: Callable[[int, int], None] | None = None,
              epoch_progress: Callable[[dict], None] | None = None) -> FineTuneReport:
    """Fine-tune the layers of `options` with the head at `head_path`, fitted on the cache at `cache_path`."""
    options.recipe.validate()
    run = _start(Path(cache_path), Path(head_path), Path(cache_dir), options)
    _timed(run, "boundary_cache", lambda: _boundary_cache(run, extract_progress))
    _timed(run, "starting_head", lambda: _starting_head(run))
    _timed(run, "training", lambda: _train(run, epoch_progress))
    return _save(run)


def _timed(run: FineTuneRun, name: str, step) -> None:
    started = time.perf_counter()
    step()
    run.seconds[name] = round(time.perf_counter() - started, 3)


def _start(cache_path: Path, head_path: Path, cache_dir: Path, options: FineTuneOptions) -> FineTuneRun:
    info = read_cache_info(cache_path)
    info.require_whole_dataset()
    if info.is_imported:
        raise CacheError(f"{cache_path.name} holds features imported from an npz file: the images are not here to "
                         "extract the boundary layer from; extract the dataset (`extract`), fit a head on that cache "
                         "and fine-tune from it")
    head, record = load_head(head_path)
    if record.kind == FINE_TUNED:
        raise HeadError(f"{head_path} is already a fine-tuned model; fine-tune from the frozen head it started from "
                        f"({record.tuned_from or 'see its sidecar'}) with "
                        "an earlier --unfreeze to tune more layers")
    require_differentiable(record.kind, "fine-tuning")
    _check_head_fits_cache(record, info)
    backbone = get_backbone(info.spec.backbone)
    weights = resolve_weights(backbone, info.weights.request, cache_dir, info.spec.input_size)
    base = build_backbone(backbone, weights, info.spec.input_size)
    check_start_weights(base, info.spec.layer, info.spec.weights_fingerprint, record.name)
    cut = resolve_cut(backbone, base, info.spec.layer, options.unfreeze, options.from_layer, options.frozen_mode)
    return FineTuneRun(cache_path, cache_dir, options, info, head, record, backbone, weights, base, cut)


def _check_head_fits_cache(record: HeadRecord, info: CacheInfo) -> None:
    """`HeadError` unless the head was fitted on this cache's problem: its features (key), its main
    label (fine-tuning trains on it) and its classes, in the same order; otherwise the comparison
    with the head would measure a gain against another problem."""
    head = record.path
    check_feature_key(record, info.key, f"cache {info.path.name}")
    target = record.target or MAIN_TARGET
    if target != MAIN_TARGET:
        raise HeadError(f"head {head} predicts the target {target!r}, but fine-tuning trains on the cache's main "
                        f"label; fit a head without --target on {info.path.name} and fine-tune from it")
    names, expected = list(record.class_names), list(info.class_names)
    if names != expected:
        differ = (f"{len(names)} classes ({_some(names)}) vs {len(expected)} ({_some(expected)})"
                  if set(names) != set(expected) else "the same classes in another order")
        raise HeadError(f"head {head} was fitted on other classes than {info.path.name} holds: {differ}, so its "
                        f"figures are about another problem; fit a head on {info.path.name} (fit-head) and fine-tune "
                        "from that")


def _some(names: list[str]) -> str:
    return ", ".join(names[:_NAMES_SHOWN]) + (" ..." if len(names) > _NAMES_SHOWN else "")


def _boundary_cache(run: FineTuneRun, progress) -> None:
    from pipeline.extract.run import run_extract

    info, spec = run.info, run.info.spec
    carving = info.carving
    options = ExtractOptions(
        backbone=spec.backbone, layer=run.cut.boundary, input_size=spec.input_size, resize=spec.resize_policy,
        pool="none", precision=spec.precision, weights=info.weights.request, store_dtype=spec.store_dtype,
        batch_size=run.options.extract_batch_size, workers=run.options.workers, layout=info.dataset.layout,
        name=info.dataset.name, views=run.options.views, view_seed=run.options.view_seed,
        **({"valid_fraction": carving.valid_fraction, "test_fraction": carving.test_fraction,
            "split_seed": carving.seed} if carving is not None else {}))
    summary = run_extract(info.data_root, run.cache_dir, options, progress=progress)
    run.boundary = read_cache_info(summary.cache_path)
    _check_same_images(info, run.boundary)


def _check_same_images(info: CacheInfo, boundary: CacheInfo) -> None:
    """`CacheError` unless every image of the head's cache sits in the same split, with the same label."""
    theirs = {sha: (split, label) for sha, split, label in
              zip(boundary.images.sha256, boundary.images.split, boundary.images.label)}
    moved = [path for path, sha, split, label in zip(info.images.relpath, info.images.sha256, info.images.split,
                                                     info.images.label) if theirs.get(sha) != (split, label)]
    if moved or boundary.class_names != info.class_names:
        raise CacheError(f"the dataset under {info.data_root} changed since {info.path.name} was extracted "
                         f"({len(moved)} images are missing or in another split or class now, e.g. "
                         f"{moved[:1] or 'the class list'}); re-run `extract` on it, fit the head again, then "
                         "fine-tune")


def _starting_head(run: FineTuneRun) -> None:
    params = run.record.hyperparameters
    if params.get("refit_on") != "train+valid":
        run.start_head, run.start_note = run.head, f"{run.record.name} as saved (trained on train only)"
        return
    head = type(run.head)(c_grid=(params["C"],), refit_on_valid=False)
    run.start_head = head.fit(load_feature_set(run.cache_path, run.info))
    run.start_note = (f"{run.record.name} refit with its C={params['C']:.3g} on train only (the saved head was "
                      "refit on train+valid), so validation stays unseen while fine-tuning")


def _split_rows(boundary: CacheInfo, split: str) -> SplitRows:
    images = boundary.images
    members = images.in_split(split)
    rows = images.view_rows[members] if images.view_rows is not None else images.row[members][:, None]
    return SplitRows(rows.astype(np.int64), images.label[members].astype(np.int64))


def _run_identity(run: FineTuneRun) -> dict:
    return {"head": run.record.name, "head_created": run.record.created, "head_key": run.info.key,
            "boundary_key": run.boundary.key, "cut": run.cut.to_dict(), "recipe": run.options.recipe.to_dict(),
            "frozen_mode": run.options.frozen_mode}


def _train(run: FineTuneRun, progress) -> None:
    if not run.boundary.split_sizes()["valid"]:
        raise HeadError(f"{run.boundary.path.name} has no validation images; fine-tuning stops early and keeps its "
                        "best epoch on validation: re-run extract with a --valid-fraction, then fit the head again")
    run.tuned = tuned_model(run.base, run.cut, run.start_head, run.info.spec.pooling,
                            len(_split_rows(run.boundary, "train")))
    run.trainer = Trainer(run.tuned, run.options.recipe)
    key = run_key(_run_identity(run))
    run.checkpoint = checkpoint_dir(heads_dir_of(run.cache_path), key)
    run.result = train(run.trainer, run.boundary.path, _split_rows(run.boundary, "train"),
                       _split_rows(run.boundary, "valid"), run.info.class_names, (run.checkpoint, key), progress)


def _scores(run: FineTuneRun) -> dict:
    metrics = {}
    for split in SPLITS:
        rows = _split_rows(run.boundary, split)
        if len(rows):
            metrics[split] = classification_metrics(rows.labels, run.trainer.probabilities(run.boundary.path, rows),
                                                    run.info.class_names)
    return metrics


def _comparison(run: FineTuneRun, metrics: dict) -> tuple[dict, str | None]:
    before = run.record.metrics.get("valid", {})
    after = metrics.get("valid", {})
    rows = {name: {"head": before.get(name), "fine_tuned": after.get(name)} for name in COMPARED}
    worse = [name for name in ("top1", "mean_per_class_accuracy")
             if None not in (before.get(name), after.get(name)) and after[name] < before[name]]
    warning = None
    if worse:
        warning = ("the fine-tuned model is worse on validation than the head it started from ("
                   + ", ".join(f"{name} {rows[name]['fine_tuned']:.3f} vs {rows[name]['head']:.3f}" for name in worse)
                   + f"); with {len(_split_rows(run.boundary, 'train'))} training images fine-tuning may over-fit: "
                   f"keep the frozen head ({run.record.name}), or try --views and a lower learning rate")
    return {"on": "valid", "head": run.record.name, "metrics": rows}, warning


def _save(run: FineTuneRun) -> FineTuneReport:
    from pipeline.heads.kinds.fine_tuned import FineTunedHead
    from pipeline.heads.plots import save_confusion_png

    started = time.perf_counter()
    metrics = _scores(run)
    run.seconds["scoring"] = round(time.perf_counter() - started, 3)
    comparison, warning = _comparison(run, metrics)
    result, cut, info = run.result, run.cut, run.info
    tuned_spec = replace(info.spec, weights_fingerprint=cut_fingerprint(run.base, cut.top), views=None)
    params = {"unfrozen": cut.unfrozen, **run.options.recipe.to_dict(), "best_epoch": result.best_epoch,
              "epochs_run": len(result.history) - 1, "selected_by": selection_rule(run.options.recipe.min_delta),
              "objective": run.tuned.objective,
              "frozen_mode": run.options.frozen_mode}
    label = f"{FINE_TUNED}-{cut.unfrozen}"
    stem = new_head_stem(heads_dir_of(run.cache_path), label)
    files = [FineTunedHead(run.tuned.model, params).save(stem)]
    final_split = "test" if "test" in metrics else "valid"
    png = save_confusion_png(metrics[final_split]["confusion_matrix"], info.class_names,
                             Path(f"{stem}.confusion-{final_split}.png"),
                             f"{label} on {info.dataset.name or ''} ({final_split}, row-normalised)")
    files.append(png.name)
    boundary = run.boundary
    views_note = (f"train: one of the {boundary.views.per_image} views of each image per epoch (view 0 = the plain "
                  "image); valid and test: view 0 only") if boundary.views is not None else None
    record = HeadRecord(
        kind=FINE_TUNED, name=stem.name, created=now_iso(),
        fit_seconds=round(sum(epoch.get("seconds") or 0 for epoch in result.history), 3),
        hyperparameters=params, search=result.history, model_file=files[0], files=tuple(files),
        feature_key=boundary.key, feature_spec=boundary.spec, origin=boundary.origin.to_dict(),
        head_input=f"{cut.boundary} maps, unpooled",
        extraction={"weights": boundary.weights.to_dict()},
        cache=cache_ref(boundary.path, boundary),
        listed_with=str(Path(run.cache_path).resolve()),
        fine_tuning={
            "from_head": {"name": run.record.name, "kind": run.record.kind, "path": str(run.record.path),
                          "feature_key": info.key, "started_as": run.start_note},
            **cut.to_dict(), "backbone": info.spec.backbone,
            "batchnorm": "frozen, inference mode", "frozen_layers": f"up to {cut.boundary}, inference mode",
            "tuned_feature_spec": tuned_spec.to_dict(), "tuned_feature_key": tuned_spec.key(),
            "boundary_cache": str(boundary.path.resolve()), "resumed_from_epoch": result.resumed_from,
        },
        comparison=comparison, warning=warning,
        class_names=tuple(info.class_names), versions=library_versions(),
        metrics_note="valid: model selected on validation (trained without it); test: final model, scored once; "
                     "train: view 0",
        metrics=metrics,
        views=views_note or None,
    )
    path = write_sidecar(stem, record)
    files.append(path.name)
    remove_checkpoints(run.checkpoint)
    if warning:  # the report carries it for the caller to show (the CLI prints it once)
        log.info(warning)
    return FineTuneReport(str(path), str(boundary.path), cut.to_dict(), result.best_epoch, len(result.history) - 1,
                          result.resumed_from, metrics, comparison, warning, result.history, run.seconds, views_note,
                          files, params["selected_by"], run.tuned.objective,
                          [[epoch, drop] for epoch, drop in smaller_drops(result.history, result.best_epoch)])
