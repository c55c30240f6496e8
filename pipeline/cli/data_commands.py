"""Dataset and extraction commands: inspect, extract."""

from __future__ import annotations

from pathlib import Path

import click

from pipeline.cli import limits
from pipeline.cli.plumbing import (
    FAILURES_SHOWN,
    ExtractProgress,
    cache_dir_option,
    command_body,
    display_path,
    display_text,
    drop_duplicates_option,
    echo_list,
    extract_options,
    json_option,
    layout_option,
)
from pipeline.data.layouts import layout_names
from pipeline.data.splits import (
    DEFAULT_SPLIT_SEED,
    DEFAULT_TEST_FRACTION,
    DEFAULT_VALID_FRACTION,
)
from pipeline.data.views import DEFAULT_VIEW_SEED
from pipeline.extract.options import ENGINES, ExtractOptions


def _parse_shard(_ctx, _param, value):
    """click callback of `--shard`: "I/N" -> `Shard`."""
    from pipeline.cache.shard import Shard

    if value is None:
        return None
    try:
        return Shard.parse(value)
    except ValueError as error:
        raise click.BadParameter(str(error), param_hint="--shard") from error


@click.command()
@click.argument("data_dir", type=click.Path(path_type=Path))
@extract_options
@click.option("--layout", type=click.Choice(["auto"] + layout_names()), default="auto", show_default=True,
              help="Dataset layout; auto detects it.")
@click.option("--name", default=None, help="Dataset name used in the cache file name (default: the folder name).")
@click.option("--valid-fraction", type=click.FloatRange(0, 1, max_open=True), default=DEFAULT_VALID_FRACTION,
              show_default=True, help="Share of unsplit images carved into validation when there is no valid split.")
@click.option("--test-fraction", type=click.FloatRange(0, 1, max_open=True), default=DEFAULT_TEST_FRACTION,
              show_default=True, help="Share of unsplit images carved into test when there is no test split.")
@click.option("--split-seed", type=limits.SEED, default=DEFAULT_SPLIT_SEED, show_default=True,
              help="Seed of the content-hash split assignment.")
@click.option("--strict", is_flag=True, help="Fail before extracting if any image cannot be read.")
@click.option("--allow-large-images", is_flag=True, help="Accept images above the decompression-bomb pixel limit.")
@click.option("--workers", type=limits.WORKERS, default=None,
              help="Decoding threads (default: CPU cores); with --engine ray, Ray actors, one backbone each "
                   "(default: as many as the cluster's CPUs, or GPUs with --gpus-per-worker, allow).")
@click.option("--engine", type=click.Choice(ENGINES), default="local", show_default=True,
              help="Where the forward passes run: this process, or a pool of Ray Data actors (needs the ray extra; "
                   "this process still writes the cache).")
@click.option("--ray-address", default=None, metavar="ADDRESS",
              help="With --engine ray: the cluster to join (auto, host:port or ray://host:10001; default: start a "
                   "local Ray instance on this machine).")
@click.option("--gpus-per-worker", type=click.FloatRange(0, limits.MAX_GPUS_PER_WORKER), default=0.0, show_default=True,
              help="With --engine ray: GPUs each actor reserves (0 runs CPU actors; 0.5 puts two actors on a GPU).")
@click.option("--wait", is_flag=True, help="If another extract is writing this cache, wait for it instead of failing.")
@drop_duplicates_option
@click.option("--commit-every", type=click.IntRange(1, limits.MAX_COMMIT_ROWS), default=None,
              help="Save finished rows to disk every N images (default: every 32 MB of features or 30 s).")
@click.option("--shard", default=None, metavar="I/N", callback=_parse_shard,
              help="Extract only shard I of N (whole batches dealt round robin) into a shard cache; join the "
                   "shard caches with `merge`. Use the same --batch-size for every shard.")
@click.option("--views", type=click.IntRange(0, limits.MAX_VIEWS), default=0, show_default=True, metavar="K",
              help="Also cache K seeded augmented views of every image (flip, random resized crop, colour "
                   "jitter); view 0 is the plain image. Heads train on all views of train, and score valid/test "
                   "on view 0.")
@click.option("--view-seed", type=limits.SEED, default=DEFAULT_VIEW_SEED, show_default=True,
              help="Seed of the augmented views (with --views).")
@cache_dir_option
@json_option
@command_body
def extract(data_dir, backbone, layer, input_size, resize, pool, batch_size, weights, precision, store_dtype,
            layout, name, valid_fraction, test_fraction, split_seed, strict, allow_large_images, workers, engine,
            ray_address, gpus_per_worker, wait, drop_cross_split_duplicates, commit_every, shard, views, view_seed,
            cache_dir, as_json):
    """Extract bottleneck features of every image in DATA_DIR into a cache (only what is missing)."""
    from pipeline.data.images import DEFAULT_MAX_PIXELS
    from pipeline.extract.run import run_extract

    options = ExtractOptions(
        backbone=backbone, layer=layer, input_size=input_size, resize=resize, pool=pool, precision=precision,
        weights=weights, store_dtype=store_dtype, batch_size=batch_size,
        workers=workers if engine == "local" else None, layout=layout,
        name=name, valid_fraction=valid_fraction, test_fraction=test_fraction, split_seed=split_seed,
        strict=strict, max_pixels=None if allow_large_images else DEFAULT_MAX_PIXELS, wait_for_lock=wait,
        drop_cross_split_duplicates=drop_cross_split_duplicates,
        commit_rows=commit_every,
        shard=shard,
        views=views,
        view_seed=view_seed,
        engine=engine, ray_address=ray_address, gpus_per_worker=gpus_per_worker,
        ray_workers=workers if engine == "ray" else None,
    )
    progress = ExtractProgress()
    try:
        summary = run_extract(data_dir, cache_dir, options, progress=progress)
    finally:
        progress.close()
    if not as_json:
        print_extract_summary(summary)
    return summary.to_dict()


def _ray_timing(summary) -> str:
    """Ray's timings: its start-up (starting Ray, actors building their backbones) dwarfs a small run's rows."""
    actors = f"{summary.ray_workers} Ray actor{'' if summary.ray_workers == 1 else 's'}"
    return (f"{actors}; first rows back after {summary.startup_seconds:.1f} s, "
            f"the last {summary.forward_seconds:.1f} s later")


def print_extract_summary(summary):
    splits = ", ".join(f"{split} {summary.split_counts.get(split, 0)}" for split in ("train", "valid", "test"))
    shape = "x".join(str(d) for d in summary.feature_shape)
    rate = f", {summary.images_per_second:.1f} {'rows' if summary.views else 'img'}/s" if summary.extracted else ""
    shard = f", shard {summary.shard}" if summary.shard else ""
    click.echo(f"Dataset    {summary.dataset} ({summary.layout} layout{shard}), {summary.classes} classes")
    click.echo(f"Images     {summary.images} usable: {splits}")
    rows = "rows" if summary.views else ""
    click.echo(f"Features   {summary.extracted} {rows + ' ' if rows else ''}extracted, {summary.reused} reused from "
               f"the cache  [{shape}]")
    if summary.views:
        click.echo(f"Views      {summary.views}")
    click.echo(f"Weights    {summary.weights}")
    click.echo(f"Precision  {summary.precision}")
    timing = (_ray_timing(summary) if summary.engine == "ray" and summary.extracted
              else f"forward pass {summary.forward_seconds:.1f} s{rate}")
    click.echo(f"Time       {summary.seconds:.1f} s ({timing})")
    if summary.failures:
        click.echo(f"Failures   {len(summary.failures)} files skipped (recorded in the cache):")
        for failure in summary.failures[:FAILURES_SHOWN]:
            click.echo(f"  {display_path(failure['path'])}: {failure['reason']}")
        if len(summary.failures) > FAILURES_SHOWN:
            click.echo(f"  ... and {len(summary.failures) - FAILURES_SHOWN} more (see `cache show` or --json)")
    for note in summary.notes:
        click.echo(f"Note       {display_text(note)}")
    click.echo(f"Cache      {summary.cache_path}{'' if summary.wrote_cache else '  (unchanged)'}")




@click.command("inspect")
@click.argument("data_dir", type=click.Path(path_type=Path))
@layout_option
@click.option("--valid-fraction", type=click.FloatRange(0, 1, max_open=True), default=DEFAULT_VALID_FRACTION,
              show_default=True, help="Share of unsplit images carved into validation, as extract would.")
@click.option("--test-fraction", type=click.FloatRange(0, 1, max_open=True), default=DEFAULT_TEST_FRACTION,
              show_default=True, help="Share of unsplit images carved into test, as extract would.")
@click.option("--split-seed", type=limits.SEED, default=DEFAULT_SPLIT_SEED, show_default=True,
              help="Seed of the content-hash split assignment.")
@click.option("--workers", type=limits.WORKERS, default=None, help="Decoding threads (default: CPU cores).")
@json_option
@command_body
def inspect_command(data_dir, layout, valid_fraction, test_fraction, split_seed, workers, as_json):
    """Check DATA_DIR without a model: layout, classes, split counts, unreadable files, duplicates."""
    from pipeline.data.inspection import inspect_dataset

    progress = ExtractProgress("decoding")
    try:
        report = inspect_dataset(data_dir, layout, valid_fraction, test_fraction, split_seed, workers,
                                 progress=progress)
    finally:
        progress.close()
    if not as_json:
        _print_inspect_report(report)
    return report.to_dict()


def _print_inspect_report(report):
    from pipeline.data.inspection import imbalance_text

    splits = [split for split in ("train", "valid", "test") if split in report.class_counts]
    click.echo(f"Dataset    {report.root} ({report.layout} layout)")
    counts = ", ".join(f"{split} {report.split_counts.get(split, 0)}" for split in splits)
    click.echo(f"Images     {report.images} usable: {counts}")
    click.echo(f"Classes    {len(report.classes)}")
    for task, names in report.extra_targets.items():
        click.echo(f"Extra      {task}: {', '.join(names)}")
    width = max([len(name) for name in report.classes] + [5])
    click.echo(f"  {'class':<{width}} " + " ".join(f"{s:>6}" for s in splits) + f" {'total':>6}")
    for name in report.classes:
        counts = [report.class_counts[s][name] for s in splits]
        click.echo(f"  {name:<{width}} " + " ".join(f"{c:>6}" for c in counts) + f" {sum(counts):>6}")
    for split in splits:
        click.echo(f"Imbalance  {split}: largest/smallest class "
                   f"{imbalance_text(report.imbalance[split], len(report.classes))}")
    echo_list("Unreadable", report.unreadable, lambda f: f"{display_path(f['path'])}: {f['reason']}")
    echo_list("Formats", report.format_mismatches,
               lambda f: f"{display_path(f['path'])}: {f['format']} data behind this extension "
                                 "(decoded by content here; other tools may reject it)")
    duplicates = report.duplicates
    describe = lambda g: " = ".join(f"{display_path(c['path'])} ({c['split']}, {c['label']})" for c in g["copies"])  # noqa: E731
    echo_list("Leakage", duplicates["cross_split"], describe,
               "identical images in two splits (extract --drop-cross-split-duplicates keeps the earliest copy)")
    echo_list("Conflicts", duplicates["conflicts"], describe, "identical images under different labels")
    echo_list("Repeats", duplicates["repeats"], describe, "identical images within one split and class")
    for note in report.notes:
        click.echo(f"Note       {display_text(note)}")
    click.echo(f"Time       {report.seconds:.1f} s")


#: The commands this module adds to the group.
COMMANDS = (inspect_command, extract)
