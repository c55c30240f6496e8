"""What every fuzz test checks, and how many examples it tries.

The reading contract, for every reader of a file the user hands over: it returns a value or
raises `PipelineError` (the CLI's exit 1; `UsageError`, exit 2, for options), never anything
else (exit 70, "a bug in this tool"); it opens no file outside the folders it was given (a canary
file outside them must never be opened); and its peak memory stays bounded.

- Examples: `FUZZ_EXAMPLES` per test, 25 by default (the CI budget: the whole fuzz suite runs in
  about a minute); `BOTTLENECK_FUZZ_EXAMPLES=2000` for a long local run.
- Seeds: derandomized by default, so CI always tries the same examples; set
  `BOTTLENECK_FUZZ_RANDOM=1` to explore new ones (a failure prints the example to replay).
- Opens are watched with an audit hook (`sys.addaudithook`, the "open" event: Python's `open`,
  `os.open`, Pillow and numpy). HDF5 opens files in C, unseen by the hook; readers of HDF5 are
  checked by refusing external storage and links instead (and by the canary's content never
  appearing in what they return).
- Memory is Python's and numpy's allocations (`tracemalloc`), which is where the bombs went.
"""

from __future__ import annotations

import contextlib
import os
import sys
import tracemalloc
from pathlib import Path

from hypothesis import HealthCheck, settings

from pipeline.errors import PipelineError

FUZZ_EXAMPLES = int(os.environ.get("BOTTLENECK_FUZZ_EXAMPLES", "25"))
FUZZ_SETTINGS = settings(
    max_examples=FUZZ_EXAMPLES,
    derandomize=os.environ.get("BOTTLENECK_FUZZ_RANDOM") != "1",
    deadline=None,
    database=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow, HealthCheck.data_too_large],
)
#: Peak Python/numpy memory one read of a small hostile file may take.
MAX_READ_BYTES = 64 * 2**20
#: What the canary file outside the allowed folders holds (so leaks can also be seen in outputs).
CANARY_TEXT = b"canary: this file lies outside every folder the reader was given\n"

_watched: list[Path] = []
_opened: list[str] = []


def _audit(event: str, args) -> None:
    if event == "open" and _watched and args and isinstance(args[0], (str, bytes, os.PathLike)):
        name = os.fsdecode(args[0])
        if any(name == str(path) or Path(name).resolve() == path for path in _watched):
            _opened.append(name)


sys.addaudithook(_audit)


def make_canary(folder: Path) -> Path:
    """A file outside the reader's folders that hostile inputs point at; it must never be opened."""
    folder.mkdir(parents=True, exist_ok=True)
    canary = folder / "secret.txt"
    canary.write_bytes(CANARY_TEXT)
    return canary.resolve()


@contextlib.contextmanager
def contract(*canaries: Path, max_bytes: int = MAX_READ_BYTES):
    """Run a read under the contract: PipelineError is fine; canaries unopened; memory bounded.

    Yields a dict whose "refused" is set to the `PipelineError` when the reader refused.
    """
    outcome: dict = {"refused": None}
    _watched[:] = list(canaries)
    _opened.clear()
    tracemalloc.start()
    try:
        yield outcome
    except PipelineError as error:
        outcome["refused"] = error
        assert str(error).strip(), "a refusal must say why"
    finally:
        _, peak = tracemalloc.get_traced_memory()
        tracemalloc.stop()
        opened, _watched[:] = list(_opened), []
    assert not opened, f"opened a file outside the allowed folders: {opened}"
    assert peak <= max_bytes, f"peak memory {peak / 1e6:.0f} MB is over {max_bytes / 1e6:.0f} MB"
