"""Head choices on the real-photo samples: pooling, and breed / species / multi-task on Oxford-IIIT Pet.

    python benchmarks/heads_samples.py [--data ../shared/data] [--cache-dir DIR] [--out docs/heads-samples.json]

Uses the caches `benchmarks/samples.py` extracts (the same --cache-dir reuses them; missing ones
are extracted). Pooling: logreg on average, max and average+max pooled maps of every sample and
backbone. Targets (oxford-pets-mini): a breed head, a species head, and multi-task heads learning
both (fixed equal weights, and learned uncertainty weighting), with the species accuracy derived
from the breed prediction next to the direct one. Writes every figure to a JSON file and prints
markdown tables; the README's tables come from it.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import click

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # this checkout's `pipeline`

from benchmarks.samples import BACKBONES, DEFAULT_DATA, SAMPLES
from pipeline.extract.options import ExtractOptions
from pipeline.extract.run import run_extract
from pipeline.heads.features import HEAD_POOLINGS
from pipeline.heads.fitting import fit_head

TARGET_SAMPLE = "oxford-pets-mini"
SPLITS = ("valid", "test")


def _top1(metrics: dict) -> dict:
    return {split: metrics[split]["top1"] for split in SPLITS}


@click.command()
@click.option("--data", type=click.Path(exists=True, file_okay=False, path_type=Path), default=DEFAULT_DATA,
              show_default=True, help="The folder holding the real-photo samples.")
@click.option("--cache-dir", type=click.Path(file_okay=False, path_type=Path), default=Path("cache/samples"),
              show_default=True, help="Where the caches and heads go (shared with benchmarks/samples.py).")
@click.option("--out", type=click.Path(dir_okay=False, path_type=Path), default=Path("docs/heads-samples.json"),
              show_default=True, help="The JSON file of every figure.")
@click.option("--precision", default="float32", show_default=True, help="Compute precision of the extraction.")
def main(data: Path, cache_dir: Path, out: Path, precision: str) -> None:
    caches = {(sample, backbone): Path(run_extract(data / sample, cache_dir, ExtractOptions(
        backbone=backbone, precision=precision)).cache_path) for sample in SAMPLES for backbone in BACKBONES}
    pooling = {f"{sample}/{backbone}": {pool: _top1(fit_head(caches[sample, backbone], "logreg", pooling=pool).metrics)
                                        for pool in HEAD_POOLINGS}
               for sample in SAMPLES for backbone in BACKBONES}
    targets = {}
    for backbone in BACKBONES:
        cache = caches[TARGET_SAMPLE, backbone]
        breed = fit_head(cache, "logreg")
        species = fit_head(cache, "logreg", target="species")
        rows = {"breed (logreg)": {"breed": _top1(breed.metrics),
                                   "species_from_breed": {s: breed.implied["species"][s]["accuracy_from_primary"]
                                                          for s in SPLITS}},
                "species (logreg)": {"species": _top1(species.metrics)}}
        for weighting in ("fixed", "uncertainty"):
            multitask = fit_head(cache, "multitask", targets=("label", "species"), weighting=weighting)
            implied = multitask.implied["species"]
            rows[f"multitask ({weighting})"] = {
                "breed": _top1(multitask.metrics_by_target["label"]),
                "species": _top1(multitask.metrics_by_target["species"]),
                "species_from_breed": {s: implied[s]["accuracy_from_primary"] for s in SPLITS},
                "consistency": {s: implied[s]["consistency"] for s in SPLITS}}
        targets[backbone] = rows
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps({"precision": precision, "pooling": pooling, "targets": targets}, indent=1))
    click.echo(markdown(pooling, targets))


def _pair(values: dict | None) -> str:
    return "-" if values is None else f"{values['valid']:.3f} / {values['test']:.3f}"


def markdown(pooling: dict, targets: dict) -> str:
    """The pooling table and the targets table."""
    lines = ["| sample / backbone (logreg) | " + " | ".join(HEAD_POOLINGS) + " |",
             "|---" * (1 + len(HEAD_POOLINGS)) + "|"]
    lines += [f"| {name} | " + " | ".join(_pair(row[pool]) for pool in HEAD_POOLINGS) + " |"
              for name, row in pooling.items()]
    lines += ["", "| backbone | head | breed | species | species from breed | consistency |",
              "|---|---|---|---|---|---|"]
    for backbone, rows in targets.items():
        for head, figures in rows.items():
            lines.append(f"| {backbone} | {head} | {_pair(figures.get('breed'))} | {_pair(figures.get('species'))} | "
                         f"{_pair(figures.get('species_from_breed'))} | {_pair(figures.get('consistency'))} |")
    return "\n".join(lines)


if __name__ == "__main__":
    main()
