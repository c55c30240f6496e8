"""Predict command: a fitted head's labels, or a backbone's own ImageNet labels, for new photos."""

from __future__ import annotations

from pathlib import Path

import click

from pipeline.backbones.precision import PRECISIONS
from pipeline.backbones.registry import BACKBONES
from pipeline.cli import limits
from pipeline.cli.plumbing import cache_dir_option, command_body, display_path, json_option
from pipeline.data.images import RESIZE_POLICIES
from pipeline.predict.imagenet import DEFAULT_IMAGENET_BACKBONE
from pipeline.predict.images import DEFAULT_TOP_K


@click.command()
@click.argument("images", nargs=-1, required=True, type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option("--head", "head_path", type=click.Path(exists=True, dir_okay=False, path_type=Path), default=None,
              help="Head sidecar (.json) printed by fit-head: labels of your classes.")
@click.option("--imagenet", is_flag=True, help="ImageNet's own top-k labels from a backbone's 1000-class classifier.")
@click.option("--backbone", type=click.Choice(list(BACKBONES)), default=None,
              help=f"With --imagenet: the classifier's backbone (default {DEFAULT_IMAGENET_BACKBONE}; "
                   "mobilenet and efficientnet_lite0 work offline).")
@click.option("--resize", type=click.Choice(RESIZE_POLICIES), default="stretch", show_default=True,
              help="With --imagenet: how photos reach the input size (a head uses the policy it was fitted with).")
@click.option("--precision", type=click.Choice([p for p in PRECISIONS if p != "auto"]), default="float32",
              show_default=True, help="With --imagenet: compute precision of the classifier.")
@click.option("--top-k", type=click.IntRange(1, limits.MAX_TOP_K), default=DEFAULT_TOP_K, show_default=True,
              help="Labels shown per image.")
@click.option("--no-tta", "no_tta", is_flag=True,
              help="With a head fitted with test-time augmentation (fit-head --tta, a search winner): predict on "
                   "the plain image only, instead of the mean over the views the head was scored on.")
@cache_dir_option
@json_option
@command_body
def predict(images, head_path, imagenet, backbone, resize, precision, top_k, no_tta, cache_dir, as_json):
    """Classify IMAGES with a fitted head (--head), or with ImageNet's classes (--imagenet)."""
    if (head_path is None) == (not imagenet):
        raise click.UsageError("pass either --head HEAD (your classes) or --imagenet (ImageNet's classes)")
    if no_tta and imagenet:
        raise click.BadParameter("applies to --head only (a head fitted with test-time augmentation)",
                                 param_hint="--no-tta")
    if imagenet:
        from pipeline.predict.imagenet import predict_imagenet

        outcome = predict_imagenet(images, backbone or DEFAULT_IMAGENET_BACKBONE, cache_dir, top_k, resize, precision)
        if not as_json:
            click.echo(f"ImageNet classes from {outcome.backbone} ({outcome.weights})")
            _print_results(outcome.results)
        return outcome.to_dict()
    for name, value, default in (("--backbone", backbone, None), ("--resize", resize, "stretch"),
                                 ("--precision", precision, "float32")):
        if value != default:
            raise click.BadParameter("applies to --imagenet only; a head predicts through the extraction it was "
                                     "fitted on", param_hint=name)
    from pipeline.predict.with_head import predict_images, predict_tta

    tta = predict_tta(head_path, not no_tta)
    results = predict_images(images, head_path, cache_dir, top_k, tta=not no_tta)
    if not as_json:
        if tta is not None:
            click.echo(f"Test-time augmentation: the mean of the head's probabilities over views "
                       f"{','.join(map(str, tta.views))}{' (mild crops only)' if tta.mild else ''} of each image, "
                       "as the head was scored (--no-tta: the plain image only)")
        _print_results(results)
    return {"head": str(head_path), "tta_views": list(tta.views) if tta else None, "results": results}


def _print_results(results: list[dict]) -> None:
    for result in results:
        if "error" in result:
            click.echo(f"{display_path(result['path'])}: cannot read ({result['error']})")
            continue
        click.echo(f"{display_path(result['path'])}: {ranked_text(result['predictions'])}")


#: Between two predictions of a line: class names (ImageNet's above all) may hold commas.
PREDICTION_SEPARATOR = "; "


def ranked_text(predictions: list[dict]) -> str:
    """'tabby 0.612; tiger cat 0.201; ...': each class by its short name where it has one, best first."""
    return PREDICTION_SEPARATOR.join(f"{p.get('name', p['label'])} {p['probability']:.3f}" for p in predictions)


#: The commands this module adds to the group.
COMMANDS = (predict,)
