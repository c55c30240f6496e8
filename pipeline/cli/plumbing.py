"""What every command shares: --json and --cache-dir, clean errors, progress bars, the group class."""

from __future__ import annotations

import contextlib
import functools
import json
import os
import sys
import time
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")  # TensorFlow C++ chatter; Python errors still raise

import click

from pipeline.backbones.precision import PRECISIONS
from pipeline.backbones.registry import BACKBONES
from pipeline.cache.key import POOLINGS, STORE_DTYPES
from pipeline.cli import limits
from pipeline.data.images import RESIZE_POLICIES
from pipeline.data.layouts import layout_names
from pipeline.errors import (
    EXIT_BUG,
    EXIT_PROBLEM,
    EXIT_USAGE,
    PipelineError,
    UsageError,
)
from pipeline.extract.options import DEFAULT_BATCH_SIZE

CACHE_DIR_ENV = "BOTTLENECK_CACHE_DIR"
DEBUG_ENV = "BOTTLENECK_DEBUG"
DEFAULT_CACHE_DIR = "cache"
EXIT_INTERRUPTED = 130
FAILURES_SHOWN = 10


def json_option(function):
    return click.option("--json", "as_json", is_flag=True,
                        help="Print one JSON object on stdout instead of text.")(function)


def cache_dir_option(function):
    return click.option(
        "--cache-dir", type=click.Path(file_okay=False, path_type=Path), envvar=CACHE_DIR_ENV,
        default=DEFAULT_CACHE_DIR, show_default=True, show_envvar=True,
        help="Directory holding feature caches, heads and converted weights.",
    )(function)


def command_body(function):
    """Run a command: JSON envelope for --json, clean messages for user errors, interrupts and bugs.

    A `PipelineError` is the user's to fix (exit 1; a `UsageError` is a bad argument, exit 2). Any
    other exception is a bug: one line says so and how to see the traceback (exit `EXIT_BUG`);
    with BOTTLENECK_DEBUG=1 it propagates with its traceback.
    """
    @functools.wraps(function)
    def wrapper(*args, as_json: bool = False, **kwargs):
        try:
            if not as_json:
                function(*args, as_json=False, **kwargs)
                return
            with contextlib.redirect_stdout(sys.stderr):
                result = function(*args, as_json=True, **kwargs)
            click.echo(json.dumps({"ok": True, **(result or {})}, default=str))
        except UsageError as error:
            _fail(str(error), as_json, EXIT_USAGE)
        except PipelineError as error:
            _fail(str(error), as_json, EXIT_PROBLEM)
        except KeyboardInterrupt:
            message = "interrupted: finished work is saved; run the same command again to resume"
            if as_json:
                click.echo(json.dumps({"ok": False, "error": message}))
            else:
                click.echo(f"\n{message}", err=True)
            sys.exit(EXIT_INTERRUPTED)
        except (click.ClickException, click.Abort, SystemExit):
            raise
        except Exception as error:
            if os.environ.get(DEBUG_ENV):
                raise
            _fail(bug_message(error), as_json, EXIT_BUG)
    return wrapper


def bug_message(error: BaseException) -> str:
    """What the user sees for an unexpected exception: that it is a bug, and how to report it."""
    detail = (str(error).strip().splitlines() or [""])[0]
    return (f"internal error, a bug in this tool: {type(error).__name__}: {detail}. Nothing you did caused it; "
            f"run the command again with {DEBUG_ENV}=1 to see the traceback, and report it with that traceback")


def _fail(message: str, as_json: bool, exit_code: int):
    if as_json:
        click.echo(json.dumps({"ok": False, "error": message}))
        sys.exit(exit_code)
    if exit_code == EXIT_USAGE:
        raise click.UsageError(message)
    click.echo(f"Error: {message}", err=True)
    sys.exit(exit_code)


class ExtractProgress:
    """A progress bar on stderr with a rate (images per second by default), fed by `progress(done, total)`."""

    def __init__(self, label: str = "extracting", unit: str = "img/s"):
        self.label = label
        self.unit = unit
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
        return f"{self.done / elapsed:.1f} {self.unit}" if elapsed > 0 and self.done else None

    def close(self):
        if self.bar is not None:
            self.bar.__exit__(None, None, None)
            self.bar = None


def display_path(path: str) -> str:
    """A file name for text output: bytes that are not UTF-8 (kept as surrogate escapes) shown as \\xNN."""
    return path.encode("utf-8", "surrogateescape").decode("utf-8", "backslashreplace")


def raise_keyboard_interrupt(signum, frame):
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


def cache_argument(function):
    return click.argument("cache", required=False, type=click.Path(exists=True, path_type=Path))(function)


def resolve_cache(cache: Path | None, cache_dir: Path) -> Path:
    from pipeline.cache.format import resolve_cache_argument

    return resolve_cache_argument(cache if cache is not None else cache_dir)


def extract_options(function):
    options = [
        click.option("--backbone", type=click.Choice(list(BACKBONES)), default="vgg16", show_default=True,
                     help="ImageNet backbone from keras.applications."),
        click.option("--layer", default=None,
                     help="Feature layer (default: the backbone's bottleneck, e.g. block5_pool)."),
        click.option("--input-size", type=limits.INPUT_SIZE, default=None,
                     help="Square input size in pixels (default: the backbone's own, e.g. 224)."),
        click.option("--resize", type=click.Choice(RESIZE_POLICIES), default="stretch", show_default=True,
                     help="How images reach the input size: stretch, centre crop, or letterbox pad."),
        click.option("--pool", type=click.Choice(POOLINGS), default="none", show_default=True,
                     help="Spatial pooling before caching (none keeps the full h x w x c maps)."),
        click.option("--batch-size", type=limits.BATCH_SIZE, default=DEFAULT_BATCH_SIZE, show_default=True,
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


def drop_duplicates_option(function):
    return click.option(
        "--drop-cross-split-duplicates", is_flag=True,
        help="Drop copies of an image found in a later split (keep train, then valid, then test); "
             "they are always reported.",
    )(function)


def layout_option(function):
    return click.option("--layout", type=click.Choice(["auto"] + layout_names()), default="auto", show_default=True,
                        help="Dataset layout; auto detects it.")(function)


def echo_list(title: str, items: list, line, what: str = "files") -> None:
    if not items:
        click.echo(f"{title:<10} none")
        return
    click.echo(f"{title:<10} {len(items)} {what}:")
    for item in items[:FAILURES_SHOWN]:
        click.echo(f"  {line(item)}")
    if len(items) > FAILURES_SHOWN:
        click.echo(f"  ... and {len(items) - FAILURES_SHOWN} more (see --json)")


