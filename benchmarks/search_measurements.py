"""Input size and test-time augmentation on the real-photo samples, for every offline backbone.

    nice python benchmarks/search_measurements.py [--data ../shared/data] [--cache-dir cache/search-measurements]
        [--out docs/search-measurements.json] [--backbones efficientnet_lite0,mobilenet,vgg16] [--extract-only]
    nice python benchmarks/search_measurements.py --plain --backbones vgg16 --samples oxford-pets-mini \
        --sizes native,320
    nice python benchmarks/search_measurements.py --plain --backbones vgg16 --sizes native \
        --layers block5_pool,block4_pool --heads logreg,svm

For each sample (catsdogs, dogimages-mini, oxford-pets-mini), backbone and input size (`SIZES`:
the backbone's native size and larger ones), extracts one cache with `--views 4 --pool avg`
(average pooling before caching is what the heads' default pooling does after it) and fits
logreg heads on it four ways: trained on view 0 only (exactly the plain recipe: view 0 is the
image as a cache without views holds it) or on every view, each scored on view 0 (plain) and
with test-time augmentation over each view set of `pipeline.heads.tta.VIEW_SETS`. Every figure
(valid / test top-1 and mean per-class accuracy, extraction seconds) goes to the JSON file after
each cache, so an interrupted run keeps what it measured; a re-run reuses the caches. Extraction
seconds (wall time of `run_extract`, under `nice` on a shared 2-core machine) are kept beside the
caches in `extract-seconds.json`, so `--extract-only` runs and a later scoring run combine.

`--plain` measures the input-size curve alone, at a fifth of the rows: caches without views, in
`--precision auto` (bfloat16 where the CPU has it), one logreg head trained and scored on view 0
(the default recipe at that size); its figures go to `plain_runs` and a table of their own.
With `--layers` it extracts each named feature layer (e.g. VGG16's block5_pool and block4_pool,
the layer step of `search`) and with `--heads` fits each named head; a run of a layer other than
the backbone's default is keyed `sample/backbone/size/layer`, and heads other than logreg are kept
under `head_figures`.
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path

import click

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # this checkout's `pipeline`

from pipeline.cache.format import read_cache_info
from pipeline.extract.options import ExtractOptions
from pipeline.extract.run import run_extract

SAMPLES = ("catsdogs", "dogimages-mini", "oxford-pets-mini")
#: Input sizes per backbone, native first (None: the backbone's own size).
SIZES = {"efficientnet_lite0": (None, 320, 384, 448), "mobilenet": (None, 320, 384, 448), "vgg16": (None, 320)}
DEFAULT_DATA = Path(__file__).resolve().parents[2] / "shared" / "data"
VIEWS = 4
HEAD = "logreg"
SPLITS = ("valid", "test")
TIMES_FILE = "extract-seconds.json"


def _figures(metrics: dict) -> dict:
    return {split: {"top1": metrics[split]["top1"], "mean_per_class": metrics[split]["mean_per_class_accuracy"]}
            for split in SPLITS if split in metrics}


def score_cache(cache_path: Path) -> dict:
    """The four logreg figures of one cache with views (see the module doc)."""
    from pipeline.heads.features import load_feature_set
    from pipeline.heads.fitting import fit_on_features
    from pipeline.heads.tta import VIEW_SETS, tta_scores

    rows = {}
    for train_views in ("plain", "all"):
        features = load_feature_set(cache_path, train_views=train_views)
        fitted = fit_on_features(features, HEAD)
        rows[f"train {train_views}"] = {
            "plain": _figures(fitted.metrics),
            **{f"tta {name}": _figures(tta_scores(fitted.head, features, name).metrics) for name in VIEW_SETS},
        }
    return rows


def score_plain_cache(cache_path: Path) -> dict:
    """The default recipe's figures on a cache without views: logreg trained and scored on view 0."""
    from pipeline.heads.features import load_feature_set
    from pipeline.heads.fitting import fit_on_features

    return _figures(fit_on_features(load_feature_set(cache_path), HEAD).metrics)


def score_plain_heads(cache_path: Path, heads: tuple[str, ...]) -> dict:
    """`score_plain_cache` for each head of `heads` (logreg and svm are the cheap ones)."""
    from pipeline.heads.features import load_feature_set
    from pipeline.heads.fitting import fit_on_features

    features = load_feature_set(cache_path)
    return {head: _figures(fit_on_features(features, head).metrics) for head in heads}


def layers_markdown(results: dict) -> str:
    """The table of `--plain --layers` runs: valid / test per sample, layer and head."""
    lines = ["Feature layer, caches without views in `--precision auto`, heads trained and scored on view 0. "
             "Cells: valid top-1 (mean per-class) / test top-1 (mean per-class).", "",
             "| sample | backbone | size | layer | head | figures |", "|---|---|---|---|---|---|"]
    runs = [run for run in results.get("plain_runs", {}).values() if "layer" in run]
    for run in sorted(runs, key=lambda run: (run["sample"], run["backbone"], run["input_size"], run["layer"])):
        for head, figures in {HEAD: run["figures"], **run.get("head_figures", {})}.items():
            lines.append(f"| {run['sample']} | {run['backbone']} | {_size_label(run)} | {run['layer']} | {head} | "
                         f"{_cell(figures)} |")
    return "\n".join(lines)


def plain_markdown(results: dict) -> str:
    """The table of `--plain` runs: valid / test against input size, per sample and backbone."""
    groups = {}
    for run in results.get("plain_runs", {}).values():
        if run.get("layer", "default") != run.get("default_layer", "default"):
            continue  # an earlier layer: `layers_markdown`
        groups.setdefault((run["sample"], run["backbone"]), []).append(run)
    lines = ["Input size, caches without views in `--precision auto` (logreg trained and scored on view 0). Cells: "
             "valid top-1 (mean per-class) / test top-1 (mean per-class); extraction seconds in the JSON.", "",
             "| sample | backbone | precision | " + " | ".join(f"size {i + 1}" for i in range(2)) + " |",
             "|---|---|---|" + "---|" * 2]
    for (sample, backbone), group in sorted(groups.items()):
        group = sorted(group, key=lambda run: run["input_size"])
        cells = [f"{_size_label(run)}: {_cell(run['figures'])}" for run in group]
        lines.append(f"| {sample} | {backbone} | {group[0]['precision']} | "
                     + " | ".join(cells + ["-"] * (2 - len(cells))) + " |")
    return "\n".join(lines)


def _record_seconds(cache_dir: Path, key: str, seconds: float, rows: int) -> None:
    """Keep how long extracting a cache took beside the caches (a later scoring run finds them complete)."""
    path = cache_dir / TIMES_FILE
    times = json.loads(path.read_text()) if path.exists() else {}
    times[key] = {"extract_seconds": seconds, "extracted_rows": rows}
    path.write_text(json.dumps(times, indent=1))


def _recorded_seconds(cache_dir: Path, key: str) -> dict:
    path = cache_dir / TIMES_FILE
    return json.loads(path.read_text()).get(key, {}) if path.exists() else {}


def _cell(figures: dict) -> str:
    valid, test = figures["valid"], figures["test"]
    return (f"{valid['top1']:.3f} ({valid['mean_per_class']:.3f}) / "
            f"{test['top1']:.3f} ({test['mean_per_class']:.3f})")


def _size_label(run: dict) -> str:
    return f"{run['input_size']}{' (native)' if run['native'] else ''}"


def markdown(results: dict) -> str:
    """The tables of docs/search-measurements.md: accuracy against input size, TTA, and the view sets' means."""
    runs = results["runs"]
    groups = {}
    for run in runs.values():
        groups.setdefault((run["sample"], run["backbone"]), []).append(run)
    lines = ["Input size (logreg trained on view 0, scored on view 0 - the default recipe). Cells: valid top-1 "
             "(mean per-class) / test top-1 (mean per-class).", "",
             "| sample | backbone | " + " | ".join(f"size {i + 1}" for i in range(4)) + " |",
             "|---|---|" + "---|" * 4]
    for (sample, backbone), group in sorted(groups.items()):
        group = sorted(group, key=lambda run: run["input_size"])
        cells = [f"{_size_label(run)}: {_cell(run['heads']['train plain']['plain'])}" for run in group]
        lines.append(f"| {sample} | {backbone} | " + " | ".join(cells + ["-"] * (4 - len(cells))) + " |")
    view_sets = [name for name in next(iter(runs.values()))["heads"]["train plain"] if name != "plain"]
    for train in ("train plain", "train all"):
        trained = "view 0 (the default recipe)" if train == "train plain" else "every view (extract --views 4)"
        lines += ["", f"Test-time augmentation, logreg trained on {trained}. Cells: valid top-1 (mean per-class) / "
                  "test top-1 (mean per-class).", "",
                  "| sample | backbone | size | plain | " + " | ".join(view_sets) + " |",
                  "|---|---|---|---|" + "---|" * len(view_sets)]
        for (sample, backbone), group in sorted(groups.items()):
            for run in sorted(group, key=lambda run: run["input_size"]):
                heads = run["heads"][train]
                lines.append(f"| {sample} | {backbone} | {_size_label(run)} | {_cell(heads['plain'])} | "
                             + " | ".join(_cell(heads[name]) for name in view_sets) + " |")
    lines += ["", "Means over caches (valid top-1 / test top-1):", "",
              "| caches | head trained on | plain | " + " | ".join(view_sets) + " |",
              "|---|---|---|" + "---|" * len(view_sets)]
    for label, members in ((f"all {len(runs)}", list(runs.values())),
                           *((f"{sample} ({sum(run['sample'] == sample for run in runs.values())})",
                              [run for run in runs.values() if run["sample"] == sample])
                             for sample in sorted({run["sample"] for run in runs.values()}))):
        for train in ("train plain", "train all"):
            means = []
            for name in ["plain", *view_sets]:
                valid = sum(run["heads"][train][name]["valid"]["top1"] for run in members) / len(members)
                test = sum(run["heads"][train][name]["test"]["top1"] for run in members) / len(members)
                means.append(f"{valid:.3f} / {test:.3f}")
            lines.append(f"| {label} | {'view 0' if train == 'train plain' else 'every view'} | "
                         + " | ".join(means) + " |")
    return "\n".join(lines)


@click.command()
@click.option("--data", type=click.Path(exists=True, file_okay=False, path_type=Path), default=DEFAULT_DATA,
              show_default=True, help="The folder holding the real-photo samples.")
@click.option("--cache-dir", type=click.Path(file_okay=False, path_type=Path),
              default=Path("cache/search-measurements"), show_default=True, help="Where the caches go.")
@click.option("--out", type=click.Path(dir_okay=False, path_type=Path), default=Path("docs/search-measurements.json"),
              show_default=True, help="The JSON file of every figure.")
@click.option("--backbones", default=",".join(SIZES), show_default=True, help="Comma-separated, in this order.")
@click.option("--samples", default=",".join(SAMPLES), show_default=True, help="Comma-separated sample folders.")
@click.option("--sizes", default=None, help="Comma-separated input sizes of SIZES to run (native: the backbone's own; "
              "default: all).")
@click.option("--extract-only", is_flag=True, help="Only extract the caches (no heads, no JSON).")
@click.option("--tables", is_flag=True, help="Only print the markdown tables of the JSON file.")
@click.option("--plain", is_flag=True, help="The input-size curve alone: caches without views, precision auto.")
@click.option("--layers", default=None, help="With --plain: comma-separated feature layers to extract (default: the "
              "backbone's own).")
@click.option("--heads", default=HEAD, show_default=True, help="With --plain: comma-separated heads to fit.")
def main(data: Path, cache_dir: Path, out: Path, backbones: str, samples: str, sizes: str | None,
         extract_only: bool, tables: bool, plain: bool, layers: str | None, heads: str) -> None:
    if tables:
        results = json.loads(out.read_text())
        plain_runs = results.get("plain_runs", {})
        click.echo(markdown(results) + ("\n\n" + plain_markdown(results) if plain_runs else "")
                   + ("\n\n" + layers_markdown(results) if any("layer" in run for run in plain_runs.values()) else ""))
        return
    if plain:
        _plain_runs(data, cache_dir, out, backbones, samples, sizes,
                    tuple(layers.split(",")) if layers else (None,), tuple(heads.split(",")))
        return
    wanted = None if sizes is None else set(sizes.split(","))
    results = json.loads(out.read_text()) if out.exists() and not extract_only else {}
    results.setdefault("views", VIEWS)
    results.setdefault("head", HEAD)
    runs = results.setdefault("runs", {})
    for backbone in backbones.split(","):
        for size in SIZES[backbone]:
            if wanted is not None and str(size or "native") not in wanted:
                continue
            for sample in samples.split(","):
                options = ExtractOptions(backbone=backbone, input_size=size, views=VIEWS, pool="avg",
                                         precision="float32")
                click.echo(f"{sample}: {backbone} at {size or 'native'} px", err=True)
                started = time.perf_counter()
                summary = run_extract(data / sample, cache_dir, options)
                seconds = time.perf_counter() - started
                key = f"{sample}/{backbone}/{size or 'native'}"
                if summary.extracted:
                    _record_seconds(cache_dir, key, round(seconds, 1), summary.extracted)
                if extract_only:
                    continue
                input_size = read_cache_info(summary.cache_path).spec.input_size
                runs[key] = {"sample": sample, "backbone": backbone, "input_size": input_size,
                             "native": size is None, "rows": summary.split_counts,
                             **_recorded_seconds(cache_dir, key),
                             "heads": score_cache(Path(summary.cache_path))}
                out.parent.mkdir(parents=True, exist_ok=True)
                out.write_text(json.dumps(results, indent=1))


def _plain_runs(data: Path, cache_dir: Path, out: Path, backbones: str, samples: str, sizes: str | None,
                layers: tuple[str | None, ...], heads: tuple[str, ...]) -> None:
    """`--plain`: extract without views in precision auto, fit the heads, add to `plain_runs`.

    `layers` holds None for the backbone's default layer; `heads[0]`'s figures are the run's `figures`.
    """
    from pipeline.backbones.registry import get_backbone

    wanted = None if sizes is None else set(sizes.split(","))
    for backbone in backbones.split(","):
        default_layer = get_backbone(backbone).default_layer
        for size in SIZES[backbone]:
            if wanted is not None and str(size or "native") not in wanted:
                continue
            for sample, layer in ((sample, layer) for sample in samples.split(",") for layer in layers):
                options = ExtractOptions(backbone=backbone, input_size=size, precision="auto", layer=layer)
                click.echo(f"{sample}: {backbone} {layer or default_layer} at {size or 'native'} px, no views, "
                           "precision auto", err=True)
                started = time.perf_counter()
                summary = run_extract(data / sample, cache_dir, options)
                seconds = round(time.perf_counter() - started, 1)
                spec = read_cache_info(summary.cache_path).spec
                key = f"{sample}/{backbone}/{size or 'native'}"
                if (layer or default_layer) != default_layer:
                    key += f"/{layer}"
                figures = score_plain_heads(Path(summary.cache_path), heads)
                results = json.loads(out.read_text()) if out.exists() else {}
                run = {"sample": sample, "backbone": backbone, "input_size": spec.input_size, "native": size is None,
                       "precision": spec.precision, "rows": summary.split_counts, "extract_seconds": seconds,
                       "extracted_rows": summary.extracted, "figures": figures.pop(heads[0])}
                if layer is not None:
                    run.update(layer=layer, default_layer=default_layer, head=heads[0])
                if figures:
                    run["head_figures"] = figures
                results.setdefault("plain_runs", {})[key] = run
                out.write_text(json.dumps(results, indent=1))


if __name__ == "__main__":
    main()
