"""The winner of a search fitted on the whole cache and saved: the only time test is scored.

A single recipe is fitted again on the full cache (the same deterministic fit its candidate had,
now with test) and saved as a normal head (`pipeline.heads.fitting.save_fitted_head`); a fused
one through `fit-head`'s fusion (`pipeline.heads.fusion.fit_fusion`), which saves its members as
normal heads too. A winner with test-time augmentation keeps it: its valid and test figures are the TTA
ones (its head's sidecar has the plain view-0 figures beside them), and its head records its views
(`pipeline.heads.tta.tta_views_of`), so `predict` averages them as the search scored them.
"""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

from pipeline.cache.format import read_cache_info
from pipeline.heads.caveats import caveats_of
from pipeline.heads.features import load_feature_set
from pipeline.heads.fitting import fit_on_features, save_fitted_head

VALID, TEST = "valid", "test"
#: The metrics a search records per split (the head's sidecar keeps them all).
KEPT_METRICS = ("n", "top1", "top5", "mean_per_class_accuracy", "macro_f1", "log_loss")
TEST_NOTE = "test was scored once, for this recipe only, after it was chosen on validation"


def fit_winner(name: str, entry: dict) -> dict:
    """Fit and save the winner (`entry`: its record entry); returns the record's `winner` value."""
    recipe = entry["recipe"]
    if entry.get("members"):
        from pipeline.heads.fusion import fit_fusion

        report = fit_fusion([Path(path) for path in entry["caches"]], recipe["head"], pooling=recipe["pooling"])
    else:
        cache_path = Path(entry["cache"])
        info = read_cache_info(cache_path)
        features = load_feature_set(cache_path, info, None, recipe["pooling"])
        fitted = fit_on_features(features, recipe["head"])
        if recipe.get("tta"):
            from pipeline.heads.tta import tta_scores, tta_views_of

            view_set = entry["tta_view_set"]
            fitted = replace(fitted, tta=tta_scores(fitted.head, features, view_set).to_dict())
            report = save_fitted_head(cache_path, info, fitted, tta_views=tta_views_of(features, view_set))
        else:
            report = save_fitted_head(cache_path, info, fitted)
    metrics = report.tta["metrics"] if recipe.get("tta") else report.metrics
    return {"name": name, "recipe": recipe, "feature_key": entry["feature_key"], "head": report.sidecar_path,
            "valid": kept(metrics[VALID]),
            "test": kept(metrics[TEST]) if TEST in metrics else None, "test_note": TEST_NOTE,
            **({"plain": {split: kept(values) for split, values in report.metrics.items() if split != "train"}}
               if recipe.get("tta") else {}),
            "caveats": [caveat.text for caveat in caveats_of(metrics)]}


def kept(metrics: dict) -> dict:
    """The `KEPT_METRICS` of one split's metrics."""
    return {name: metrics[name] for name in KEPT_METRICS if name in metrics}
