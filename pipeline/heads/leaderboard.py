"""Leaderboards: every head fitted on a cache, ranked by validation accuracy.

Ranking uses validation top-1 (ties: test is never used to choose); test accuracy is shown next
to it as the honest, once-scored estimate. Fine-tuned models (`fine-tune`) are listed with the
frozen heads of the cache their head was fitted on, with the same metrics; `notes` says how
heads on a cache with views used them (train on every view, valid/test on view 0), and gives the
test-time augmentation scores of heads fitted with `--tta` beside their plain ones (ranking stays
on the plain validation score).
"""

from __future__ import annotations

from pathlib import Path

from pipeline.cache.format import read_cache_info
from pipeline.heads.store import list_sidecars

_COLUMNS = (("head", 34), ("kind", 10), ("params", 28), ("valid", 6), ("test", 6), ("test5", 6),
            ("per-class", 9), ("fit s", 7))


def leaderboard(cache_path: Path) -> list[dict]:
    """One row per head fitted on the cache at `cache_path`, best validation top-1 first.

    Raises `CacheError` when `cache_path` is not a whole-dataset cache (damaged, another file, a shard).
    """
    read_cache_info(cache_path).require_whole_dataset()
    rows = []
    for sidecar in list_sidecars(cache_path):
        metrics = sidecar.get("metrics", {})
        valid, test = metrics.get("valid", {}), metrics.get("test", {})
        rows.append({
            "train_top1": metrics.get("train", {}).get("top1"),
            "valid_mean_per_class_accuracy": valid.get("mean_per_class_accuracy"),
            "views": sidecar.get("views"),
            "name": sidecar.get("name"),
            "kind": sidecar.get("kind"),
            "params": short_params(sidecar.get("hyperparameters", {})),
            "valid_top1": valid.get("top1"),
            "test_top1": test.get("top1"),
            "test_top5": test.get("top5"),
            "test_mean_per_class_accuracy": test.get("mean_per_class_accuracy"),
            "test_macro_f1": test.get("macro_f1"),
            "fit_seconds": sidecar.get("fit_seconds"),
            "created": sidecar.get("created"),
            "path": sidecar.get("_path"),
            **_tta_columns(sidecar.get("tta")),
        })
    rows.sort(key=lambda row: -(row["valid_top1"] or 0.0))
    return rows


def notes(rows: list[dict]) -> list[str]:
    """One line per distinct fact the table cannot show (how views were used), naming the heads."""
    lines = {}
    for row in rows:
        if row.get("views"):
            lines.setdefault(row["views"], []).append(row["name"])
    return [f"{', '.join(names)}: {text}" for text, names in lines.items()] + [
        f"{row['name']}: test-time augmentation over {row['tta_views_per_image']:g} views per image "
        f"({row['tta_view_set']}): valid {_figure(row['valid_top1_tta'])}, test {_figure(row['test_top1_tta'])}, "
        f"test per-class {_figure(row['test_mean_per_class_accuracy_tta'])}"
        for row in rows if row.get("tta_view_set")]


def _tta_columns(tta: dict | None) -> dict:
    """A sidecar's test-time augmentation scores as leaderboard fields (none without them)."""
    if not tta:
        return {}
    metrics = tta.get("metrics", {})
    valid, test = metrics.get("valid", {}), metrics.get("test", {})
    return {"tta_view_set": tta.get("view_set"), "tta_views_per_image": tta.get("views_per_image"),
            "valid_top1_tta": valid.get("top1"), "test_top1_tta": test.get("top1"),
            "test_mean_per_class_accuracy_tta": test.get("mean_per_class_accuracy")}


def _figure(value) -> str:
    return "-" if value is None else f"{value:.3f}"


def short_params(params: dict) -> str:
    """The hyper-parameters that distinguish heads, in a few characters."""
    if "carried_by" in params:  # a fused head
        weights = ", ".join(f"{name} {weight:.1f}" for name, weight in params["weights"].items() if weight > 0)
        return f"{params['member_kind']} {params['method']}: {weights}"
    if not params:
        return "-"
    if "unfrozen" in params:
        return f"{params['unfrozen']}, best epoch {params.get('best_epoch')}/{params.get('epochs_run')}"
    if "C" in params:
        return f"C={params['C']:.3g}"
    if "k" in params:
        return f"k={params['k']}"
    if "targets" in params:  # a multi-task head
        return (f"{'+'.join(params['targets'])}, {params.get('weighting')}, best epoch "
                f"{params.get('best_epoch')}/{params.get('epochs_run')}")
    if "recipe" in params:
        return f"{params['recipe']}, best epoch {params.get('best_epoch')}/{params.get('epochs_run')}"
    return ", ".join(f"{k}={v}" for k, v in params.items())


def format_table(rows: list[dict]) -> str:
    """A fixed-width text table of `leaderboard` rows."""
    def cell(value, width):
        if isinstance(value, float):
            value = f"{value:.3f}" if width <= 9 else f"{value:.2f}"
        text = "-" if value is None else str(value)
        return text[:width].ljust(width)

    header = "  ".join(name.ljust(width) for name, width in _COLUMNS)
    lines = [header, "-" * len(header)]
    for row in rows:
        values = (row["name"], row["kind"], row["params"], row["valid_top1"], row["test_top1"], row["test_top5"],
                  row["test_mean_per_class_accuracy"], row["fit_seconds"])
        lines.append("  ".join(cell(value, width) for value, (_, width) in zip(values, _COLUMNS)))
    return "\n".join(lines)
