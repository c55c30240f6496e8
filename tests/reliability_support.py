"""Helpers shared by the tests/test_reliability_*.py files: reading rows back, running the CLI."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import h5py
from conftest import REPO_ROOT

from pipeline.atomic import TEMP_MARK
from pipeline.cache.format import find_caches, partial_dir_of
from pipeline.cache.rows import read_row_addresses

#: Seconds a CLI subprocess may take before a test gives up on it (TensorFlow import included).
SUBPROCESS_TIMEOUT = 300


def rows_by_sha(path: Path) -> dict[str, bytes]:
    """{sha256: raw bytes of its feature row} of a cache or segment file."""
    with h5py.File(path, "r") as handle:
        features = handle["features"][()]
        return {sha.decode(): features[i].tobytes() for i, sha in enumerate(handle["row_sha256"][()])}


def rows_by_address(path: Path) -> dict[str, bytes]:
    """{row address: raw bytes of the row} of a cache: the sha256, plus the view number for augmented views."""
    with h5py.File(path, "r") as handle:
        features = handle["features"][()]
        return {address: features[i].tobytes() for i, address in enumerate(read_row_addresses(handle))}


def only_cache(cache_dir: Path) -> Path | None:
    """The single cache file in `cache_dir`, or None when no run has finished yet."""
    caches = find_caches(cache_dir)
    assert len(caches) <= 1, caches
    return caches[0] if caches else None


def whole_segment_files(partial_dir: Path) -> list[Path]:
    """The segment files in a `<cache>.partial/` folder, without the temporary file of a write in flight.

    A killed run can leave that temporary file (`.<name>.tmp<pid>.h5`) half-written; the next run
    deletes it, and no reader may take it for a segment.
    """
    return sorted(p for p in partial_dir.glob("*.h5") if TEMP_MARK not in p.name) if partial_dir.is_dir() else []


def committed_rows(cache_path: Path, key: str) -> dict[str, bytes]:
    """Every row a resumed run would reuse: the cache's and its segments'. Reads only, deletes nothing.

    Fails the test if a segment file (anything in `<cache>.partial/` without a temporary mark)
    is not whole: renaming into place must only ever happen to complete files.
    """
    rows = {}
    partial = partial_dir_of(cache_path)
    for segment in whole_segment_files(partial):
        try:
            with h5py.File(segment, "r") as handle:
                assert handle.attrs["feature_key"] == key, segment
        except OSError as error:
            raise AssertionError(f"segment {segment} is not a whole HDF5 file: {error}") from error
        rows.update(rows_by_sha(segment))
    if cache_path.exists():
        rows.update(rows_by_sha(cache_path))
    return rows


def cli_command(*args) -> list[str]:
    """argv running this checkout's CLI in a fresh interpreter."""
    return [sys.executable, str(REPO_ROOT / "cli.py"), *[str(a) for a in args]]


def cli_env() -> dict:
    """Environment for CLI subprocesses: this checkout's `pipeline` first, quiet TensorFlow."""
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3", PYTHONPATH=str(REPO_ROOT))
    env.pop("BOTTLENECK_DEBUG", None)
    return env


def run_cli(*args, timeout: float = SUBPROCESS_TIMEOUT) -> subprocess.CompletedProcess:
    return subprocess.run(cli_command(*args), cwd=REPO_ROOT, env=cli_env(), capture_output=True, text=True,
                          timeout=timeout)


def patch_h5_writes(monkeypatch, wrap) -> None:
    """Route every atomic HDF5 write (segments and caches) through `wrap(original, final, fill)`."""
    from pipeline.cache import h5file, segments, writer

    original = h5file.write_h5_atomically

    def patched(final, fill):
        return wrap(original, final, fill)

    for module in (segments, writer):
        monkeypatch.setattr(module, "write_h5_atomically", patched)
