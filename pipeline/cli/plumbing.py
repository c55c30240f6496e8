"""What every command shares: --json and --cache-dir, CACHE specs, clean errors, progress (a bar, or plain
lines off a terminal), the group class."""

from __future__ import annotations

import contextlib
import functools
import json
import os
import sys
import time
import unicodedata
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")  # TensorFlow C++ chatter; Python errors still raise

import click

from pipeline.backbones.precision import PRECISIONS
from pipeline.backbones.registry import BACKBONES
from pipeline.cache.key import EXTRACT_POOLINGS, STORE_DTYPES
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
#: Unicode categories escaped in file names shown as text: control (Cc) and format (Cf, e.g. bidi overrides).
_UNPRINTED_CATEGORIES = ("Cc", "Cf")


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
    click.echo(f"Error: {display_text(message)}", err=True)
    sys.exit(exit_code)


#: Seconds between two plain progress lines when stderr is not a terminal (a log file, a CI job).
PLAIN_PROGRESS_SECONDS = 5.0


class ExtractProgress:
    """Progress on stderr with a rate (images per second by default), fed by `progress(done, total)`.

    On a terminal it is a bar. Anywhere else (a log file, a pipe, a CI job) a bar would be redrawn
    into nothing readable, so it prints a plain line at the first update, then at most every
    `PLAIN_PROGRESS_SECONDS`, and at the end: "extracting 120/8351 (1.4%), 3.1 img/s, about 44 min left".
    The rate counts from the first update (the first one comes after a whole batch, whose time is unknown),
    so the first line shows no rate and no time left.
    """

    def __init__(self, label: str = "extracting", unit: str = "img/s", stream=None, clock=time.perf_counter):
        self.label = label
        self.unit = unit
        self.stream = stream
        self.clock = clock
        self.bar = None
        self.done = 0
        self.total = 0
        self.started = None
        self.done_at_start = 0
        self.last_line = None

    def __call__(self, done: int, total: int):
        stream = self.stream if self.stream is not None else sys.stderr
        if self.started is None:
            self.started, self.done_at_start = self.clock(), done
        if not _is_terminal(stream):
            self.done, self.total = done, total
            now = self.clock()
            if self.last_line is None or now - self.last_line >= PLAIN_PROGRESS_SECONDS or done >= total:
                self._plain_line(stream, now)
            return
        if self.bar is None:
            self.bar = click.progressbar(length=total, label=self.label, file=stream, show_pos=True,
                                         item_show_func=self._rate)
            self.bar.__enter__()
        self.bar.update(done - self.done)
        self.done = done

    def _plain_line(self, stream, now: float) -> None:
        if self.last_line is not None and self.last_line == now:
            return
        self.last_line = now
        share = f" ({self.done / self.total:.1%})" if self.total else ""
        rate = self._rate(None)
        elapsed = now - self.started
        left, timed = "", self.done - self.done_at_start
        if timed > 0 and self.total > self.done and elapsed > 0:
            left = f", about {_duration((self.total - self.done) * elapsed / timed)} left"
        click.echo(f"{self.label} {self.done}/{self.total}{share}" + (f", {rate}" if rate else "") + left, file=stream)

    def _rate(self, _item):
        elapsed = self.clock() - (self.started if self.started is not None else self.clock())
        timed = self.done - self.done_at_start
        return f"{timed / elapsed:.1f} {self.unit}" if elapsed > 0 and timed > 0 else None

    def close(self):
        if self.bar is not None:
            self.bar.__exit__(None, None, None)
            self.bar = None


def _is_terminal(stream) -> bool:
    isatty = getattr(stream, "isatty", None)
    return bool(isatty and isatty())


_MINUTE, _HOUR = 60.0, 3600.0
#: A duration is shown in the next larger unit from this many of it (90 s -> "2 min").
_UNIT_SWITCH = 1.5


def _duration(seconds: float) -> str:
    """'45 s', '12 min', '3.5 h': how long is left, roughly."""
    if seconds < _UNIT_SWITCH * _MINUTE:
        return f"{seconds:.0f} s"
    if seconds < _UNIT_SWITCH * _HOUR:
        return f"{seconds / _MINUTE:.0f} min"
    return f"{seconds / _HOUR:.1f} h"


def display_path(path: str) -> str:
    """A file name for text output: bytes that are not UTF-8 (kept as surrogate escapes) shown as \\xNN,
    and control and bidirectional-format characters (ANSI escape sequences, newlines) as \\x1b, \\n,
    \\u202e..., so a crafted name can neither drive the terminal nor fake lines of output."""
    text = str(path).encode("utf-8", "surrogateescape").decode("utf-8", "backslashreplace")
    return "".join(_escaped(c) for c in text)


def display_text(text: str) -> str:
    """A message for text output: like `display_path`, but its own line breaks are kept."""
    return "\n".join(display_path(line) for line in str(text).split("\n"))


def _escaped(character: str) -> str:
    if unicodedata.category(character) in _UNPRINTED_CATEGORIES:
        return character.encode("unicode_escape").decode("ascii")
    return character


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
    """An optional CACHE argument: a file, a folder, or a spec (`pipeline.caches.select`); see `resolve_cache`."""
    return click.argument("cache", required=False, metavar="[CACHE]", type=click.Path(path_type=Path))(function)


def resolve_cache(cache: Path | None, cache_dir: Path) -> Path:
    """The cache a CACHE argument names (default: the one --cache-dir holds); `CacheError` when none or several."""
    from pipeline.caches.select import resolve_cache_spec

    return resolve_cache_spec(cache, cache_dir)


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
        click.option("--pool", type=click.Choice(EXTRACT_POOLINGS), default="none", show_default=True,
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


