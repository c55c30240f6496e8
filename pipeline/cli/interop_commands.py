"""The classic npz files: import-npz, export-npz."""

from __future__ import annotations

from pathlib import Path

import click

from pipeline.cli.plumbing import (
    cache_dir_option,
    command_body,
    drop_duplicates_option,
    echo_list,
    json_option,
    resolve_cache,
)
from pipeline.interop.classic import CLASSIC_BACKBONES


@click.command("import-npz")
@click.argument("npz", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option("--labels", "labels_dir", required=True, type=click.Path(exists=True, file_okay=False, path_type=Path),
              help="The dogImages folder (train/ valid/ test/) the npz was computed from.")
@click.option("--name", default=None, help="Dataset name used in the cache file name (default: the npz file name).")
@click.option("--backbone", default=None, type=click.Choice(list(CLASSIC_BACKBONES)),
              help="The network that computed the file (default: recognised from its name and row shape).")
@drop_duplicates_option
@cache_dir_option
@json_option
@command_body
def import_npz_command(npz, labels_dir, name, backbone, drop_cross_split_duplicates, cache_dir, as_json):
    """Turn a classic bottleneck file (DogVGG16Data.npz, DogVGG19Data.npz, DogResnet50Data.npz,
    DogInceptionV3Data.npz, DogXceptionData.npz) into a cache, labelled from the dogImages folder."""
    from pipeline.interop.npz_import import import_npz

    summary = import_npz(npz, labels_dir, cache_dir, name, drop_cross_split_duplicates, backbone=backbone)
    if not as_json:
        rows = ", ".join(f"{split} {count}" for split, count in summary.rows.items())
        click.echo(f"Imported   {summary.npz}: {rows} rows  [{'x'.join(str(d) for d in summary.feature_shape)}]")
        click.echo(f"Labels     {summary.labels_dir}: {summary.images} images, {summary.classes} classes")
        echo_list("Failures", summary.failures, lambda f: f"{f['path']}: {f['reason']}")
        for note in summary.notes:
            click.echo(f"Note       {note}")
        click.echo(f"Cache      {summary.cache_path}")
        click.echo(f"Key        {summary.feature_key[:16]} (imported: heads fitted on it refuse other features)")
    return summary.to_dict()


@click.command("export-npz")
@click.argument("cache", type=click.Path(path_type=Path))
@click.argument("out", type=click.Path(dir_okay=False, path_type=Path))
@click.option("--classic", is_flag=True,
              help="Rows in the layout of the network's classic file (e.g. ResNet50 maps averaged to 1x1x2048).")
@cache_dir_option
@json_option
@command_body
def export_npz_command(cache, out, classic, cache_dir, as_json):
    """Write CACHE's features to OUT.npz in the classic bottleneck format (keys train, valid, test).

    CACHE is a cache file, a folder to choose in, or a spec chosen in --cache-dir such as pets/vgg16.
    """
    from pipeline.cache.format import read_cache_info
    from pipeline.interop.npz_export import classic_layout, export_npz

    path = resolve_cache(cache, cache_dir)
    layout = classic_layout(read_cache_info(path))[2] if classic else None
    counts = export_npz(path, out, classic=classic)
    if not as_json:
        click.echo(f"Wrote {out}: " + ", ".join(f"{split} {n}" for split, n in counts.items()))
        if layout:
            click.echo(f"Classic    {layout}")
    return {"out": str(out), "rows": counts, "classic": layout}



#: The commands this module adds to the group.
COMMANDS = (import_npz_command, export_npz_command)
