"""Reliability, concurrency: one writer per cache, readers never blocked, stale locks impossible.

A real `extract` subprocess holds the lock of its cache while this process tries a second
`extract` on the same cache (fails fast, naming the holder; with --wait it runs afterwards and
reuses every row), extracts another dataset into the same folder, and fits and reports heads
there. A lock holder killed with SIGKILL leaves a lock file that blocks nobody. Readers of a
cache being extended see the previous complete file at every step of the extension.
"""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
from pathlib import Path

import h5py
import pytest
from conftest import CLASS_COLOURS, REPO_ROOT, TINY_BACKBONE_ARGS, TINY_CLI_ARGS, make_dataset, write_image
from reliability_support import cli_command, cli_env, patch_h5_writes, rows_by_sha

from pipeline.cache.format import cache_file_name, lock_path_of, read_cache_info
from pipeline.cache.verify import verify_cache

#: The writer subprocess: 320 images, 2 per batch, so it holds its lock for many seconds.
WRITER_ARGS = (*TINY_BACKBONE_ARGS, "--batch-size", "2", "--valid-fraction", "0.3")
LOCK_TIMEOUT = 240  # seconds to wait for the writer to take its lock (Python start-up under load)


def _wait_for(condition, timeout: float, what: str):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return
        time.sleep(0.02)
    pytest.fail(f"timed out after {timeout} s waiting for {what}")


def _holder_pid(lock_file: Path) -> int | None:
    text = lock_file.read_text() if lock_file.exists() else ""
    return int(text.split()[1]) if text.startswith("pid ") else None


def test_second_extract_fails_fast_or_waits_and_other_caches_are_free(tmp_path, cli):
    writer_data = make_dataset(tmp_path / "big", classes=("cat", "dog", "fox", "owl"), per_class=40)
    other_data = make_dataset(tmp_path / "small")
    cache_dir = tmp_path / "cache"
    first, _ = cli.json(["extract", other_data, *TINY_CLI_ARGS, "--cache-dir", cache_dir])  # also memoises weights

    writer = subprocess.Popen(cli_command("extract", writer_data, *WRITER_ARGS, "--cache-dir", cache_dir, "--json"),
                              cwd=REPO_ROOT, env=cli_env(), stdout=subprocess.PIPE, stderr=subprocess.DEVNULL,
                              text=True)
    try:
        lock_file = lock_path_of(cache_dir / cache_file_name("big", read_cache_info(Path(first["cache_path"])).spec))
        _wait_for(lambda: _holder_pid(lock_file) == writer.pid or writer.poll() is not None, LOCK_TIMEOUT,
                  "the writer to take its lock")
        assert writer.poll() is None, "the writer must still be running for this test to mean anything"

        started = time.monotonic()
        refused, result = cli.json(["extract", writer_data, *WRITER_ARGS, "--cache-dir", cache_dir], expect_ok=False)
        assert result.exit_code == 1
        assert f"is being written by another extract (pid {writer.pid} on" in refused["error"]
        assert "pass --wait" in refused["error"]
        assert writer.poll() is None, (f"the second run failed fast ({time.monotonic() - started:.1f} s), "
                                       "not after the first")

        grown = make_dataset(tmp_path / "other", seed=7)
        separate, _ = cli.json(["extract", grown, *TINY_CLI_ARGS, "--cache-dir", cache_dir])
        fitted, _ = cli.json(["fit-head", first["cache_path"], "--head", "logreg"])
        board, _ = cli.json(["report", first["cache_path"]])
        assert separate["extracted"] == 24 and fitted["metrics"]["test"]["n"] == 12 and len(board["heads"]) == 1
        assert writer.poll() is None, "all of that ran while the writer held its own cache's lock"

        waited, _ = cli.json(["extract", writer_data, *WRITER_ARGS, "--wait", "--cache-dir", cache_dir])
        assert waited["extracted"] == 0 and waited["reused"] == 320, ("--wait ran after the first writer, "
                                                                      "reusing its rows")
        assert verify_cache(Path(waited["cache_path"])) == []
        writer_output, _ = writer.communicate(timeout=120)
        written = json.loads(writer_output)
        assert writer.returncode == 0 and written["extracted"] + written["reused"] == 320
    finally:
        if writer.poll() is None:
            writer.kill()
        writer.wait(timeout=60)


_HOLD_LOCK = """
import sys, time
from pipeline.cache.lock import CacheLock
with CacheLock(sys.argv[1]):
    print("locked", flush=True)
    time.sleep(600)
"""


def test_lock_of_a_killed_holder_blocks_nobody(tiny_dataset, tmp_path, cli):
    cache_dir = tmp_path / "cache"
    first, _ = cli.json(["extract", tiny_dataset, *TINY_CLI_ARGS, "--cache-dir", cache_dir])
    cache = Path(first["cache_path"])
    holder = subprocess.Popen([sys.executable, "-c", _HOLD_LOCK, str(cache)], cwd=REPO_ROOT, env=cli_env(),
                              stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "locked"
        refused, _ = cli.json(["extract", tiny_dataset, *TINY_CLI_ARGS, "--cache-dir", cache_dir], expect_ok=False)
        assert f"pid {holder.pid}" in refused["error"]
    finally:
        holder.send_signal(signal.SIGKILL)
        holder.wait(timeout=60)
    assert f"pid {holder.pid}" in lock_path_of(cache).read_text(), "SIGKILL left the lock file and its text behind"
    again, _ = cli.json(["extract", tiny_dataset, *TINY_CLI_ARGS, "--cache-dir", cache_dir])
    assert again["extracted"] == 0, "the kernel released the dead holder's flock: nothing is stale"


def test_readers_see_the_previous_complete_cache_while_it_is_extended(tiny_dataset, tiny_options, tmp_path,
                                                                      monkeypatch):
    from dataclasses import replace

    from pipeline.extract.run import run_extract
    from pipeline.heads.fitting import fit_head

    cache_dir = tmp_path / "cache"
    first = run_extract(tiny_dataset, cache_dir, tiny_options)
    cache = Path(first.cache_path)
    old_rows = rows_by_sha(cache)
    early_reader = h5py.File(cache, "r")  # a reader that opened the file before the extension started
    for index in range(8):
        write_image(tiny_dataset / "train" / "cat" / f"late_{index}.jpg", CLASS_COLOURS["cat"], seed=700 + index)

    seen = []

    def check_readers(moment: str):
        assert verify_cache(cache) == [], moment
        assert rows_by_sha(cache) == old_rows, f"a reader sees the previous complete cache at: {moment}"
        report = fit_head(cache, "logreg")
        assert report.to_dict()["metrics"]["train"]["n"] + report.to_dict()["metrics"]["valid"]["n"] == 12
        seen.append(moment)

    def write(write_atomically, final, fill):
        def fill_then_read(handle, check):
            fill(handle, check)
            handle.flush()
            check_readers(f"{'segment' if final.parent.name.endswith('.partial') else 'cache'} being written")
        write_atomically(final, fill_then_read)

    patch_h5_writes(monkeypatch, write)
    grown = run_extract(tiny_dataset, cache_dir, replace(tiny_options, commit_rows=4))
    assert seen == ["segment being written", "cache being written"] and grown.extracted == 8
    assert len(rows_by_sha(cache)) == 32 and verify_cache(cache) == []
    features = early_reader["features"][()]
    assert {sha.decode(): features[i].tobytes() for i, sha in enumerate(early_reader["row_sha256"][()])} == old_rows
    early_reader.close()
