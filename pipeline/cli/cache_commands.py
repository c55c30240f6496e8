"""Cache commands: merge, and the cache group (ls, show, verify, rm)."""

from __future__ import annotations

import json
from pathlib import Path

import click

from pipeline.cli.plumbing import (
    cache_argument,
    cache_dir_option,
    command_body,
    display_path,
    json_option,
    resolve_cache,
)


@click.command()
@click.argument("shards", nargs=-1, required=True, type=click.Path(exists=True, path_type=Path))
@click.option("--out-dir", type=click.Path(file_okay=False, path_type=Path), default=None,
              help="Where to write the merged cache (default: the shard caches' folder).")
@click.option("--delete-shards", is_flag=True, help="Delete the shard caches once the merged cache is written.")
@click.option("--wait", is_flag=True, help="If another process is writing the merged cache, wait for it.")
@json_option
@command_body
def merge(shards, out_dir, delete_shards, wait, as_json):
    """Join the shard caches of `extract --shard I/N` (files, or folders holding them) into one cache."""
    from pipeline.cache.merge import merge_shards

    summary = merge_shards(shards, out_dir, delete_shards=delete_shards, wait_for_lock=wait)
    if not as_json:
        click.echo(f"Merged {len(summary.shards)} shards: {summary.images} images, {summary.rows} rows, "
                   f"{summary.failures} failures")
        for note in summary.notes:
            click.echo(f"Note       {note}")
        if summary.deleted:
            click.echo(f"Deleted    {len(summary.shards)} shard caches")
        click.echo(f"Cache      {summary.cache_path}")
    return summary.to_dict()




@click.group()
def cache():
    """List, verify and remove feature caches."""


@cache.command("ls")
@cache_dir_option
@json_option
@command_body
def cache_ls(cache_dir, as_json):
    """List the caches in --cache-dir with their dataset, features, size and heads."""
    from pipeline.caches.admin import list_caches

    rows = list_caches(cache_dir)
    if not as_json:
        if not rows:
            click.echo(f"No caches in {cache_dir}.")
        for row in rows:
            if "error" in row:
                click.echo(f"{row['file']}  DAMAGED: {row['error']}")
                continue
            if row.get("unfinished"):
                click.echo(f"{row['file']}  unfinished first extraction: {row['segments']} committed segments, "
                           f"{row['megabytes']:.1f} MB (run the same extract again to finish it)")
                continue
            differs = "".join(f"  {name}={value}" for name, value in row["differs"].items())
            click.echo(f"{row['file']}  {row['dataset']}  {row['backbone']}/{row['layer']}{differs}  {row['images']} "
                       f"images, {row['rows']} rows, {row['megabytes']:.1f} MB, {row['heads']} heads"
                       + (f"  (shard {row['shard']}: `merge` the shards to use it)" if row["shard"] else "")
                       + ("  (unfinished extraction pending)" if row["partial"] else "")
                       + (f"  (fine-tune boundary of {', '.join(row['boundary_of'])}: `cache rm` of that cache "
                          "removes it too)" if row["boundary_of"] else ""))
        boundaries = [row for row in rows if row.get("boundary_of")]
        if boundaries:
            click.echo(f"Boundary   {len(boundaries)} fine-tune boundary caches, "
                       f"{sum(row['megabytes'] for row in boundaries):.1f} MB in all")
        if any(row.get("differs") for row in rows):
            click.echo("Choose     pass `DATASET/BACKBONE/LAYER/NAME=VALUE` (e.g. "
                       f"{next(row['spec'] for row in rows if row.get('differs'))}) where a command takes a cache")
    return {"cache_dir": str(cache_dir), "caches": rows}


@cache.command("show")
@cache_argument
@cache_dir_option
@json_option
@command_body
def cache_show(cache, cache_dir, as_json):
    """Show a cache's provenance, splits, classes and failures.

    CACHE is a file, a folder, or a spec chosen in --cache-dir such as pets/vgg16/resize=crop (`cache ls`
    prints each cache's spec).
    """
    from pipeline.caches.admin import describe_cache

    details = describe_cache(resolve_cache(cache, cache_dir))
    if not as_json:
        for key, value in details.items():
            if key == "failures":
                click.echo(f"failures: {len(value)}")
                for failure in value:
                    click.echo(f"  {display_path(failure['path'])}: {failure['reason']}")
            elif isinstance(value, (dict, list)):
                click.echo(f"{key}: {json.dumps(value)}")
            else:
                click.echo(f"{key}: {value}")
    return details


@cache.command("verify")
@cache_argument
@click.option("--quick", is_flag=True, help="Skip re-hashing every feature row.")
@cache_dir_option
@json_option
@command_body
def cache_verify(cache, quick, cache_dir, as_json):
    """Check a cache's structure, provenance and feature-row digests (CACHE as for `cache show`)."""
    from pipeline.cache.verify import damaged_cache_error, verify_cache

    path = resolve_cache(cache, cache_dir)
    problems = verify_cache(path, check_rows=not quick)
    if problems:
        raise damaged_cache_error(path, problems)
    if not as_json:
        click.echo(f"{path}: OK")
    return {"cache": str(path), "problems": problems}


@cache.command("rm")
@click.argument("caches", nargs=-1, required=True, type=click.Path(dir_okay=False, path_type=Path))
@click.option("--yes", is_flag=True, help="Do not ask for confirmation.")
@click.option("--keep-boundaries", is_flag=True,
              help="Keep the fine-tune boundary caches that only these caches' fine-tuned heads read.")
@cache_dir_option
@json_option
@command_body
def cache_rm(caches, yes, keep_boundaries, cache_dir, as_json):
    """Delete CACHES with their unfinished segments, fitted heads and the fine-tune boundary caches only their
    fine-tuned heads read (`cache ls` marks those). A CACHE is a file, or a spec chosen in --cache-dir such as
    pets/vgg16/resize=crop."""
    from pipeline.cache.format import CACHE_SUFFIX
    from pipeline.caches.admin import MEGABYTE, own_boundaries, remove_cache
    from pipeline.caches.select import parse_spec, select_cache

    paths = [cache if cache.exists() or cache.suffix == CACHE_SUFFIX else select_cache(cache_dir, parse_spec(cache))
             for cache in caches]
    named = {path.resolve() for path in paths}
    boundaries = {path: [] if keep_boundaries else [b for b in own_boundaries(path) if b.resolve() not in named]
                  for path in paths}
    if not yes:
        if as_json:
            raise click.UsageError("cache rm --json cannot ask for confirmation; add --yes")
        extra = [b for found in boundaries.values() for b in found]
        also = (f" and {len(extra)} fine-tune boundary cache(s) ({', '.join(b.name for b in extra)}, "
                f"{sum(b.stat().st_size for b in extra) / MEGABYTE:.1f} MB)") if extra else ""
        click.confirm(f"Delete {', '.join(p.name for p in paths)} with their heads{also}?", abort=True)
    removed = [remove_cache(path) + [f for b in boundaries[path] for f in remove_cache(b)] for path in paths]
    if not as_json:
        for paths in removed:
            click.echo("removed " + ", ".join(paths))
    return {"removed": removed}



#: The commands this module adds to the group.
COMMANDS = (merge, cache)
