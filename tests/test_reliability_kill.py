"""Reliability, interruptions: kill `extract` at random moments; nothing is ever lost or different.

Each trial starts `python cli.py extract` as a subprocess on the same cache and sends it SIGINT,
SIGTERM or SIGKILL at a random moment (seeded: set BOTTLENECK_KILL_SEED to replay a run, and
BOTTLENECK_KILL_TRIALS for more trials). After every kill the cache (when one exists) passes
`verify_cache`, every committed row is still there, and every segment file is whole (a
half-written one may only exist under a temporary name, which the next run deletes). \
After a few kills the extraction is finished in-process: it must extract exactly the
rows no earlier run committed, and every row must be bitwise equal to an uninterrupted run's.
"""

from __future__ import annotations

import json
import os
import random
import shutil
import signal
import subprocess
import time
from pathlib import Path

import pytest
from conftest import CLASS_COLOURS, REPO_ROOT, TINY_BACKBONE, TINY_BACKBONE_ARGS, make_dataset, write_image
from reliability_support import cli_command, cli_env, committed_rows, only_cache, rows_by_sha

from pipeline.cache.format import CACHE_SUFFIX, PARTIAL_SUFFIX, partial_dir_of, read_cache_info
from pipeline.cache.verify import verify_cache
from pipeline.extract.options import ExtractOptions
from pipeline.extract.run import run_extract

KILL_TRIALS = int(os.environ.get("BOTTLENECK_KILL_TRIALS", "10"))
KILL_SEED = int(os.environ.get("BOTTLENECK_KILL_SEED", "6"))
SIGNALS = (signal.SIGINT, signal.SIGTERM, signal.SIGKILL)
#: Random-weight VGG16 at 32x32, 4 images per batch, a segment every 8 rows: 322 images give 41
#: segments and a few seconds of forward passes, so kills land between, during and after commits.
KILL_ARGS = (*TINY_BACKBONE_ARGS, "--batch-size", "4", "--commit-every", "8")
KILL_OPTIONS = ExtractOptions(**TINY_BACKBONE, batch_size=4, commit_rows=8)
CLASSES, PER_CLASS_AND_SPLIT, SPLITS = ("cat", "dog", "fox", "owl"), 40, ("train", "test")
#: Images past the last full batch of 4, so the dataset's tail batch is exercised too.
TAIL_IMAGES = 2
IMAGES = len(CLASSES) * PER_CLASS_AND_SPLIT * len(SPLITS) + TAIL_IMAGES
#: Share of kills sent during start-up (imports, hashing, model building) instead of extraction.
STARTUP_KILL_SHARE = 0.2
#: Kills during extraction come this many seconds (at most) after the first batch is done.
EXTRACTION_KILL_WINDOW = 2.5
#: A round of kills on one cache ends with an in-process completion after this many kills.
KILLS_PER_ROUND = (2, 4)
#: Seconds allowed for start-up (TensorFlow import and model build under load) and for exiting.
STARTUP_TIMEOUT, EXIT_TIMEOUT = 240, 120
#: Exit statuses: 130 is the CLI's clean "interrupted"; -2/-15 when the signal lands before the CLI
#: installed its handlers (Python start-up); 0 when the run finished before the signal arrived.
CLEAN_EXITS = {signal.SIGINT: {130, -signal.SIGINT, 0}, signal.SIGTERM: {130, -signal.SIGTERM, 0},
               signal.SIGKILL: {-signal.SIGKILL, 0}}
INTERRUPTED = "interrupted: finished work is saved; run the same command again to resume"


@pytest.fixture(scope="module")
def kill_dataset(tmp_path_factory) -> Path:
    """322 images: 80 batches of 4 and a tail batch of 2."""
    root = make_dataset(tmp_path_factory.mktemp("kill") / "animals", classes=CLASSES, per_class=PER_CLASS_AND_SPLIT,
                        splits=SPLITS)
    for index in range(TAIL_IMAGES):
        write_image(root / "test" / "owl" / f"tail_{index}.jpg", CLASS_COLOURS["owl"], seed=90_000 + index)
    return root


@pytest.fixture(scope="module")
def clean_run(kill_dataset, tmp_path_factory) -> tuple[dict[str, bytes], str]:
    """Rows of an uninterrupted extraction, and the feature key."""
    summary = run_extract(kill_dataset, tmp_path_factory.mktemp("clean-cache"), KILL_OPTIONS)
    assert summary.extracted == IMAGES and not summary.failures
    return rows_by_sha(Path(summary.cache_path)), read_cache_info(Path(summary.cache_path)).key


def _start_extract(data_dir: Path, cache_dir: Path, log_path: Path) -> subprocess.Popen:
    with open(log_path, "w") as log, open(log_path.with_suffix(".json"), "w") as out:
        return subprocess.Popen(cli_command("extract", data_dir, *KILL_ARGS, "--cache-dir", cache_dir, "--json"),
                                cwd=REPO_ROOT, env=cli_env(), stdout=out, stderr=log)


def _wait_for_extraction(process: subprocess.Popen, log_path: Path) -> bool:
    """True once the first batch is done ("extracting" on stderr); False if the process ended first."""
    deadline = time.monotonic() + STARTUP_TIMEOUT
    while time.monotonic() < deadline:
        if process.poll() is not None:
            return False
        if "extracting" in log_path.read_text(errors="replace"):
            return True
        time.sleep(0.02)
    process.kill()
    pytest.fail(f"extract did not start extracting within {STARTUP_TIMEOUT} s:\n{log_path.read_text()[-2000:]}")


def _kill_at_random_moment(process, log_path, rng: random.Random) -> tuple[signal.Signals, str, bool]:
    """Send a random signal at a random moment; returns (signal, moment, whether it arrived while running)."""
    sig = rng.choice(SIGNALS)
    if rng.random() < STARTUP_KILL_SHARE:
        moment = f"start-up +{rng.uniform(0.3, 4.0):.2f}s"
        time.sleep(float(moment.split("+")[1][:-1]))
    else:
        started = _wait_for_extraction(process, log_path)
        delay = rng.uniform(0.0, EXTRACTION_KILL_WINDOW)
        moment = f"extraction +{delay:.2f}s" if started else "after exit"
        time.sleep(delay if started else 0)
    alive = process.poll() is None
    if alive:
        process.send_signal(sig)
    try:
        process.wait(timeout=EXIT_TIMEOUT)
    except subprocess.TimeoutExpired:
        process.kill()
        pytest.fail(f"extract did not stop within {EXIT_TIMEOUT} s of {sig.name}:\n{log_path.read_text()[-2000:]}")
    return sig, moment, alive


@pytest.mark.slow
def test_random_kills_lose_nothing_and_resume_bitwise_identical(kill_dataset, clean_run, tmp_path):
    clean_rows, key = clean_run
    rng = random.Random(KILL_SEED)
    cache_dir = tmp_path / "cache"
    kills, rounds, trial_log = 0, 0, []
    round_kills = rng.randint(*KILLS_PER_ROUND)
    while kills < KILL_TRIALS:
        before = _committed(cache_dir, key)
        log_path = tmp_path / f"trial-{len(trial_log)}.log"
        process = _start_extract(kill_dataset, cache_dir, log_path)
        sig, moment, delivered = _kill_at_random_moment(process, log_path, rng)
        stderr = log_path.read_text(errors="replace")
        assert process.returncode in CLEAN_EXITS[sig], (sig.name, moment, process.returncode, stderr[-3000:])
        if process.returncode == 130:
            assert "Traceback" not in stderr, stderr[-3000:]
            assert json.loads(log_path.with_suffix(".json").read_text()) == {"ok": False, "error": INTERRUPTED}

        cache = only_cache(cache_dir)
        if cache is not None:
            assert verify_cache(cache) == [], f"cache fails verify after {sig.name} at {moment}"
        after = _committed(cache_dir, key)
        lost = set(before) - set(after)
        assert not lost, f"{len(lost)} committed rows lost after {sig.name} at {moment}"
        assert all(row == clean_rows[sha] for sha, row in after.items()), "committed rows equal the clean run's"
        trial_log.append(f"{sig.name:7} at {moment:18} exit {process.returncode:4}: committed rows "
                         f"{len(before):3} -> {len(after):3}")
        kills += delivered
        round_kills -= delivered
        if kills >= KILL_TRIALS or round_kills <= 0 or len(after) == len(clean_rows):
            rounds += 1
            _finish_and_compare(kill_dataset, cache_dir, clean_rows, after)
            trial_log.append(f"round {rounds}: finished in-process, extracting the {len(clean_rows) - len(after)} "
                             "missing rows; all rows bitwise equal to the clean run")
            shutil.rmtree(cache_dir)
            round_kills = rng.randint(*KILLS_PER_ROUND)
    print(f"\nkill test: seed {KILL_SEED}, {kills} kills survived in {rounds} rounds, 0 rows lost\n  "
          + "\n  ".join(trial_log))


def _committed(cache_dir: Path, key: str) -> dict[str, bytes]:
    """Rows committed in `cache_dir` so far: its cache file and/or its `.partial` segments."""
    if not cache_dir.exists():
        return {}
    names = {p.name.removesuffix(PARTIAL_SUFFIX) for p in cache_dir.iterdir()
             if p.name.endswith((CACHE_SUFFIX, CACHE_SUFFIX + PARTIAL_SUFFIX)) and not p.name.startswith(".")}
    assert len(names) <= 1, names
    return committed_rows(cache_dir / names.pop(), key) if names else {}


def _finish_and_compare(data_dir: Path, cache_dir: Path, clean_rows: dict, committed: dict) -> None:
    summary = run_extract(data_dir, cache_dir, KILL_OPTIONS)
    assert summary.extracted == len(clean_rows) - len(committed), "only rows no earlier run committed are extracted"
    assert summary.reused == len(committed)
    cache = Path(summary.cache_path)
    assert verify_cache(cache) == []
    assert not partial_dir_of(cache).exists(), "a finished run removes its segments"
    assert not [p for p in cache_dir.iterdir() if ".tmp" in p.name], "no temporary file is left behind"
    final = rows_by_sha(cache)
    assert final.keys() == clean_rows.keys()
    different = [sha for sha in final if final[sha] != clean_rows[sha]]
    assert not different, f"{len(different)} rows differ from the uninterrupted run"
