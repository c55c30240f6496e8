"""Accuracy on the real-photo samples: each genuine backbone alone, and fused, with logreg and svm.

    python benchmarks/samples.py [--data ../shared/data] [--cache-dir DIR] [--out docs/samples-accuracy.json]

Extracts every sample with VGG16, MobileNet v1 and EfficientNet-Lite0 (genuine ImageNet weights,
offline), fits each head kind on each cache and one fused head over the three, and writes every
figure (valid / test top-1 and mean per-class accuracy, the fusion chosen) to a JSON file and a
markdown table on stdout - the table in the README comes from it. Extraction is cached, so a
re-run only fits heads.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import click

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # this checkout's `pipeline`

from pipeline.extract.options import ExtractOptions
from pipeline.extract.run import run_extract
from pipeline.heads.fitting import fit_head
from pipeline.heads.fusion import fit_fusion

SAMPLES = ("catsdogs", "dogimages-mini", "oxford-pets-mini")
BACKBONES = ("vgg16", "mobilenet", "efficientnet_lite0")
HEADS = ("logreg", "svm")
DEFAULT_DATA = Path(__file__).resolve().parents[2] / "shared" / "data"
SPLITS = ("valid", "test")


def _figures(metrics: dict) -> dict:
    return {split: {"top1": metrics[split]["top1"], "mean_per_class": metrics[split]["mean_per_class_accuracy"]}
            for split in SPLITS if split in metrics}


@click.command()
@click.option("--data", type=click.Path(exists=True, file_okay=False, path_type=Path), default=DEFAULT_DATA,
              show_default=True, help="The folder holding the real-photo samples.")
@click.option("--cache-dir", type=click.Path(file_okay=False, path_type=Path), default=Path("cache/samples"),
              show_default=True, help="Where the caches and heads go.")
@click.option("--out", type=click.Path(dir_okay=False, path_type=Path), default=Path("docs/samples-accuracy.json"),
              show_default=True, help="The JSON file of every figure.")
@click.option("--precision", default="float32", show_default=True, help="Compute precision of the extraction.")
def main(data: Path, cache_dir: Path, out: Path, precision: str) -> None:
    results = {}
    for sample in SAMPLES:
        caches, rows = {}, {}
        for backbone in BACKBONES:
            click.echo(f"{sample}: extract {backbone}", err=True)
            summary = run_extract(data / sample, cache_dir, ExtractOptions(backbone=backbone, precision=precision))
            caches[backbone] = Path(summary.cache_path)
            for kind in HEADS:
                rows[f"{backbone}/{kind}"] = _figures(fit_head(caches[backbone], kind).metrics)
        for kind in HEADS:
            click.echo(f"{sample}: fuse with {kind}", err=True)
            report = fit_fusion([caches[b] for b in BACKBONES], kind)
            rows[f"fusion/{kind}"] = {**_figures(report.metrics), "chosen": report.params["method"],
                                      "weights": report.params["weights"]}
        results[sample] = rows
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps({"precision": precision, "results": results}, indent=1))
    click.echo(markdown(results))


def markdown(results: dict) -> str:
    """One table: a row per backbone/head, per sample valid/test top-1 and mean per-class accuracy."""
    header = "| features / head | " + " | ".join(f"{s} top-1 (valid / test) | {s} per-class (valid / test)"
                                                 for s in results) + " |"
    lines = [header, "|---" * (1 + 2 * len(results)) + "|"]
    for row in next(iter(results.values())):
        cells = []
        for sample in results:
            figures = results[sample][row]
            cells.append(f"{figures['valid']['top1']:.3f} / {figures['test']['top1']:.3f}")
            cells.append(f"{figures['valid']['mean_per_class']:.3f} / {figures['test']['mean_per_class']:.3f}")
        lines.append(f"| {row} | " + " | ".join(cells) + " |")
    chosen = "; ".join(f"{sample} {kind}: {figures['chosen']} ("
                       + ", ".join(f"{b} {w:.1f}" for b, w in figures["weights"].items() if w > 0) + ")"
                       for sample, rows in results.items() for kind, figures in
                       ((k.split("/")[1], v) for k, v in rows.items() if k.startswith("fusion/")))
    return "\n".join(lines) + f"\n\nFusion chosen on validation: {chosen}."


if __name__ == "__main__":
    main()
