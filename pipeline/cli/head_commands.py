"""Head commands: fit-head, report, predict."""

from __future__ import annotations

from pathlib import Path

import click

from pipeline.cli.plumbing import (
    cache_argument,
    cache_dir_option,
    command_body,
    json_option,
    resolve_cache,
)
from pipeline.heads.registry import HEAD_HELP, HEAD_NAMES


@click.command("fit-head")
@cache_argument
@click.option("--head", "kind", type=click.Choice(HEAD_NAMES), required=True,
              help="Head to fit: " + "; ".join(f"{k}: {d}" for k, d in HEAD_HELP.items()) + ".")
@click.option("--recipe", type=click.Choice(["default", "classic"]), default=None,
              help="gap-dense only: classic reproduces the dog-breed notebook; default trains a better head.")
@cache_dir_option
@json_option
@command_body
def fit_head_command(cache, kind, recipe, cache_dir, as_json):
    """Fit a head on CACHE (a cache file, or a directory holding one; default --cache-dir)."""
    from pipeline.heads.fitting import fit_head
    from pipeline.heads.metrics import summary_line

    if recipe is not None and kind != "gap-dense":
        raise click.BadParameter("--recipe applies to --head gap-dense only", param_hint="--recipe")
    report = fit_head(resolve_cache(cache, cache_dir), kind, recipe)
    if not as_json:
        click.echo(f"Fitted {kind} ({_params_text(report.params)}) in {report.fit_seconds:.1f} s")
        for split in ("train", "valid", "test"):
            if split in report.metrics:
                click.echo(f"  {split:<6} {summary_line(report.metrics[split])}")
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
    """Leaderboard of every head fitted on CACHE, best validation accuracy first."""
    from pipeline.heads.leaderboard import format_table, leaderboard

    path = resolve_cache(cache, cache_dir)
    rows = leaderboard(path)
    if not as_json:
        if rows:
            click.echo(format_table(rows))
        else:
            click.echo(f"No heads fitted on {path} yet; run `fit-head {path} --head logreg`.")
    return {"cache": str(path), "heads": rows}


@click.command()
@click.argument("images", nargs=-1, required=True, type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option("--head", "head_path", required=True, type=click.Path(exists=True, dir_okay=False, path_type=Path),
              help="Head sidecar (.json) printed by fit-head.")
@click.option("--top-k", type=click.IntRange(min=1), default=5, show_default=True, help="Labels shown per image.")
@cache_dir_option
@json_option
@command_body
def predict(images, head_path, top_k, cache_dir, as_json):
    """Classify IMAGES with a fitted head, using the backbone and preprocessing it was fitted on."""
    from pipeline.heads.predict import predict_images

    results = predict_images(images, head_path, cache_dir, top_k)
    if not as_json:
        for result in results:
            if "error" in result:
                click.echo(f"{result['path']}: cannot read ({result['error']})")
                continue
            ranked = ", ".join(f"{p['label']} {p['probability']:.3f}" for p in result["predictions"])
            click.echo(f"{result['path']}: {ranked}")
    return {"head": str(head_path), "results": results}




#: The commands this module adds to the group.
COMMANDS = (fit_head_command, report, predict)
