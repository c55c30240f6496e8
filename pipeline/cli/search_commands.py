"""search: the best recipe for a dataset, chosen on validation within a time budget."""

from __future__ import annotations

import logging
from pathlib import Path

import click

from pipeline.cli.plumbing import cache_dir_option, command_body, json_option

DEFAULT_BUDGET = "30m"
_SHOWN = 15  # leaderboard rows printed (every row is in the record and in --json)
_NAME_WIDTH = 52  # fits "vgg16@320:block4_pool+4views logreg avgmax tta" and the like whole


def _names(_ctx, _param, value: str | None) -> tuple[str, ...] | None:
    """click callback: "a,b c" -> ("a", "b", "c"); None when not given."""
    if not value:
        return None
    return tuple(part for part in value.replace(",", " ").split() if part)


@click.command("search")
@click.argument("data_dir", type=click.Path(exists=True, file_okay=False, path_type=Path))
@click.option("--budget", default=DEFAULT_BUDGET, show_default=True, metavar="DURATION",
              help="Wall time for the search, e.g. 90s, 5m, 1h30m, counted over every run of it on this dataset "
                   "and cache folder: a re-run resumes with what is left; raise it to search further.")
@click.option("--backbones", callback=_names, default=None, metavar="A,B",
              help="Only these backbones (default: every backbone whose genuine ImageNet weights resolve here).")
@click.option("--heads", callback=_names, default=None, metavar="A,B",
              help="Only these head families (default: logreg, svm, knn; mlp and gap-dense train in Keras).")
@cache_dir_option
@json_option
@command_body
def search_command(data_dir, budget, backbones, heads, cache_dir, as_json):
    """Find the best transfer recipe for DATA_DIR on validation: backbone, input size, feature layer
    (VGG16), pooling, augmented views, test-time augmentation, head, fusion. Test is scored once, for
    the winner, which is saved as a normal head. A second run reuses every cached row and fit; an
    interrupted one resumes.
    """
    from pipeline.search.cost import format_duration, parse_duration
    from pipeline.search.run import run_search

    seconds = parse_duration(budget)
    logging.getLogger("tensorflow").setLevel(logging.ERROR)  # retracing notes: one backbone per extraction is normal
    progress = None if as_json else _echo_progress
    result = run_search(data_dir, cache_dir, seconds, backbones, heads, progress=progress)
    if not as_json:
        _echo_result(result, format_duration)
    return {"winner": result.winner, "recipe": result.recipe, "valid": result.valid, "test": result.test,
            "head": result.head, "selection": result.selection, "record": result.record_path,
            "seconds": result.seconds, "spent_seconds": result.spent_seconds, "budget_seconds": result.budget_seconds,
            "candidates": result.candidates, "fitted": result.fitted, "reused": result.reused,
            "skipped": result.skipped, "extracted_rows": result.extracted_rows, "caveats": result.caveats,
            "test_note": "test was scored once, for the winner only, after it was chosen on validation"}


def _echo_progress(event) -> None:
    from pipeline.search.cost import format_duration

    best = f"best so far {event.best_valid:.3f} ({event.best})" if event.best else "nothing scored yet"
    estimate = f" ~{format_duration(event.estimate)}" if event.estimate else ""
    click.echo(f"[{format_duration(event.seconds_left):>6} left] {event.action:<7} {event.what}{estimate} | {best}",
               err=True)


def _echo_result(result, format_duration) -> None:
    from pipeline.search.record import DONE

    click.echo(f"{'candidate':<{_NAME_WIDTH}} {'rung':>4} {'valid':>6} {'per-cls':>7}  status")
    for row in result.leaderboard[:_SHOWN]:
        valid = row.get("valid") or {}
        top1 = f"{valid['top1']:.3f}" if valid.get("top1") is not None else "-"
        per_class = valid.get("mean_per_class_accuracy")
        per_class = f"{per_class:.3f}" if per_class is not None else "-"
        status = row["status"] if row["status"] == DONE else f"{row['status']}: {row.get('note', '')}"
        name = row["name"][:_NAME_WIDTH]
        click.echo(f"{name:<{_NAME_WIDTH}} {row.get('rung', '-'):>4} {top1:>6} {per_class:>7}  {status[:70]}")
    if len(result.leaderboard) > _SHOWN:
        click.echo(f"... and {len(result.leaderboard) - _SHOWN} more (see --json or the record)")
    selection = result.selection
    click.echo(f"\nWinner     {result.winner}")
    click.echo(f"Chosen on  validation only ({selection['valid_images']} images: one standard error is "
               f"{selection['standard_error']:.3f}); {selection['rule']}"
               + (f"; the best was {selection['best_candidate']} ({selection['best_valid_top1']:.3f})"
                  if selection["simpler_than_best"] else ""))
    click.echo(f"Valid      top-1 {result.valid['top1']:.3f}, mean per-class "
               f"{result.valid['mean_per_class_accuracy']:.3f}")
    if result.test:
        click.echo(f"Test       top-1 {result.test['top1']:.3f}, mean per-class "
                   f"{result.test['mean_per_class_accuracy']:.3f} (scored once, for the winner only)")
    for caveat in result.caveats:
        click.echo(f"Caveat     {caveat}")
    click.echo(f"Time       this run {format_duration(result.seconds)}; the search "
               f"{format_duration(result.spent_seconds)} "
               f"of its {format_duration(result.budget_seconds)} budget (all runs); this run: {result.fitted} fitted, "
               f"{result.reused} reused, {result.skipped} skipped, {result.extracted_rows} rows extracted")
    click.echo(f"Record     {result.record_path}")
    click.echo(f"Head       {result.head}")
    if result.recipe.get("tta"):
        click.echo("TTA        the winner scores the mean over each image's cached views, and `predict` with its head "
                   "averages the same views of each photo (--no-tta: the plain view)")


#: The commands this module adds to the group.
COMMANDS = (search_command,)
