"""The main job: quickstart."""

from __future__ import annotations

from pathlib import Path

import click

from pipeline.backbones.precision import PRECISIONS
from pipeline.cli import limits
from pipeline.cli.data_commands import print_extract_summary
from pipeline.cli.plumbing import (
    ExtractProgress,
    cache_dir_option,
    command_body,
    json_option,
)
from pipeline.extract.options import DEFAULT_BATCH_SIZE, ExtractOptions


@click.command()
@click.option("--precision", type=click.Choice(PRECISIONS), default="auto", show_default=True,
              help="Compute precision of the extraction.")
@click.option("--batch-size", type=limits.BATCH_SIZE, default=DEFAULT_BATCH_SIZE, show_default=True,
              help="Images per forward pass.")
@cache_dir_option
@json_option
@command_body
def quickstart(precision, batch_size, cache_dir, as_json):
    """The whole pipeline offline on a generated shapes dataset: extract VGG16 features, fit 3 heads."""
    from pipeline.heads.caveats import caveat_notes
    from pipeline.quickstart import (
        QUICKSTART_CLASSES,
        QUICKSTART_PER_CLASS,
        run_quickstart,
    )
    from pipeline.report.leaderboard import format_table

    if not as_json:
        click.echo(f"Quickstart: {QUICKSTART_CLASSES} shape classes x {QUICKSTART_PER_CLASS} generated images, "
                   "VGG16 ImageNet block5_pool features, three heads.")
    progress = ExtractProgress()
    announce = (lambda kind: None) if as_json else (lambda kind: click.echo(f"Fitting {kind} ...", err=True))
    try:
        result = run_quickstart(cache_dir, ExtractOptions(precision=precision, batch_size=batch_size),
                                progress=progress, on_fit=announce)
    finally:
        progress.close()
    if not as_json:
        print_extract_summary(result.extract)
        click.echo("")
        click.echo(format_table(result.leaderboard))
        for line in caveat_notes(result.leaderboard):
            click.echo(f"Caveat     {line}")
        if result.imagenet is not None:
            click.echo(f"\nImageNet's own top-5 ({result.imagenet.backbone}) for scikit-learn's sample photos:")
            for photo in result.imagenet.results:
                ranked = ", ".join(f"{p['label'].split(',')[0]} {p['probability']:.2f}" for p in photo["predictions"])
                click.echo(f"  {Path(photo['path']).name}: {ranked}")
        else:
            click.echo(f"\n{result.imagenet_note}")
        click.echo(f"\nNext: python cli.py predict {result.data_dir}/circle/circle_0000.jpg "
                   f"--head {result.leaderboard[0]['path']}")
    return {"data_dir": result.data_dir, "extract": result.extract.to_dict(),
            "fits": [fit.to_dict() for fit in result.fits], "leaderboard": result.leaderboard,
            "imagenet": result.imagenet.to_dict() if result.imagenet else None, "imagenet_note": result.imagenet_note}




#: The commands this module adds to the group.
COMMANDS = (quickstart,)
