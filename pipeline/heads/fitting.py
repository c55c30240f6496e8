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
    views: str | None = None  # how a cache with views was used (`FeatureSet.views_note`)

    def to_dict(self) -> dict:
        return dict(self.__dict__)


def fit_head(cache_path: Path, kind: str, recipe: str | None = None) -> FitReport:
    """Fit a `kind` head on the cache at `cache_path` and save it under the cache's heads folder."""
    info = read_cache_info(cache_path)
    features = load_feature_set(cache_path, info)
    head = make_head(kind, recipe)
    require_trainable(features)  # before any fitting: one class would crash a solver or score a hollow 100%
    started = time.perf_counter()
    head.fit(features)
    fit_seconds = time.perf_counter() - started

    metrics = {}
    for split, data in features.splits.items():
        if split == "valid":
            probabilities = head.valid_probabilities_
        else:
            probabilities = head.predict_proba(data.x)
        metrics[split] = classification_metrics(data.y, probabilities, features.class_names)

    label = kind if kind != "gap-dense" or recipe in (None, "default") else f"{kind}-{recipe}"
    stem = new_head_stem(heads_dir_of(cache_path), label)
    files = [head.save(stem)]
    final_split = "test" if "test" in metrics else "valid"
    if final_split in metrics:
        png = save_confusion_png(metrics[final_split]["confusion_matrix"], features.class_names,
                                 Path(f"{stem}.confusion-{final_split}.png"),
                                 f"{label} on {info.dataset.get('name', '')} ({final_split}, row-normalised)")
        files.append(png.name)
    sidecar = {
        "kind": kind,
        "name": stem.name,
        "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "fit_seconds": round(fit_seconds, 3),
        "hyperparameters": head.params_,
        "search": head.search_,
        "model_file": files[0],
        "files": files,
        "feature_key": info.key,
        "feature_spec": info.spec.to_dict(),
        "origin": info.origin,
        "head_input": f"{HEAD_POOLING}-pooled features" if len(info.feature_shape) == 3 else "features as cached",
        "extraction": {"weights": info.weights},
        "cache": {"path": str(Path(cache_path).resolve()), "dataset": info.dataset.get("name"),
                  "split_sizes": info.split_sizes()},
        "class_names": list(features.class_names),
        "versions": library_versions(),
        "metrics_note": "valid: model selected on validation (trained without it); test: final model, scored once",
        "metrics": metrics,
    }
    if features.views_note() is not None:
        sidecar["views"] = features.views_note()
    path = write_sidecar(stem, sidecar)
    files.append(path.name)
    return FitReport(str(path), kind, head.params_, metrics, round(fit_seconds, 3), files, features.views_note())
