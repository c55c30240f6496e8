"""Command-line interface: `python cli.py COMMAND ...` or, once installed, `bottleneck COMMAND ...`.

This is the only module that reads arguments or prints. Every command takes `--json`, which
prints exactly one JSON object on stdout (anything else goes to stderr), and `--cache-dir`
(default `cache`, or the BOTTLENECK_CACHE_DIR environment variable). User mistakes end with a
one-paragraph message and exit status 1 (2 for bad options), never a traceback; set
BOTTLENECK_DEBUG=1 to see tracebacks anyway.
"""

from __future__ import annotations

import contextlib
import functools
import json
import logging
import os
import signal
import sys
import time
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")  # TensorFlow C++ chatter; Python errors still raise

import click  # noqa: E402  (after the environment is set for TensorFlow)

from pipeline.backbones.registry import BACKBONES  # noqa: E402
from pipeline.errors import PipelineError  # noqa: E402
from pipeline.extract.run import DEFAULT_BATCH_SIZE, ExtractOptions  # noqa: E402
from pipeline.heads.registry import HEAD_HELP, HEAD_NAMES  # noqa: E402
from pipeline.data.images import RESIZE_POLICIES  # noqa: E402
from pipeline.data.layouts import layout_names  # noqa: E402
from pipeline.backbones.precision import PRECISIONS  # noqa: E402
from pipeline.cache.key import POOLINGS, STORE_DTYPES  # noqa: E402
from pipeline.data.splits import DEFAULT_SPLIT_SEED, DEFAULT_TEST_FRACTION, DEFAULT_VALID_FRACTION  # noqa: E402

CACHE_DIR_ENV = "BOTTLENECK_CACHE_DIR"
DEBUG_ENV = "BOTTLENECK_DEBUG"
DEFAULT_CACHE_DIR = "cache"
EXIT_INTERRUPTED = 130
_FAILURES_SHOWN = 10


# --------------------------------------------------------------------------------------------
# Shared plumbing


def json_option(function):
    return click.option("--json", "as_json", is_flag=True, help="Print one JSON object on stdout instead of text.")(function)


def cache_dir_option(function):
    return click.option(
        "--cache-dir", type=click.Path(file_okay=False, path_type=Path), envvar=CACHE_DIR_ENV,
        default=DEFAULT_CACHE_DIR, show_default=True, show_envvar=True,
        help="Directory holding feature caches, heads and converted weights.",
    )(function)


def command_body(function):
    """Run a command: JSON envelope for --json, clean messages for user errors and interrupts."""
    @functools.wraps(function)
    def wrapper(*args, as_json: bool = False, **kwargs):
        try:
            if not as_json:
                function(*args, as_json=False, **kwargs)
                return
            with contextlib.redirect_stdout(sys.stderr):
                result = function(*args, as_json=True, **kwargs)
            click.echo(json.dumps({"ok": True, **(result or {})}, default=str))
        except PipelineError as error:
            _fail(error, as_json, exit_code=1)
        except ValueError as error:
            if os.environ.get(DEBUG_ENV):
                raise
            _fail(error, as_json, exit_code=2)
        except KeyboardInterrupt:
            message = "interrupted: finished work is saved; run the same command again to resume"
            if as_json:
                click.echo(json.dumps({"ok": False, "error": message}))
            else:
                click.echo(f"\n{message}", err=True)
            sys.exit(EXIT_INTERRUPTED)
    return wrapper


def _fail(error: Exception, as_json: bool, exit_code: int):
    if as_json:
        click.echo(json.dumps({"ok": False, "error": str(error)}))
        sys.exit(exit_code)
    if exit_code == 2:
        raise click.UsageError(str(error))
    raise click.ClickException(str(error))


class ExtractProgress:
    """A progress bar on stderr with images per second, fed by `run_extract(progress=...)`."""

    def __init__(self, label: str = "extracting"):
        self.label = label
        self.bar = None
        self.done = 0
        self.started = None

    def __call__(self, done: int, total: int):
        if self.bar is None:
            self.started = time.perf_counter()
            self.bar = click.progressbar(length=total, label=self.label, file=sys.stderr, show_pos=True,
                                         item_show_func=self._rate)
            self.bar.__enter__()
        self.bar.update(done - self.done)
        self.done = done

    def _rate(self, _item):
        elapsed = time.perf_counter() - (self.started or time.perf_counter())
        return f"{self.done / elapsed:.1f} img/s" if elapsed > 0 and self.done else None

    def close(self):
        if self.bar is not None:
            self.bar.__exit__(None, None, None)
            self.bar = None


def display_path(path: str) -> str:
    """A file name for text output: bytes that are not UTF-8 (kept as surrogate escapes) shown as \\xNN."""
    return path.encode("utf-8", "surrogateescape").decode("utf-8", "backslashreplace")


def _raise_keyboard_interrupt(signum, frame):
    raise KeyboardInterrupt


class JsonAwareGroup(click.Group):
    """A click group whose usage errors (bad options, missing files) also honour `--json`.

    click reports those before a command runs, as text on stderr; with `--json` among the
    arguments they become the same one-object answer as every other failure, on stdout, with
    click's exit status (2).
    """

    def main(self, args=None, **kwargs):
        argv = list(sys.argv[1:] if args is None else args)
        if "--json" not in argv:
            return super().main(args=argv, **kwargs)
        try:
            return super().main(args=argv, standalone_mode=False, **kwargs)
        except click.ClickException as error:
            click.echo(json.dumps({"ok": False, "error": error.format_message()}))
            sys.exit(error.exit_code)
        except click.Abort:
            click.echo(json.dumps({"ok": False, "error": "aborted"}))
            sys.exit(1)


@click.group(cls=JsonAwareGroup, context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100})
@click.option("-v", "--verbose", is_flag=True, help="Show the library's progress log on stderr.")
def main(verbose: bool):
    """Transfer learning by feature extraction: cache a frozen ImageNet CNN's bottleneck
    features once, then fit and compare many cheap classifier heads on them.

    \b
    Typical use:
      python cli.py extract path/to/dataset          # features -> cache/<name>-vgg16-...h5
      python cli.py fit-head cache/<file>.h5 --head logreg
      python cli.py report cache/<file>.h5
    """
    logging.basicConfig(level=logging.INFO if verbose else logging.WARNING, stream=sys.stderr,
                        format="%(levelname)s %(name)s: %(message)s")
    signal.signal(signal.SIGTERM, _raise_keyboard_interrupt)  # clean shutdown, like Ctrl-C


def _cache_argument(function):
    return click.argument("cache", required=False, type=click.Path(exists=True, path_type=Path))(function)


def _resolve_cache(cache: Path | None, cache_dir: Path) -> Path:
    from pipeline.cache.format import resolve_cache_argument

    return resolve_cache_argument(cache if cache is not None else cache_dir)


def _extract_options(function):
    options = [
        click.option("--backbone", type=click.Choice(list(BACKBONES)), default="vgg16", show_default=True,
                     help="ImageNet backbone from keras.applications."),
        click.option("--layer", default=None, help="Feature layer (default: the backbone's bottleneck, e.g. block5_pool)."),
        click.option("--input-size", type=click.IntRange(min=1), default=None,
                     help="Square input size in pixels (default: the backbone's own, e.g. 224)."),
        click.option("--resize", type=click.Choice(RESIZE_POLICIES), default="stretch", show_default=True,
                     help="How images reach the input size: stretch, centre crop, or letterbox pad."),
        click.option("--pool", type=click.Choice(POOLINGS), default="none", show_default=True,
                     help="Spatial pooling before caching (none keeps the full h x w x c maps)."),
        click.option("--batch-size", type=click.IntRange(min=1), default=DEFAULT_BATCH_SIZE, show_default=True,
                     help="Images per forward pass."),
        click.option("--weights", default="imagenet", show_default=True,
                     help="imagenet (verified, offline-capable), none (random, for tests), or a weights file path."),
        click.option("--precision", type=click.Choice(PRECISIONS), default="auto", show_default=True,
                     help="Compute precision; auto picks bfloat16/float16 only where hardware makes it fast."),
        click.option("--store-dtype", type=click.Choice(STORE_DTYPES), default="float32", show_default=True,
                     help="Precision of cached features (float16 halves the cache)."),
    ]
    for option in reversed(options):
        function = option(function)
    return function


def _drop_duplicates_option(function):
    return click.option(
        "--drop-cross-split-duplicates", is_flag=True,
        help="Drop copies of an image found in a later split (keep train, then valid, then test); "
             "they are always reported.",
    )(function)


def _layout_option(function):
    return click.option("--layout", type=click.Choice(["auto"] + layout_names()), default="auto", show_default=True,
                        help="Dataset layout; auto detects it.")(function)


# --------------------------------------------------------------------------------------------
# extract


def _parse_shard(_ctx, _param, value):
    """click callback of `--shard`: "I/N" -> `Shard`."""
    from pipeline.cache.shard import Shard

    if value is None:
        return None
    try:
        return Shard.parse(value)
    except ValueError as error:
        raise click.BadParameter(str(error), param_hint="--shard")


@main.command()
@click.argument("data_dir", type=click.Path(exists=True, path_type=Path))
@_extract_options
@click.option("--layout", type=click.Choice(["auto"] + layout_names()), default="auto", show_default=True,
              help="Dataset layout; auto detects it.")
@click.option("--name", default=None, help="Dataset name used in the cache file name (default: the folder name).")
@click.option("--valid-fraction", type=click.FloatRange(0, 1, max_open=True), default=DEFAULT_VALID_FRACTION,
              show_default=True, help="Share of unsplit images carved into validation when there is no valid split.")
@click.option("--test-fraction", type=click.FloatRange(0, 1, max_open=True), default=DEFAULT_TEST_FRACTION,
              show_default=True, help="Share of unsplit images carved into test when there is no test split.")
@click.option("--split-seed", type=int, default=DEFAULT_SPLIT_SEED, show_default=True,
              help="Seed of the content-hash split assignment.")
@click.option("--strict", is_flag=True, help="Fail before extracting if any image cannot be read.")
@click.option("--allow-large-images", is_flag=True, help="Accept images above the decompression-bomb pixel limit.")
@click.option("--workers", type=click.IntRange(min=1), default=None, help="Decoding threads (default: CPU cores).")
@click.option("--wait", is_flag=True, help="If another extract is writing this cache, wait for it instead of failing.")
@_drop_duplicates_option
@click.option("--commit-every", type=click.IntRange(min=1), default=None,
              help="Save finished rows to disk every N images (default: every 32 MB of features or 30 s).")
@click.option("--shard", default=None, metavar="I/N", callback=_parse_shard,
              help="Extract only shard I of N (whole batches dealt round robin) into a shard cache; join the "
                   "shard caches with `merge`. Use the same --batch-size for every shard.")
@cache_dir_option
@json_option
@command_body
def extract(data_dir, backbone, layer, input_size, resize, pool, batch_size, weights, precision, store_dtype,
            layout, name, valid_fraction, test_fraction, split_seed, strict, allow_large_images, workers, wait,
            drop_cross_split_duplicates, commit_every, shard, cache_dir, as_json):
    """Extract bottleneck features of every image in DATA_DIR into a cache (only what is missing)."""
    from pipeline.extract.run import run_extract
    from pipeline.data.images import DEFAULT_MAX_PIXELS

    options = ExtractOptions(
        backbone=backbone, layer=layer, input_size=input_size, resize=resize, pool=pool, precision=precision,
        weights=weights, store_dtype=store_dtype, batch_size=batch_size, workers=workers, layout=layout,
        name=name, valid_fraction=valid_fraction, test_fraction=test_fraction, split_seed=split_seed,
        strict=strict, max_pixels=None if allow_large_images else DEFAULT_MAX_PIXELS, wait_for_lock=wait,
        drop_cross_split_duplicates=drop_cross_split_duplicates,
        commit_rows=commit_every,
        shard=shard,
    )
    progress = ExtractProgress()
    try:
        summary = run_extract(data_dir, cache_dir, options, progress=progress)
    finally:
        progress.close()
    if not as_json:
        _print_extract_summary(summary)
    return summary.to_dict()


def _print_extract_summary(summary):
    splits = ", ".join(f"{split} {summary.split_counts.get(split, 0)}" for split in ("train", "valid", "test"))
    shape = "x".join(str(d) for d in summary.feature_shape)
    rate = f", {summary.images_per_second:.1f} img/s" if summary.extracted else ""
    shard = f", shard {summary.shard}" if summary.shard else ""
    click.echo(f"Dataset    {summary.dataset} ({summary.layout} layout{shard}), {summary.classes} classes")
    click.echo(f"Images     {summary.images} usable: {splits}")
    click.echo(f"Features   {summary.extracted} extracted, {summary.reused} reused from the cache  [{shape}]")
    click.echo(f"Weights    {summary.weights}")
    click.echo(f"Precision  {summary.precision}")
    click.echo(f"Time       {summary.seconds:.1f} s (forward pass {summary.forward_seconds:.1f} s{rate})")
    if summary.failures:
        click.echo(f"Failures   {len(summary.failures)} files skipped (recorded in the cache):")
        for failure in summary.failures[:_FAILURES_SHOWN]:
            click.echo(f"  {display_path(failure['path'])}: {failure['reason']}")
        if len(summary.failures) > _FAILURES_SHOWN:
            click.echo(f"  ... and {len(summary.failures) - _FAILURES_SHOWN} more (see `cache show` or --json)")
    for note in summary.notes:
        click.echo(f"Note       {note}")
    click.echo(f"Cache      {summary.cache_path}{'' if summary.wrote_cache else '  (unchanged)'}")


@main.command()
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


# --------------------------------------------------------------------------------------------
# datasets: inspect, import-npz


@main.command("inspect")
@click.argument("data_dir", type=click.Path(exists=True, path_type=Path))
@_layout_option
@click.option("--valid-fraction", type=click.FloatRange(0, 1, max_open=True), default=DEFAULT_VALID_FRACTION,
              show_default=True, help="Share of unsplit images carved into validation, as extract would.")
@click.option("--test-fraction", type=click.FloatRange(0, 1, max_open=True), default=DEFAULT_TEST_FRACTION,
              show_default=True, help="Share of unsplit images carved into test, as extract would.")
@click.option("--split-seed", type=int, default=DEFAULT_SPLIT_SEED, show_default=True,
              help="Seed of the content-hash split assignment.")
@click.option("--workers", type=click.IntRange(min=1), default=None, help="Decoding threads (default: CPU cores).")
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
        item = report.imbalance[split]
        empty = f"; no images of {len(item['empty_classes'])} classes" if item["empty_classes"] else ""
        click.echo(f"Imbalance  {split}: largest/smallest class {item['ratio']:.2f} ({item['largest']['class']} "
                   f"{item['largest']['count']}, {item['smallest']['class']} {item['smallest']['count']}){empty}")
    _echo_list("Unreadable", report.unreadable, lambda f: f"{f['path']}: {f['reason']}")
    _echo_list("Formats", report.format_mismatches,
               lambda f: f"{f['path']}: {f['format']} data behind this extension (decoded by content here; "
                                 "other tools may reject it)")
    duplicates = report.duplicates
    describe = lambda g: " = ".join(f"{c['path']} ({c['split']}, {c['label']})" for c in g["copies"])  # noqa: E731
    _echo_list("Leakage", duplicates["cross_split"], describe,
               "identical images in two splits (extract --drop-cross-split-duplicates keeps the earliest copy)")
    _echo_list("Conflicts", duplicates["conflicts"], describe, "identical images under different labels")
    _echo_list("Repeats", duplicates["repeats"], describe, "identical images within one split and class")
    for note in report.notes:
        click.echo(f"Note       {note}")
    click.echo(f"Time       {report.seconds:.1f} s")


def _echo_list(title: str, items: list, line, what: str = "files") -> None:
    if not items:
        click.echo(f"{title:<10} none")
        return
    click.echo(f"{title:<10} {len(items)} {what}:")
    for item in items[:_FAILURES_SHOWN]:
        click.echo(f"  {line(item)}")
    if len(items) > _FAILURES_SHOWN:
        click.echo(f"  ... and {len(items) - _FAILURES_SHOWN} more (see --json)")


@main.command("import-npz")
@click.argument("npz", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option("--labels", "labels_dir", required=True, type=click.Path(exists=True, file_okay=False, path_type=Path),
              help="The dogImages folder (train/ valid/ test/) the npz was computed from.")
@click.option("--name", default=None, help="Dataset name used in the cache file name (default: the npz file name).")
@_drop_duplicates_option
@cache_dir_option
@json_option
@command_body
def import_npz_command(npz, labels_dir, name, drop_cross_split_duplicates, cache_dir, as_json):
    """Turn the classic DogVGG16Data.npz bottleneck file into a cache, labelled from the dogImages folder."""
    from pipeline.interop.npz_import import import_npz

    summary = import_npz(npz, labels_dir, cache_dir, name, drop_cross_split_duplicates)
    if not as_json:
        rows = ", ".join(f"{split} {count}" for split, count in summary.rows.items())
        click.echo(f"Imported   {summary.npz}: {rows} rows  [{'x'.join(str(d) for d in summary.feature_shape)}]")
        click.echo(f"Labels     {summary.labels_dir}: {summary.images} images, {summary.classes} classes")
        _echo_list("Failures", summary.failures, lambda f: f"{f['path']}: {f['reason']}")
        for note in summary.notes:
            click.echo(f"Note       {note}")
        click.echo(f"Cache      {summary.cache_path}")
        click.echo(f"Key        {summary.feature_key[:16]} (imported: heads fitted on it refuse other features)")
    return summary.to_dict()


# --------------------------------------------------------------------------------------------
# heads


@main.command("fit-head")
@_cache_argument
@click.option("--head", "kind", type=click.Choice(HEAD_NAMES), required=True,
              help="Head to fit: " + "; ".join(f"{k}: {d}" for k, d in HEAD_HELP.items()) + ".")
@click.option("--recipe", type=click.Choice(["default", "classic"]), default=None,
              help="gap-dense only: classic reproduces the dog-breed notebook; default trains a better head.")
@cache_dir_option
@json_option
@command_body
def fit_head_command(cache, kind, recipe, cache_dir, as_json):
    """Fit a head on CACHE (a cache file, or a directory holding one; default --cache-dir)."""
    from pipeline.heads.metrics import summary_line
    from pipeline.heads.fitting import fit_head

    if recipe is not None and kind != "gap-dense":
        raise click.BadParameter("--recipe applies to --head gap-dense only", param_hint="--recipe")
    report = fit_head(_resolve_cache(cache, cache_dir), kind, recipe)
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


@main.command()
@_cache_argument
@cache_dir_option
@json_option
@command_body
def report(cache, cache_dir, as_json):
    """Leaderboard of every head fitted on CACHE, best validation accuracy first."""
    from pipeline.heads.leaderboard import format_table, leaderboard

    path = _resolve_cache(cache, cache_dir)
    rows = leaderboard(path)
    if not as_json:
        if rows:
            click.echo(format_table(rows))
        else:
            click.echo(f"No heads fitted on {path} yet; run `fit-head {path} --head logreg`.")
    return {"cache": str(path), "heads": rows}


@main.command()
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


# --------------------------------------------------------------------------------------------
# export, quickstart, weights, layers


@main.command("export-npz")
@click.argument("cache", type=click.Path(exists=True, path_type=Path))
@click.argument("out", type=click.Path(dir_okay=False, path_type=Path))
@json_option
@command_body
def export_npz_command(cache, out, as_json):
    """Write CACHE's features to OUT.npz in the classic bottleneck format (keys train, valid, test)."""
    from pipeline.cache.format import resolve_cache_argument
    from pipeline.interop.npz_export import export_npz

    counts = export_npz(resolve_cache_argument(cache), out)
    if not as_json:
        click.echo(f"Wrote {out}: " + ", ".join(f"{split} {n}" for split, n in counts.items()))
    return {"out": str(out), "rows": counts}


@main.command()
@click.option("--precision", type=click.Choice(PRECISIONS), default="auto", show_default=True,
              help="Compute precision of the extraction.")
@click.option("--batch-size", type=click.IntRange(min=1), default=DEFAULT_BATCH_SIZE, show_default=True,
              help="Images per forward pass.")
@cache_dir_option
@json_option
@command_body
def quickstart(precision, batch_size, cache_dir, as_json):
    """The whole pipeline offline on a generated shapes dataset: extract VGG16 features, fit 3 heads."""
    from pipeline.quickstart import QUICKSTART_CLASSES, QUICKSTART_PER_CLASS, run_quickstart
    from pipeline.heads.leaderboard import format_table

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
        _print_extract_summary(result.extract)
        click.echo("")
        click.echo(format_table(result.leaderboard))
        click.echo(f"\nNext: python cli.py predict {result.data_dir}/circle/circle_0000.jpg "
                   f"--head {result.leaderboard[0]['path']}")
    return {"data_dir": result.data_dir, "extract": result.extract.to_dict(),
            "fits": [fit.to_dict() for fit in result.fits], "leaderboard": result.leaderboard}


@main.command()
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
        for row in rows:
            click.echo(f"{row['backbone']}:")
            for source in row["sources"]:
                state = "available" if source["available"] else "missing"
                extra = ""
                if source.get("verified") is not None:
                    extra += "  verified" if source["verified"] else "  NOT ImageNet"
                if source.get("fingerprint"):
                    extra += f"  fingerprint {source['fingerprint'][:16]}"
                click.echo(f"  {source['source']:<22} {state:<10} {source.get('path') or ''}{extra}")
                if source.get("error"):
                    click.echo(f"  {'':<22} {source['error']}")
    return {"backbones": rows}


@main.command()
@click.argument("backbone", type=click.Choice(list(BACKBONES)))
@click.option("--input-size", type=click.IntRange(min=1), default=None, help="Input size (default: the backbone's).")
@json_option
@command_body
def layers(backbone, input_size, as_json):
    """List BACKBONE's layers and output shapes (candidates for extract --layer)."""
    from pipeline.backbones.registry import get_backbone, list_layers

    spec = get_backbone(backbone)
    rows = list_layers(spec, input_size or spec.default_input_size)
    if not as_json:
        for row in rows:
            marker = "  <- default" if row["name"] == spec.default_layer else ""
            click.echo(f"{row['name']:<28} {'x'.join(str(d) for d in row['shape'])}{marker}")
    return {"backbone": backbone, "default_layer": spec.default_layer, "layers": rows}


# --------------------------------------------------------------------------------------------
# cache management


@main.group()
def cache():
    """List, verify and remove feature caches."""


@cache.command("ls")
@cache_dir_option
@json_option
@command_body
def cache_ls(cache_dir, as_json):
    """List the caches in --cache-dir with their dataset, features, size and heads."""
    from pipeline.cache.admin import list_caches

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
            click.echo(f"{row['file']}  {row['dataset']}  {row['backbone']}/{row['layer']}  {row['images']} images, "
                       f"{row['rows']} rows, {row['megabytes']:.1f} MB, {row['heads']} heads"
                       + (f"  (shard {row['shard']}: `merge` the shards to use it)" if row["shard"] else "")
                       + ("  (unfinished extraction pending)" if row["partial"] else ""))
    return {"cache_dir": str(cache_dir), "caches": rows}


@cache.command("show")
@_cache_argument
@cache_dir_option
@json_option
@command_body
def cache_show(cache, cache_dir, as_json):
    """Show a cache's provenance, splits, classes and failures."""
    from pipeline.cache.admin import describe_cache

    details = describe_cache(_resolve_cache(cache, cache_dir))
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
@_cache_argument
@click.option("--quick", is_flag=True, help="Skip re-hashing every feature row.")
@cache_dir_option
@json_option
@command_body
def cache_verify(cache, quick, cache_dir, as_json):
    """Check a cache's structure, provenance and feature-row digests."""
    from pipeline.cache.format import damaged_cache_error, verify_cache

    path = _resolve_cache(cache, cache_dir)
    problems = verify_cache(path, check_rows=not quick)
    if problems:
        raise damaged_cache_error(path, problems)
    if not as_json:
        click.echo(f"{path}: OK")
    return {"cache": str(path), "problems": problems}


@cache.command("rm")
@click.argument("caches", nargs=-1, required=True, type=click.Path(dir_okay=False, path_type=Path))
@click.option("--yes", is_flag=True, help="Do not ask for confirmation.")
@json_option
@command_body
def cache_rm(caches, yes, as_json):
    """Delete CACHES with their unfinished segments, lock files and fitted heads."""
    from pipeline.cache.admin import remove_cache

    if not yes:
        if as_json:
            raise click.UsageError("cache rm --json cannot ask for confirmation; add --yes")
        click.confirm(f"Delete {len(caches)} cache(s) and their heads?", abort=True)
    removed = [remove_cache(path) for path in caches]
    if not as_json:
        for paths in removed:
            click.echo("removed " + ", ".join(paths))
    return {"removed": removed}


if __name__ == "__main__":
    main()
