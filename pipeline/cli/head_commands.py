"""Head commands: fit-head, report."""

from __future__ import annotations

import click

from pipeline.cli.plumbing import (
    cache_argument,
    cache_dir_option,
    command_body,
    json_option,
    resolve_cache,
)
from pipeline.heads.registry import HEAD_NAMES, HEADS


@click.command("fit-head")
@cache_argument
@click.option("--head", "kind", type=click.Choice(HEAD_NAMES), required=True,
              help="Head to fit: " + "; ".join(f"{k}: {entry.help}" for k, entry in HEADS.items()) + ".")
@click.option("--recipe", type=click.Choice(sorted({r for entry in HEADS.values() for r in entry.recipes})),
              default=None,
              help="Training recipe, for heads that have several (gap-dense: classic reproduces the dog-breed "
                   "notebook; default trains a better head).")
@cache_dir_option
@json_option
@command_body
def fit_head_command(cache, kind, recipe, cache_dir, as_json):
    """Fit a head on CACHE (a cache file, or a directory holding one; default --cache-dir)."""
    from pipeline.heads.fitting import fit_head
    from pipeline.heads.metrics import summary_line

    recipes = HEADS[kind].recipes
    if recipe is not None and recipe not in recipes:
        with_recipes = ", ".join(f"{k} ({'|'.join(e.recipes)})" for k, e in HEADS.items() if e.recipes)
        raise click.BadParameter(f"{kind} has no recipe {recipe!r}; --recipe applies to {with_recipes}",
                                 param_hint="--recipe")
    report = fit_head(resolve_cache(cache, cache_dir), kind, recipe)
    if not as_json:
        click.echo(f"Fitted {kind} ({_params_text(report.params)}) in {report.fit_seconds:.1f} s")
        for split in ("train", "valid", "test"):
            if split in report.metrics:
                click.echo(f"  {split:<6} {summary_line(report.metrics[split])}")
        if report.views:
            click.echo(f"Views  {report.views}")
        click.echo(f"Saved {report.sidecar_path}")
    return report.to_dict()


def _params_text(params: dict) -> str:
    from pipeline.heads.leaderboard import short_params

    return short_params(params)


@click.command()
@cache_argument
@cache_dir_option
@json_option
@command_body
def report(cache, cache_dir, as_json):
    """Leaderboard of every head fitted on CACHE, best validation accuracy first, and the rung it suggests next."""
    from pipeline.heads.leaderboard import format_table, leaderboard, notes
    from pipeline.heads.rungs import next_rung

    path = resolve_cache(cache, cache_dir)
    rows = leaderboard(path)
    suggestion = next_rung(path, rows)
    if not as_json:
        if rows:
            click.echo(format_table(rows))
            for line in notes(rows):
                click.echo(f"Views      {line}")
        else:
            click.echo(f"No heads fitted on {path} yet; run `fit-head {path} --head logreg`.")
        if rows:
            command = f"\n           {suggestion['command']}" if suggestion["command"] else ""
            click.echo(f"Next rung  {suggestion['rung']} ({suggestion['case']}): {suggestion['advice']}{command}")
    return {"cache": str(path), "heads": rows, "next_rung": suggestion}


#: The commands this module adds to the group.
COMMANDS = (fit_head_command, report)
