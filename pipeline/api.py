"""The Python API, for notebooks: a cache's arrays, the tool's metrics, and your model in its leaderboard.

    from pipeline import api

    cache = api.open_cache("cache", dataset="pets", backbone="vgg16")   # or a cache file
    X_train, y_train = cache.arrays("train")            # pooled features (n, c) float32, labels (n,)
    ...fit any estimator...
    api.score(y_test, probabilities, cache.class_names)  # the metrics fit-head reports
    api.record(cache, "my-model", {"valid": p_valid, "test": p_test})  # `report` lists it

Stable contract (names and meanings do not change between releases):

- `open_cache(path="cache", **selection)` -> `Cache` (selection: dataset=, backbone=, layer=, resize=,
  pool=, precision=, store_dtype=, views=, input_size= choose among a folder's caches): `path`,
  `class_names`, `targets` (every target and its class names), `split_sizes()`,
  `arrays(split, pool="avg", target=None)` -> (X, y), `paths(split)` (absolute file paths of the
  split's images, in the same order) and `feature_set(...)` (the `FeatureSet` the tool's own heads
  fit on).
- `score(y_true, probabilities, class_names)` -> the metrics dict of `fit-head` (top-1, top-5,
  mean per-class accuracy, macro F1, per-class accuracy, confusion matrix, log loss, n).
- `record(cache, name, probabilities, ...)` saves an "external" head: metrics per split computed
  from your probabilities (one row per image of the split, in `arrays` order, one column per class),
  listed by `report` next to the tool's heads. There is no model to apply, so `predict` refuses it.
- `audit(path)` -> `AuditResult` of `audit CACHE` (`to_dict()` is its `--json`): near-duplicates,
  leaked test images, leakage-aware scores, label-issue candidates, outliers, map (docs/audit.md).

- `search(data_dir, budget="30m", ...)` -> `SearchResult`: `python cli.py search` (winner, recipe,
  valid and test metrics, head path, leaderboard).

Honesty is yours to keep: choose hyper-parameters on "valid", score "test" once.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from pipeline.cache.format import CacheInfo, read_cache_info
from pipeline.caches.select import select_cache
from pipeline.data.dataset import SPLITS
from pipeline.errors import UsageError
from pipeline.heads.features import DEFAULT_HEAD_POOLING, FeatureSet, load_feature_set, target_classes
from pipeline.heads.fitting import FittedHead, base_fields, cache_ref, save_final_confusion
from pipeline.heads.metrics import classification_metrics
from pipeline.heads.record import HeadRecord
from pipeline.heads.registry import EXTERNAL_KIND
from pipeline.heads.store import heads_dir_of, new_head_stem, write_sidecar

#: Rows of recorded probabilities must sum to 1 within this tolerance.
PROBABILITY_TOLERANCE = 1e-3


@dataclass(frozen=True)
class Cache:
    """An open feature cache (see the module doc)."""

    path: Path
    info: CacheInfo

    @property
    def class_names(self) -> tuple[str, ...]:
        """The main label's class names, in label order."""
        return tuple(self.info.class_names)

    @property
    def targets(self) -> dict[str, tuple[str, ...]]:
        """Every target (the main "label" first) and its class names."""
        return target_classes(self.info)

    def split_sizes(self) -> dict[str, int]:
        return self.info.split_sizes()

    def feature_set(self, pool: str = DEFAULT_HEAD_POOLING, target: str | None = None) -> FeatureSet:
        """The pooled features of every split, as the tool's own heads receive them."""
        return load_feature_set(self.path, self.info, target, pool)

    def arrays(self, split: str, pool: str = DEFAULT_HEAD_POOLING, target: str | None = None):
        """(X, y) of `split`: pooled features (n, c) float32 and labels (n,) int64 of `target`."""
        features = self.feature_set(pool, target)
        if split not in features.splits:
            raise UsageError(f"cache {self.path.name} has no {split!r} images; its splits are: "
                             f"{', '.join(features.splits)}")
        data = features.splits[split]
        return data.x, data.y

    def paths(self, split: str) -> list[Path]:
        """Absolute paths of `split`'s images, in `arrays` order (a cache with views repeats each train
        image once per view, as its train arrays do)."""
        sizes = self.split_sizes()
        if not sizes.get(split):
            raise UsageError(f"cache {self.path.name} has no {split!r} images; its splits are: "
                             f"{', '.join(name for name, count in sizes.items() if count)}")
        images = self.info.images
        repeat = images.view_rows.shape[1] if split == "train" and images.view_rows is not None else 1
        return [self.info.data_root / images.relpath[i] for i in images.in_split(split) for _ in range(repeat)]


def open_cache(path="cache", **selection) -> Cache:
    """The cache at `path`: a cache file, or a folder to choose in by what the caches hold.

    `selection` keywords pick among a folder's caches (`pipeline.caches.select.PROPERTIES`): dataset,
    backbone, layer, input_size, resize, pool, precision, store_dtype, views, e.g.
    `open_cache("cache", dataset="pets", backbone="mobilenet")`. Without them a folder must hold one
    cache of your own (quickstart's demo and fine-tune's boundary caches are set aside when others
    match). `CacheError` (a `PipelineError`) when nothing or several match: the message lists the
    candidates, what differs between them and how to pick one.
    """
    resolved = select_cache(Path(path), selection)
    info = read_cache_info(resolved)
    info.require_whole_dataset()
    return Cache(resolved, info)


def score(y_true, probabilities, class_names) -> dict:
    """The metrics `fit-head` reports for one split, from labels and (n, classes) probabilities."""
    probabilities = np.asarray(probabilities, dtype=np.float64)
    y_true = np.asarray(y_true, dtype=np.int64)
    if probabilities.shape != (len(y_true), len(class_names)):
        raise UsageError(f"probabilities have shape {probabilities.shape}, expected ({len(y_true)}, "
                         f"{len(class_names)}): one row per image, one column per class in class order")
    return classification_metrics(y_true, probabilities, tuple(class_names))


def record(cache: Cache, name: str, probabilities: dict, params: dict | None = None, target: str | None = None,
           pool: str = DEFAULT_HEAD_POOLING, fit_seconds: float | None = None) -> Path:
    """Record an outside model's results in the cache's leaderboard; returns the sidecar written.

    `probabilities` maps split ("train", "valid", "test") to (n, classes) arrays in `arrays` order.
    """
    features = cache.feature_set(pool, target)
    unknown = sorted(set(probabilities) - set(SPLITS))
    if unknown or not probabilities:
        raise UsageError(f"probabilities must map splits ({', '.join(SPLITS)}) to arrays, got {unknown or 'none'}")
    metrics = {}
    for split, values in probabilities.items():
        if split not in features.splits:
            raise UsageError(f"cache {cache.path.name} has no {split!r} images")
        values = np.asarray(values, dtype=np.float64)
        sums = values.sum(axis=1) if values.ndim == 2 else np.array([np.nan])
        if not np.all(np.abs(sums - 1.0) <= PROBABILITY_TOLERANCE):
            raise UsageError(f"{split} probabilities do not sum to 1 per row (e.g. {sums[0]:.4f}); pass "
                             "predict_proba output, not scores")
        metrics[split] = score(features.splits[split].y, values, features.class_names)
    label = name.strip().replace("/", "-").replace(" ", "-") or EXTERNAL_KIND
    stem = new_head_stem(heads_dir_of(cache.path), label)
    fitted = FittedHead(None, EXTERNAL_KIND, None, metrics, fit_seconds or 0.0, {}, features.class_names,
                        features.target, pool)
    files = [png.name for png in [save_final_confusion(stem, metrics, features.class_names, f"{name}")] if png]
    record = HeadRecord(**base_fields(stem, fitted), hyperparameters=dict(params or {}), search=[], model_file=None,
                        files=tuple(files), external_name=name, feature_key=cache.info.key,
                        feature_spec=cache.info.spec, origin=cache.info.origin.to_dict(), target=features.target,
                        pooling=pool,
                        class_names=tuple(features.class_names), cache=cache_ref(cache.path, cache.info))
    return write_sidecar(stem, record)


def search(data_dir, budget="30m", backbones=None, heads=None, cache_dir="cache"):
    """`python cli.py search`: the best recipe for `data_dir` chosen on validation within `budget`
    (e.g. "5m", or seconds); returns a `pipeline.search.run.SearchResult` (`.head` is the saved winner)."""
    from pipeline.search.cost import parse_duration
    from pipeline.search.run import run_search

    seconds = budget if isinstance(budget, (int, float)) else parse_duration(budget)
    return run_search(Path(data_dir), Path(cache_dir), seconds, tuple(backbones) if backbones else None,
                      tuple(heads) if heads else None)


def audit(path, selection: dict | None = None, **options):
    """`audit CACHE` from Python: the findings (`pipeline.audit.run.AuditResult`), saved for `report` too.
    `path` and `selection` pick the cache as in `open_cache`; options as `run_audit`'s: threshold,
    with_map, outlier_mads."""
    from pipeline.audit.run import run_audit

    return run_audit(select_cache(Path(path), selection), **options)
