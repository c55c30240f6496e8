"""`fit-head`: fit one head on a cache, score every split, save head + sidecar + confusion PNG.

Honesty rules: hyper-parameters are chosen on validation only; the reported validation metrics
come from the model selected on validation (never trained on it); test is scored once, by the
final model, after every choice was made.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path

from pipeline.cache.format import read_cache_info
from pipeline.cache.key import library_versions
from pipeline.heads.diagnosis import require_trainable
from pipeline.heads.features import HEAD_POOLING, load_feature_set
from pipeline.heads.metrics import classification_metrics
from pipeline.heads.plots import save_confusion_png
from pipeline.heads.registry import make_head
from pipeline.heads.store import heads_dir_of, new_head_stem, write_sidecar


@dataclass(frozen=True)
class FitReport:
    """What `fit_head` produced."""

    sidecar_path: str
    kind: str
    params: dict
    metrics: dict
    fit_seconds: float
    files: list

    def to_dict(self) -> dict:
        return dict(self.__dict__)


@dataclass(frozen=True)
class FittedHead:
    """A head fitted on a FeatureSet, its metrics per split and how long fitting took."""

    head: object
    kind: str
    recipe: str | None
    metrics: dict
    fit_seconds: float
    probabilities: dict  # split -> (n, classes): valid from the model selected on validation

    @property
    def label(self) -> str:
        """The name heads of this kind and recipe are saved under (e.g. "gap-dense-classic")."""
        return self.kind if self.recipe in (None, "default") else f"{self.kind}-{self.recipe}"


def fit_on_features(features, kind: str, recipe: str | None = None) -> FittedHead:
    """Fit a `kind` head on `features` and score every split (see the module doc for the honesty rules)."""
    head = make_head(kind, recipe)
    require_trainable(features)  # before any fitting: one class would crash a solver or score a hollow 100%
    started = time.perf_counter()
    head.fit(features)
    fit_seconds = time.perf_counter() - started
    probabilities, metrics = {}, {}
    for split, data in features.splits.items():
        probabilities[split] = head.valid_probabilities_ if split == "valid" else head.predict_proba(data.x)
        metrics[split] = classification_metrics(data.y, probabilities[split], features.class_names)
    return FittedHead(head, kind, recipe, metrics, round(fit_seconds, 3), probabilities)


def fit_head(cache_path: Path, kind: str, recipe: str | None = None) -> FitReport:
    """Fit a `kind` head on the cache at `cache_path` and save it under the cache's heads folder."""
    info = read_cache_info(cache_path)
    features = load_feature_set(cache_path, info)
    return save_fitted_head(cache_path, info, fit_on_features(features, kind, recipe))


def save_fitted_head(cache_path: Path, info, fitted: FittedHead) -> FitReport:
    """Save `fitted` under the heads folder of `cache_path`: model file, confusion PNG, sidecar."""
    stem = new_head_stem(heads_dir_of(cache_path), fitted.label)
    files = [fitted.head.save(stem)]
    title = f"{fitted.label} on {info.dataset.get('name', '')}"
    png = save_final_confusion(stem, fitted.metrics, info.class_names, title)
    if png is not None:
        files.append(png.name)
    sidecar = {
        **base_sidecar(stem, fitted),
        "hyperparameters": fitted.head.params_,
        "search": fitted.head.search_,
        "model_file": files[0],
        "files": files,
        "feature_key": info.key,
        "feature_spec": info.spec.to_dict(),
        "origin": info.origin,
        "head_input": f"{HEAD_POOLING}-pooled features" if len(info.feature_shape) == 3 else "features as cached",
        "extraction": {"weights": info.weights},
        "cache": {"path": str(Path(cache_path).resolve()), "dataset": info.dataset.get("name"),
                  "split_sizes": info.split_sizes()},
        "class_names": list(info.class_names),
    }
    path = write_sidecar(stem, sidecar)
    files.append(path.name)
    return FitReport(str(path), fitted.kind, fitted.head.params_, fitted.metrics, fitted.fit_seconds, files)


def base_sidecar(stem: Path, fitted) -> dict:
    """What every head sidecar says first: kind, name, time, fit seconds, metrics and how to read them."""
    return {
        "kind": fitted.kind,
        "name": stem.name,
        "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "fit_seconds": fitted.fit_seconds,
        "versions": library_versions(),
        "metrics_note": "valid: model selected on validation (trained without it); test: final model, scored once",
        "metrics": fitted.metrics,
    }


def save_final_confusion(stem: Path, metrics: dict, class_names, title: str) -> Path | None:
    """The confusion-matrix PNG of the last scored split (test, else valid), or None without either."""
    final_split = "test" if "test" in metrics else "valid" if "valid" in metrics else None
    if final_split is None:
        return None
    return save_confusion_png(metrics[final_split]["confusion_matrix"], class_names,
                              Path(f"{stem}.confusion-{final_split}.png"),
                              f"{title} ({final_split}, row-normalised)")
