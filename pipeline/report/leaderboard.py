"""Leaderboards: every head fitted on a cache, ranked by validation accuracy.

Ranking uses validation top-1 (ties: test is never used to choose); test accuracy is shown next
to it as the honest, once-scored estimate. Fine-tuned models (`fine-tune`) are listed with the
frozen heads of the cache their head was fitted on, with the same metrics; a head that is a member
of a fused head says so in its params ("member of fusion-..."); `notes` says how heads on a cache
with views used them (train on every view, valid/test on view 0), and gives the test-time
augmentation scores of heads fitted with `--tta` beside their plain ones (ranking stays on the
plain validation score).
"""

from __future__ import annotations

import textwrap
from pathlib import Path

from pipeline.cache.format import read_cache_info
from pipeline.heads.caveats import caveats_of
from pipeline.heads.fusion import SINGLE
from pipeline.heads.store import list_sidecars

#: Width at which the params column wraps (at word boundaries; a longer word stays whole).
PARAMS_WIDTH = 36
#: The figure columns of the text table, their widths, and the row keys they show.
_FIGURE_COLUMNS = (("valid", 6), ("test", 6), ("test5", 6), ("per-class", 9), ("fit s", 7))
_FIGURE_KEYS = ("valid_top1", "test_top1", "test_top5", "test_mean_per_class_accuracy", "fit_seconds")


def leaderboard(cache_path: Path) -> list[dict]:
    """One row per head fitted on the cache at `cache_path`, best validation top-1 first.

    Raises `CacheError` when `cache_path` is not a whole-dataset cache (damaged, another file, a shard).
    """
    read_cache_info(cache_path).require_whole_dataset()
    rows = []
    for record in list_sidecars(cache_path):
        metrics = record.metrics
        valid, test = metrics.get("valid", {}), metrics.get("test", {})
        rows.append({
            "train_top1": metrics.get("train", {}).get("top1"),
            "valid_mean_per_class_accuracy": valid.get("mean_per_class_accuracy"),
            "views": record.views,
            "name": record.name,
            "kind": record.kind,
            "params": short_params(record.hyperparameters) + _member_mark(record.member_of),
            "member_of": list(record.member_of),
            "valid_top1": valid.get("top1"),
            "test_top1": test.get("top1"),
            "test_top5": test.get("top5"),
            "test_mean_per_class_accuracy": test.get("mean_per_class_accuracy"),
            "test_macro_f1": test.get("macro_f1"),
            "caveats": [caveat.text for caveat in caveats_of(metrics)],
            "fit_seconds": record.fit_seconds,
            "created": record.created,
            "path": str(record.path),
            **_tta_columns(record.tta),
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
        if params["method"] == SINGLE:
            return f"{params['member_kind']} {SINGLE}: {', '.join(params['carried_by'])}"
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


def _member_mark(fused: list | None) -> str:
    """How a row says it is a member head fitted for (or used by) fused heads."""
    return f"; member of {', '.join(fused)}" if fused else ""


def format_table(rows: list[dict]) -> str:
    """A text table of `leaderboard` rows: head names and kinds whole (their columns as wide as the
    longest), params wrapped at word boundaries onto continuation lines, figures to 3 decimals."""
    names = [_text(row["name"]) for row in rows]
    kinds = [_text(row["kind"]) for row in rows]
    widths = {"head": max(map(len, ["head", *names])), "kind": max(map(len, ["kind", *kinds])),
              "params": PARAMS_WIDTH, **dict(_FIGURE_COLUMNS)}
    header = "  ".join(name.ljust(widths[name]) for name in widths).rstrip()
    lines = [header, "-" * len(header)]
    for row, name, kind in zip(rows, names, kinds):
        params = textwrap.wrap(_text(row["params"]), PARAMS_WIDTH, break_long_words=False, break_on_hyphens=False)
        figures = [f"{row[key]:.3f}" if isinstance(row[key], float) else _text(row[key]) for key in _FIGURE_KEYS]
        for i, part in enumerate(params or ["-"]):
            cells = [name, kind, part, *figures] if i == 0 else ["", "", part, *["" for _ in figures]]
            lines.append("  ".join(cell.ljust(width) for cell, width in zip(cells, widths.values())).rstrip())
    return "\n".join(lines)


def _text(value) -> str:
    return "-" if value is None else str(value)
