"""Accuracy of the transfer-learning rungs on the real-photo samples: frozen heads vs fine-tuned block5.

    python benchmarks/finetune_accuracy.py [--data DIR] [--cache-dir DIR] [--out FILE.json] [--views K]

For each sample of ../shared/data (catsdogs, dogimages-mini, oxford-pets-mini), through the real
CLI (`--json`), with genuine ImageNet VGG16 weights and `--precision auto`:

1. `extract` block5_pool, and again with `--views K`;
2. `fit-head` logreg, svm and gap-dense on the plain cache, logreg on the views cache;
3. the best frozen head on validation (ties: logreg, the first fitted) is the head fine-tuning
   starts from: `fine-tune --unfreeze block5`, then again with `--views K`.

Writes every measurement (metrics per split, times, the command lines) to `--out` and prints the
markdown table of docs/finetune.md. Re-running reuses every cache (extraction costs a hash check).
"""

from __future__ import annotations

import json
import os
import sys
import time
from pathlib import Path

import click

BENCH_DIR = Path(__file__).resolve().parent
sys.path.insert(0, str(BENCH_DIR.parent))

from benchmarks.measure import machine_info, python_command, run_measured  # noqa: E402

DATASETS = ("catsdogs", "dogimages-mini", "oxford-pets-mini")
FROZEN_HEADS = (("logreg", None), ("svm", None), ("gap-dense", None))
DEFAULT_VIEWS = 4
#: The samples beside the checkout, as the tests find them (or $BOTTLENECK_SHARED_DATA).
DEFAULT_DATA = Path(os.environ.get("BOTTLENECK_SHARED_DATA", BENCH_DIR.parent.parent / "shared" / "data"))


def cli(*args) -> tuple[dict, float]:
    """Run `cli.py ARGS --json`; (its JSON object, wall seconds)."""
    run = run_measured(python_command("cli.py", *args, "--json"))
    return run.json(), run.wall_seconds


def scores(metrics: dict) -> dict:
    """top-1 and mean per-class accuracy per split."""
    return {split: {"top1": m["top1"], "mean_per_class": m["mean_per_class_accuracy"], "n": m["n"]}
            for split, m in metrics.items()}


def run_dataset(data: Path, cache_dir: Path, views: int, log) -> dict:
    record: dict = {"dataset": data.name, "rows": {}, "seconds": {}}
    plain, record["seconds"]["extract"] = cli("extract", data, "--cache-dir", cache_dir)
    viewed, record["seconds"][f"extract_views{views}"] = cli("extract", data, "--cache-dir", cache_dir,
                                                             "--views", views)
    record["split_counts"], record["precision"] = plain["split_counts"], plain["precision"]
    fitted = {}
    for kind, recipe in FROZEN_HEADS:
        log(f"{data.name}: fit-head {kind}")
        report, _ = cli("fit-head", plain["cache_path"], "--head", kind, *(["--recipe", recipe] if recipe else []))
        fitted[kind] = report
        record["rows"][f"frozen {kind}"] = {"scores": scores(report["metrics"]), "seconds": report["fit_seconds"]}
    log(f"{data.name}: fit-head logreg on {views} views")
    report, _ = cli("fit-head", viewed["cache_path"], "--head", "logreg")
    record["rows"][f"frozen logreg, views {views}"] = {"scores": scores(report["metrics"]),
                                                       "seconds": report["fit_seconds"]}
    best = max(fitted, key=lambda kind: fitted[kind]["metrics"]["valid"]["top1"])  # first fitted wins ties
    record["started_from"] = best
    for label, extra in (("fine-tuned block5", []), (f"fine-tuned block5, views {views}", ["--views", views])):
        log(f"{data.name}: {label} from {best}")
        tuned, wall = cli("fine-tune", plain["cache_path"], "--from-head", fitted[best]["sidecar_path"],
                          "--unfreeze", "block5", "--cache-dir", cache_dir, *extra)
        epochs = [r for r in tuned["history"] if r["epoch"] > 0]
        record["rows"][label] = {
            "scores": scores(tuned["metrics"]), "best_epoch": tuned["best_epoch"], "epochs_run": tuned["epochs_run"],
            "warning": tuned["warning"], "seconds": tuned["seconds"], "wall_seconds": wall,
            "seconds_per_epoch": round(sum(r["seconds"] for r in epochs) / max(1, len(epochs)), 2),
            "comparison": tuned["comparison"]}
    return record


def markdown(results: list[dict]) -> str:
    lines = ["| dataset (train/valid/test) | model | valid top-1 | valid mean/class | test top-1 | test mean/class |",
             "|---|---|---|---|---|---|"]
    for record in results:
        counts = record["split_counts"]
        name = f"{record['dataset']} ({counts.get('train', 0)}/{counts.get('valid', 0)}/{counts.get('test', 0)})"
        for label, row in record["rows"].items():
            s = row["scores"]
            note = ""
            if "best_epoch" in row:
                note = f" (from {record['started_from']}; best epoch {row['best_epoch']}/{row['epochs_run']})"
            cells = [f"{s[split][metric]:.3f}" for split in ("valid", "test") for metric in ("top1", "mean_per_class")]
            lines.append(f"| {name} | {label}{note} | " + " | ".join(cells) + " |")
            name = ""
    return "\n".join(lines)


@click.command()
@click.option("--data", type=click.Path(exists=True, file_okay=False, path_type=Path), default=DEFAULT_DATA,
              show_default=True, help="Folder holding the real-photo samples.")
@click.option("--cache-dir", type=click.Path(file_okay=False, path_type=Path), default=Path("cache"),
              show_default=True, help="Cache folder (caches are reused across runs).")
@click.option("--out", type=click.Path(dir_okay=False, path_type=Path), default=Path("finetune-accuracy.json"),
              show_default=True, help="Where the measurements are written.")
@click.option("--views", type=click.IntRange(min=1), default=DEFAULT_VIEWS, show_default=True,
              help="Augmented views per image for the views rows.")
@click.option("--only", multiple=True, type=click.Choice(DATASETS), help="Run only this dataset (repeatable).")
def main(data: Path, cache_dir: Path, out: Path, views: int, only: tuple[str, ...]):
    """Frozen heads vs fine-tuned block5 (with and without views) on the real-photo samples."""
    started = time.perf_counter()

    def log(message):
        click.echo(f"[{time.perf_counter() - started:6.0f} s] {message}", err=True)

    results = [run_dataset(data / name, cache_dir.resolve(), views, log) for name in DATASETS
               if not only or name in only]
    document = {"machine": machine_info(), "views": views, "results": results,
                "seconds": round(time.perf_counter() - started, 1)}
    out.write_text(json.dumps(document, indent=1, default=str))
    click.echo(markdown(results))


if __name__ == "__main__":
    main()
