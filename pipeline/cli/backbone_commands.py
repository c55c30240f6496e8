"""Backbone commands: weights, layers."""

from __future__ import annotations

import click

from pipeline.backbones.registry import BACKBONES
from pipeline.cli import limits
from pipeline.cli.plumbing import (
    cache_dir_option,
    command_body,
    json_option,
)


@click.command()
@click.option("--backbone", "backbones", multiple=True, type=click.Choice(list(BACKBONES)),
              help="Only this backbone (repeatable; default: all).")
@click.option("--fingerprint/--no-fingerprint", default=True, show_default=True,
              help="Load each available source to compute its fingerprint (needs TensorFlow).")
@cache_dir_option
@json_option
@command_body
def weights(backbones, fingerprint, cache_dir, as_json):
    """Which ImageNet weight sources exist per backbone, verified or not, and their fingerprints."""
    from pipeline.backbones.inventory import weights_table

    rows = weights_table(backbones or list(BACKBONES), cache_dir, fingerprint)
    if not as_json:
        width = max((len(source["source"]) for row in rows for source in row["sources"]), default=0)
        for row in rows:
            click.echo(f"{row['backbone']}:")
            for source in row["sources"]:
                state = "available" if source["available"] else "missing"
                extra = ""
                if source.get("verified") is not None:
                    extra += "  verified" if source["verified"] else "  NOT ImageNet"
                if source.get("fingerprint"):
                    extra += f"  fingerprint {source['fingerprint'][:16]}"
                click.echo(f"  {source['source']:<{width}} {state:<10} {source.get('path') or ''}{extra}")
                if source.get("error"):
                    click.echo(f"  {'':<{width}} {source['error']}")
                if source["source"] == "keras-cache":
                    pin = source.get("pin")
                    text = f"{pin['algorithm']} {pin['digest']}" if pin else "none (Keras publishes no hash)"
                    click.echo(f"  {'':<{width}} pin {text}")
    return {"backbones": rows}


@click.command()
@click.argument("backbone", type=click.Choice(list(BACKBONES)))
@click.option("--input-size", type=limits.INPUT_SIZE, default=None, help="Input size (default: the backbone's).")
@json_option
@command_body
def layers(backbone, input_size, as_json):
    """List BACKBONE's layers and output shapes (candidates for extract --layer)."""
    from pipeline.backbones.models import list_layers
    from pipeline.backbones.registry import get_backbone

    spec = get_backbone(backbone)
    rows = list_layers(spec, input_size or spec.default_input_size)
    if not as_json:
        for row in rows:
            marker = "  <- default" if row["name"] == spec.default_layer else ""
            click.echo(f"{row['name']:<28} {'x'.join(str(d) for d in row['shape'])}{marker}")
    return {"backbone": backbone, "default_layer": spec.default_layer, "layers": rows}




#: The commands this module adds to the group.
COMMANDS = (weights, layers)
