"""Export command: a head with its backbone and preprocessing as one verified, deployable model."""

from __future__ import annotations

from pathlib import Path

import click

from pipeline.cli import limits
from pipeline.cli.plumbing import cache_dir_option, command_body, json_option
from pipeline.export.artifact import FORMATS
from pipeline.export.verify import DEFAULT_SAMPLES, DEFAULT_TOLERANCE, REDUCED_PRECISION_TOLERANCE


@click.command("export")
@click.argument("head", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.argument("out", type=click.Path(path_type=Path))
@click.option("--format", "fmt", type=click.Choice(FORMATS), default="keras", show_default=True,
              help="Artifact format (saved_model is a folder; onnx needs the onnx extra).")
@click.option("--images", "images", multiple=True, type=click.Path(exists=True, dir_okay=False, path_type=Path),
              help="A photo to verify on (repeat it); default: the head's cache's own test images.")
@click.option("--samples", type=click.IntRange(1, limits.MAX_SAMPLES), default=DEFAULT_SAMPLES, show_default=True,
              help="Cache images verified on when --images is not given.")
@click.option("--tolerance", type=click.FloatRange(0, limits.MAX_TOLERANCE), default=None,
              help=f"Largest probability difference to predict's accepted; above it nothing is written "
                   f"[default: {DEFAULT_TOLERANCE:g}; {REDUCED_PRECISION_TOLERANCE:g} for a head of a bfloat16 "
                   "or float16 cache, which predict runs in that precision].")
@cache_dir_option
@json_option
@command_body
def export(head, out, fmt, images, samples, tolerance, cache_dir, as_json):
    """Write HEAD (a fit-head .json) with its backbone and preprocessing as one model at OUT.

    The model takes RGB pixels 0-255 already resized to the head's input size with its resize policy
    (as predict does) and returns class probabilities; it is verified against predict before it is kept.
    """
    from pipeline.export.run import export_head

    report = export_head(head, out, fmt, cache_dir, images=list(images), tolerance=tolerance, samples=samples)
    if not as_json:
        check = report.verification
        shape = report.metadata["input"]["shape"]
        click.echo(f"exported {report.path} ({fmt}, {report.size_bytes / 1e6:.1f} MB)")
        click.echo(f"input     pixels {shape[1]}x{shape[2]}x3 RGB 0-255, "
                   f"{'uint8 or float32' if report.metadata['input']['uint8_accepted'] else 'float32'}; "
                   f"resize first: {report.metadata['input']['resize']['describe']}")
        click.echo(f"output    probabilities over {len(report.class_names)} classes: "
                   f"{', '.join(report.class_names[:5])}{' ...' if len(report.class_names) > 5 else ''}")
        click.echo(f"verified  max |difference| to predict {check.max_abs_diff:.3g} <= tolerance {check.tolerance:g} "
                   f"on {len(check.images)} images ({check.sample_source}); top-1 agrees on "
                   f"{check.top1_agree}/{len(check.images)}")
        click.echo(f"labels    {report.labels_path}")
        for note in report.notes:
            click.echo(f"note      {note}")
    return report.to_dict()


#: The commands this module adds to the group.
COMMANDS = (export,)
