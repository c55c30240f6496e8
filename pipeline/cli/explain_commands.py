"""Explain commands: visualize (ideal class images), features (feature maps)."""

from __future__ import annotations

from pathlib import Path

import click

from pipeline.backbones.registry import BACKBONES
from pipeline.cli import limits
from pipeline.cli.plumbing import ExtractProgress, cache_dir_option, command_body, json_option
from pipeline.explain import visualize as defaults
from pipeline.explain.features import DEFAULT_CHANNELS
from pipeline.explain.parameterization import PARAMETERIZATIONS

_HEAD = click.Path(exists=True, dir_okay=False, path_type=Path)
_IMAGE = click.Path(exists=True, dir_okay=False, path_type=Path)


@click.command()
@click.argument("head", required=False, type=_HEAD)
@click.option("--imagenet", "imagenet", type=click.Choice(list(BACKBONES)), default=None,
              help="Instead of a head: this backbone's own ImageNet classifier (mobilenet and efficientnet_lite0 "
                   "work offline).")
@click.option("--class", "class_name", default=None, help="The class to draw (a name of the head's classes).")
@click.option("--classes", default=None, help="'all': one ideal image per class of a small head, as a grid.")
@click.option("--steps", type=click.IntRange(1, limits.MAX_STEPS), default=defaults.DEFAULT_STEPS, show_default=True,
              help="Gradient steps per image (split over the --scales stages).")
@click.option("--size", type=click.IntRange(defaults.MIN_STAGE_SIZE, limits.MAX_IMAGE_SIZE), default=None,
              help="Side of the saved image (default: the classifier's input size; another size is resized to it "
                   "inside the graph).")
@click.option("--lr", type=limits.LEARNING_RATE, default=None,
              help="Adam step size (default: 2 pixel units for --param pixels, 0.05 for fft).")
@click.option("--tv", type=click.FloatRange(0, limits.MAX_PENALTY), default=None,
              help="Weight of the total-variation penalty, 0 turns it off (default: "
                   + ", ".join(f"{w:g} for --param {p}" for p, w in defaults.DEFAULT_TV.items()) + ").")
@click.option("--l2", type=click.FloatRange(0, limits.MAX_PENALTY), default=defaults.DEFAULT_L2, show_default=True,
              help="Weight of the pull towards mid-grey.")
@click.option("--jitter", type=click.IntRange(0, limits.MAX_JITTER), default=defaults.DEFAULT_JITTER, show_default=True,
              help="Random shift, in pixels, before every step.")
@click.option("--scale-jitter", type=click.FloatRange(min=0, max=1, max_open=True),
              default=defaults.DEFAULT_SCALE_JITTER, show_default=True,
              help="Random rescaling within 1 +- this before every step.")
@click.option("--scales", type=click.IntRange(1, limits.MAX_SCALES), default=1, show_default=True,
              help="Multi-scale stages: start this many octaves (x1.5) small and upsample.")
@click.option("--param", type=click.Choice(PARAMETERIZATIONS), default=defaults.DEFAULT_PARAM, show_default=True,
              help="Optimise the pixels, or a decorrelated Fourier spectrum (smoother, for deeper nets).")
@click.option("--objective", type=click.Choice(defaults.OBJECTIVES), default="logit", show_default=True,
              help="Maximise the class's logit, or its log-probability.")
@click.option("--start", type=_IMAGE, default=None, help="Start from this image instead of noise.")
@click.option("--seed", type=limits.SEED, default=0, show_default=True, help="Seed of the noise start and the jitter.")
@click.option("--compare-tv/--no-compare-tv", default=True, show_default=True,
              help="Also optimise without the TV term and save both side by side.")
@click.option("--out", "out_dir", type=click.Path(file_okay=False, path_type=Path), default=None,
              help="Results folder (default: explain/ beside the head, so `report --html` shows it).")
@cache_dir_option
@json_option
@command_body
def visualize(head, imagenet, class_name, classes, steps, size, lr, tv, l2, jitter, scale_jitter, scales, param,
              objective, start, seed, compare_tv, out_dir, cache_dir, as_json):
    """Draw the image HEAD (or --imagenet BACKBONE) finds most like --class NAME, by gradient ascent."""
    from pipeline.explain.classifier import load_classifier
    from pipeline.explain.visualize import VisualizeSettings
    from pipeline.explain.visualize_run import resolve_classes, run_visualize

    settings = VisualizeSettings(steps=steps, size=size, lr=lr, tv=tv, l2=l2, jitter=jitter,
                                 scale_jitter=scale_jitter, scales=scales, param=param, objective=objective, seed=seed)
    classifier = load_classifier(head=head, imagenet=imagenet, cache_dir=cache_dir)
    indices = resolve_classes(classifier, class_name, classes)
    progress = ExtractProgress("optimising", unit="step/s")
    try:
        outcome = run_visualize(classifier, indices, settings, compare_tv, start, out_dir, progress)
    finally:
        progress.close()
    if not as_json:
        for image in outcome["images"]:
            label = f"TV {image['tv_weight']:g}" if image["tv_weight"] > 0 else "no TV"
            click.echo(f"{image['class_name']:<20} {label:<8} p={image['probability']:.4f}  "
                       f"(top: {image['top_class']} {image['top_probability']:.4f})  total variation "
                       f"{image['total_variation']:.4f}  {image['seconds']:.1f} s  {image['file']}")
        click.echo(f"Saved {outcome['figure']} (settings and results in result.json beside it)")
    return outcome


@click.command()
@click.argument("image", type=_IMAGE)
@click.option("--layer", default=None,
              help="Layer to show (names as `layers BACKBONE` lists them; default: the feature layer).")
@click.option("--backbone", type=click.Choice(list(BACKBONES)), default=None,
              help="The backbone to look inside (or --head: the head's backbone and weights).")
@click.option("--head", "head", type=_HEAD, default=None, help="Head sidecar (.json): use its exact extraction.")
@click.option("--weights", default="imagenet", show_default=True,
              help="With --backbone: imagenet, none (random, for tests), or a weights file path.")
@click.option("--input-size", type=limits.INPUT_SIZE, default=None,
              help="With --backbone: square input size (default: the backbone's own).")
@click.option("--channels", type=click.IntRange(1, limits.MAX_CHANNELS), default=DEFAULT_CHANNELS, show_default=True,
              help="How many channels to draw, strongest mean activation first.")
@click.option("--out", "out_dir", type=click.Path(file_okay=False, path_type=Path), default=None,
              help="Results folder (default: explain/ beside the head, or under --cache-dir).")
@cache_dir_option
@json_option
@command_body
def features(image, layer, backbone, head, weights, input_size, channels, out_dir, cache_dir, as_json):
    """Draw the strongest feature maps of one layer for IMAGE (--backbone B or --head HEAD)."""
    from pipeline.explain.features import feature_source, run_features

    if head is not None and (weights != "imagenet" or input_size is not None):
        raise click.BadParameter("applies to --backbone only; a head uses the extraction it was fitted on",
                                 param_hint="--weights/--input-size")
    source = feature_source(cache_dir, head=head, backbone=backbone, weights=weights, input_size=input_size)
    outcome = run_features(image, source, layer, channels, out_dir)
    if not as_json:
        shape = "x".join(str(d) for d in outcome["shape"])
        ranked = ", ".join(f"{c['channel']} ({c['mean']:.2f})" for c in outcome["channels"])
        click.echo(f"{outcome['layer']} {shape}: strongest channels by mean activation: {ranked}")
        click.echo(f"Saved {outcome['figure']}")
    return outcome


#: The commands this module adds to the group.
COMMANDS = [visualize, features]
