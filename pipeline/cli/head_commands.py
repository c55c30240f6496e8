"""Head commands: fit-head, report."""

from __future__ import annotations

from pathlib import Path

import click

from pipeline.cache.rows import HEAD_POOLINGS
from pipeline.cli import limits
from pipeline.cli.plumbing import (
    cache_argument,
    cache_dir_option,
    command_body,
    json_option,
    resolve_cache,
)
from pipeline.heads.features import DEFAULT_HEAD_POOLING
from pipeline.heads.registry import HEAD_NAMES, HEADS, check_recipe


def _parse_task_weights(_ctx, _param, values) -> dict:
    """click callback of --task-weight: ("species=0.3", ...) -> {"species": 0.3}."""
    weights = {}
    for value in values:
        name, _, weight = value.partition("=")
        try:
            weights[name.strip()] = float(weight)
        except ValueError:
            raise click.BadParameter(f"expected TARGET=WEIGHT (e.g. species=0.3), got {value!r}",
                                     param_hint="--task-weight") from None
        if not name.strip() or weights[name.strip()] < 0:
            raise click.BadParameter(f"expected TARGET=WEIGHT with a weight >= 0, got {value!r}",
                                     param_hint="--task-weight")
    return weights


@click.command("fit-head")
@click.argument("caches", nargs=-1, type=click.Path(path_type=Path))
@click.option("--head", "kind", type=click.Choice(HEAD_NAMES), required=True,
              help="Head to fit: " + "; ".join(f"{k}: {entry.help}" for k, entry in HEADS.items()) + ".")
@click.option("--recipe", default=None, metavar="NAME",
              help="Training recipe, for heads that have several (" + "; ".join(
                  f"{k}: {'|'.join(e.recipes)}" for k, e in HEADS.items() if e.recipes) + "; gap-dense's classic "
                  "reproduces the dog-breed notebook, its default trains a better head).")
@click.option("--target", default=None,
              help="Fit on this extra label of the cache instead of the main one (e.g. species; see `cache show`).")
@click.option("--pool", "pooling", type=click.Choice(HEAD_POOLINGS), default=DEFAULT_HEAD_POOLING, show_default=True,
              help="How spatial feature maps are pooled for the head (avgmax: both, side by side).")
@click.option("--targets", default=None, metavar="A,B,...",
              help="multitask: the targets to learn together, primary first (default: every target of the cache).")
@click.option("--task-weight", "task_weights", multiple=True, metavar="TARGET=W", callback=_parse_task_weights,
              help="multitask: a target's loss weight (repeatable; default 1 each).")
@click.option("--task-weighting", type=click.Choice(["fixed", "uncertainty"]), default=None,
              help="multitask: fixed loss weights, or learned uncertainty weighting (default: fixed).")
@click.option("--hidden-units", type=click.IntRange(1, limits.MAX_HIDDEN_UNITS), default=None,
              help="multitask: one shared ReLU hidden layer of this width (default: none).")
@click.option("--tta", "tta", is_flag=False, flag_value="default", default=None, metavar="[VIEWS]",
              help="Also score valid/test with test-time augmentation: the mean of the head's probabilities over "
                   "each image's cached views (a cache extracted with --views K), reported beside the plain view-0 "
                   "score. VIEWS: all, mild (view 0 + crops keeping >= 75% of the image), augmented, or indices "
                   "such as 0,1,2 (default: the measured best, see docs/search-measurements.md).")
@cache_dir_option
@json_option
@command_body
def fit_head_command(caches, kind, recipe, target, pooling, targets, task_weights, task_weighting, hidden_units,
                     tta, cache_dir, as_json):
    """Fit a head on CACHE (default: the cache --cache-dir holds).

    \b
    CACHE is a cache file, a folder to choose in, or a spec chosen in --cache-dir:
    DATASET[/BACKBONE[/LAYER]][/NAME=VALUE...], e.g. pets/mobilenet or pets/vgg16/resize=crop.

    Several caches of the same images (other backbones or layers) fit one fused head: how to fuse
    (each backbone alone, weighted late fusion, early fusion) is chosen on validation.
    """
    from pipeline.heads.caveats import caveats_of
    from pipeline.heads.fitting import fit_head
    from pipeline.heads.metrics import summary_line

    check_recipe(kind, recipe)  # before any cache is read
    options = {"targets": tuple(targets.split(",")) if targets else None, "task_weights": task_weights,
               "weighting": task_weighting, "hidden_units": hidden_units}
    view_set = _tta_view_set(tta)
    if view_set is not None and len(caches) > 1:
        raise click.UsageError("--tta scores one head on one cache's views; fit the fused head without it")
    if len(caches) > 1:
        if any(value for value in options.values()):
            raise click.UsageError("fusion fits single-target heads; multitask options apply to one cache")
        from pipeline.heads.fusion import fit_fusion

        report = fit_fusion([resolve_cache(cache, cache_dir) for cache in caches], kind, recipe, target, pooling)
    else:
        report = fit_head(resolve_cache(caches[0] if caches else None, cache_dir), kind, recipe, target, pooling,
                          tta=view_set, **options)
    caveats = caveats_of(report.metrics)
    if not as_json:
        if report.kind == "fusion":
            click.echo(f"Fused {len(report.params['weights'])} caches; chosen on validation: "
                       f"{report.params['method']}; the best single backbone: {report.params['best_single']} "
                       f"(valid top-1 {report.params['best_single_valid_top1']:.3f})")
            click.echo(f"Carried by {', '.join(report.params['carried_by'])}")
        click.echo(f"Fitted {kind} ({_params_text(report.params)}) in {report.fit_seconds:.1f} s")
        for split in ("train", "valid", "test"):
            if split in report.metrics:
                click.echo(f"  {split:<6} {summary_line(report.metrics[split])}")
        for caveat in caveats:
            click.echo(f"Caveat     {caveat.text}")
        for name, by_split in (report.metrics_by_target or {}).items():
            if "test" in by_split:
                click.echo(f"  target {name}: test {summary_line(by_split['test'])}")
        for name, implied in (report.implied or {}).items():
            if "test" in implied:
                row = implied["test"]
                extra = (f", direct {row['accuracy_direct']:.3f}, consistency {row['consistency']:.3f}"
                         if "consistency" in row else "")
                click.echo(f"  {name} from {implied['implied_by']}: test accuracy "
                           f"{row['accuracy_from_primary']:.3f}{extra}")
        if getattr(report, "tta", None):
            click.echo(f"TTA    mean over {report.tta['views_per_image']:g} views per image "
                       f"(view set {report.tta['view_set']}):")
            for split, values in report.tta["metrics"].items():
                click.echo(f"  {split:<6} {summary_line(values)}")
        if report.views:
            click.echo(f"Views  {report.views}")
        click.echo(f"Saved {report.sidecar_path}")
    return {**report.to_dict(), "caveats": [caveat.to_dict() for caveat in caveats]}


def _tta_view_set(text: str | None):
    """--tta's value as a view set of `pipeline.heads.tta`, or None without --tta."""
    if text is None:
        return None
    from pipeline.heads.tta import DEFAULT_VIEW_SET, parse_view_set

    return DEFAULT_VIEW_SET if text == "default" else parse_view_set(text)


def _params_text(params: dict) -> str:
    from pipeline.report.leaderboard import short_params

    return short_params(params)


@click.command()
@cache_argument
@click.option("--html", "html_out", is_flag=False, flag_value="", default=None, metavar="[OUT]",
              help="Also write a self-contained HTML report (default: <cache>.report.html beside the cache).")
@cache_dir_option
@json_option
@command_body
def report(cache, html_out, cache_dir, as_json):
    """Leaderboard of every head fitted on CACHE, best validation accuracy first, and the rung it suggests next.

    CACHE is a cache file, a folder to choose in, or a spec chosen in --cache-dir such as pets/mobilenet
    (see `fit-head --help`).
    """
    from pipeline.heads.caveats import caveat_notes
    from pipeline.report.leaderboard import format_table, leaderboard, notes
    from pipeline.report.rungs import next_rung
    from pipeline.search.record import report_sections

    path = resolve_cache(cache, cache_dir)
    rows = leaderboard(path)
    searches = report_sections(path)
    suggestion = next_rung(path, rows)
    from pipeline.audit.leakage import recorded_leakage_scores, score_line

    leakage, _ = recorded_leakage_scores(path) if rows else ([], None)
    written = None
    if html_out is not None:
        from pipeline.report.page import write_html_report

        written = write_html_report(path, Path(html_out) if html_out else None)
    if not as_json:
        if rows:
            click.echo(format_table(rows))
            for line in notes(rows):
                click.echo(f"Views      {line}")
            for line in caveat_notes(rows):
                click.echo(f"Caveat     {line}")
            for row in leakage:
                if row["removed"]:  # shown only when it differs: some test images have a copy in train/valid
                    click.echo(f"Leakage    {score_line(row)}")
        else:
            click.echo(f"No heads fitted on {path} yet; run `fit-head {path} --head logreg`.")
        if rows:
            command = f"\n           {suggestion['command']}" if suggestion["command"] else ""
            click.echo(f"Next rung  {suggestion['rung']} ({suggestion['case']}): {suggestion['advice']}{command}")
        for search in (found for found in searches if found["winner_valid"]):
            click.echo(f"Search     winner {search['winner']} (valid top-1 {search['winner_valid']['top1']:.3f}, "
                       f"chosen on {search['valid_images']} validation images; {len(search['candidates'])} "
                       f"candidates in {search['record']})")
        if written is not None:
            click.echo(f"\nReport     {written}")
    return {"cache": str(path), "heads": rows, "next_rung": suggestion, "html": str(written) if written else None,
            "searches": searches, "leakage_aware": leakage}


#: The commands this module adds to the group.
COMMANDS = (fit_head_command, report)
