"""`extract --engine ray`: the same cache as a local run, bit for bit, on a local Ray cluster the tests start.

The cluster (2 CPUs, no dashboard) is started once for the module; in-process runs use it as is,
and CLI subprocesses join it with --ray-address. Tests that need Ray skip when the `ray` extra is
not installed (`.ci/run` installs it); the refusal without the extra runs everywhere.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import threading
import time
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
from conftest import CLASS_COLOURS, REPO_ROOT, TINY_BACKBONE, TINY_BACKBONE_ARGS, make_dataset, write_image
from reliability_support import cli_command, cli_env, committed_rows, only_cache, rows_by_address, rows_by_sha

from pipeline.cache.format import read_cache_info
from pipeline.cache.merge import merge_shards
from pipeline.cache.shard import Shard
from pipeline.cache.slots import PlannedBatch
from pipeline.cache.verify import verify_cache
from pipeline.data.images import ResizeSpec
from pipeline.errors import PipelineError
from pipeline.extract.engines import ray_data
from pipeline.extract.engines.ray_worker import BatchWorker, WorkerRefused, WorkerSpec
from pipeline.extract.options import ExtractOptions
from pipeline.extract.run import run_extract

#: Batches of 4 over 26 images: 6 full batches and a tail of 2, so the tail's slots are exercised.
OPTIONS = ExtractOptions(**TINY_BACKBONE, batch_size=4, valid_fraction=0.3)
RAY = replace(OPTIONS, engine="ray", ray_workers=2)
STARTUP_TIMEOUT, EXIT_TIMEOUT = 240, 120


def _dataset(root: Path, per_class=6) -> Path:
    make_dataset(root, per_class=per_class)
    for index in range(2):
        write_image(root / "test" / "cat" / f"tail_{index}.jpg", CLASS_COLOURS["cat"], seed=70_000 + index)
    return root


def _rows(cache_path) -> dict[str, bytes]:
    return rows_by_sha(Path(cache_path))


def _view(cache_path) -> list[tuple]:
    info = read_cache_info(cache_path)
    return sorted(zip(info.images.relpath, info.images.label, info.images.split, info.images.sha256))


@pytest.fixture(scope="module")
def ray_cluster():
    """A local Ray cluster whose workers import this checkout (and this folder, for the test actors)."""
    ray = pytest.importorskip("ray", reason="the ray extra is not installed (pip install -e '.[ray]')")
    pytest.importorskip("ray.data")
    path = os.pathsep.join([str(REPO_ROOT), str(REPO_ROOT / "tests")])
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False,
             runtime_env={"env_vars": {"PYTHONPATH": path, "TF_CPP_MIN_LOG_LEVEL": "3"}})
    yield ray.get_runtime_context().gcs_address
    ray.shutdown()


@pytest.fixture(scope="module")
def animals(tmp_path_factory):
    """26 images, and the rows, view and failures of a local run on them."""
    root = _dataset(tmp_path_factory.mktemp("ray") / "animals")
    summary = run_extract(root, tmp_path_factory.mktemp("local-cache"), OPTIONS)
    return root, _rows(summary.cache_path), _view(summary.cache_path)


@pytest.mark.slow
def test_ray_engine_writes_bitwise_the_local_cache(ray_cluster, animals, tmp_path):
    root, local_rows, local_view = animals
    summary = run_extract(root, tmp_path / "cache", RAY)
    assert summary.engine == "ray" and summary.ray_workers == 2
    assert summary.extracted == 26 and summary.reused == 0 and summary.failures == []
    assert verify_cache(summary.cache_path) == []
    assert _rows(summary.cache_path) == local_rows  # same bytes, row by row
    assert _view(summary.cache_path) == local_view
    again = run_extract(root, tmp_path / "cache", RAY)  # nothing missing: no Ray work at all
    assert again.extracted == 0 and not again.wrote_cache


@pytest.mark.slow
def test_a_cache_built_partly_locally_and_partly_on_ray_is_one_cache(ray_cluster, animals, tmp_path):
    """Ray adds to a local cache exactly the rows the local engine would add; the old rows stay as they were.

    Growing the dataset renumbers its images, so the new rows are not bitwise a fresh run's over
    the grown dataset (`pipeline.cache.slots`: position in the batch changes the last bits on
    some CPUs); they are bitwise what the local engine computes for the same increment.
    """
    _, fresh_rows, fresh_view = animals
    root = _dataset(tmp_path / "animals")
    held_back = sorted((root / "train" / "dog").glob("*.jpg"))[:3]
    moved = [(path, tmp_path / path.name) for path in held_back]
    for path, aside in moved:
        path.rename(aside)
    first = run_extract(root, tmp_path / "ray-cache", OPTIONS)  # the local engine: 23 images
    first_rows = _rows(first.cache_path)
    shutil.copytree(tmp_path / "ray-cache", tmp_path / "local-cache")
    for path, aside in moved:
        aside.rename(path)
    second = run_extract(root, tmp_path / "ray-cache", replace(RAY, ray_workers=1))  # Ray: only the 3 new ones
    by_local_engine = run_extract(root, tmp_path / "local-cache", OPTIONS)
    assert first.extracted == 23 and second.extracted == 3 and second.reused == 23
    rows = _rows(second.cache_path)
    assert rows == _rows(by_local_engine.cache_path)  # same bytes as the local engine's increment
    assert {sha: rows[sha] for sha in first_rows} == first_rows  # reused, not recomputed
    assert rows.keys() == fresh_rows.keys()
    for sha, row in rows.items():  # and the features of a fresh run, to the last bits
        np.testing.assert_allclose(np.frombuffer(row, np.float32), np.frombuffer(fresh_rows[sha], np.float32),
                                   rtol=1e-5, atol=1e-6)
    assert _view(second.cache_path) == fresh_view


@pytest.mark.slow
def test_a_bad_image_is_a_recorded_failure_not_a_failed_job(ray_cluster, tmp_path):
    root = _dataset(tmp_path / "animals")
    (root / "train" / "cat" / "broken.jpg").write_bytes(b"not an image at all")
    good = (root / "train" / "dog" / "dog_0.jpg").read_bytes()
    (root / "train" / "dog" / "truncated.jpg").write_bytes(good[: len(good) // 3])
    local = run_extract(root, tmp_path / "local", OPTIONS)
    remote = run_extract(root, tmp_path / "ray", RAY)
    assert {f["path"] for f in remote.failures} >= {"train/cat/broken.jpg"}
    assert remote.failures == local.failures and remote.images == local.images
    assert _rows(remote.cache_path) == _rows(local.cache_path)
    info = read_cache_info(remote.cache_path)
    assert "train/cat/broken.jpg" in [path for path, _ in info.failures]


class CrashOnceWorker(BatchWorker):
    """Kills its own process on its first call of the run (a lost node); the restarted actor goes on."""

    def __call__(self, batch):
        marker = Path(self.spec.cache_dir) / "crashed-once"
        if not marker.exists():
            marker.touch()
            os._exit(1)
        return super().__call__(batch)


@pytest.mark.slow
def test_a_worker_lost_mid_run_is_retried_by_ray(ray_cluster, animals, tmp_path, monkeypatch):
    root, local_rows, _ = animals
    monkeypatch.setattr(ray_data, "BatchWorker", CrashOnceWorker)
    summary = run_extract(root, tmp_path / "cache", replace(RAY, ray_workers=1))
    assert (tmp_path / "cache" / "crashed-once").exists()  # the actor did die
    assert summary.extracted == 26 and summary.failures == []
    assert _rows(summary.cache_path) == local_rows


@pytest.mark.slow
def test_a_worker_with_other_weights_is_refused_and_nothing_is_written(ray_cluster, tmp_path, monkeypatch):
    root = _dataset(tmp_path / "animals")
    real = ray_data.compute_rows_on_ray

    def with_other_fingerprint(job, worker_spec, *args, **kwargs):  # as if the driver had loaded other weights
        return real(job, replace(worker_spec, fingerprint="0" * 64), *args, **kwargs)

    monkeypatch.setattr(ray_data, "compute_rows_on_ray", with_other_fingerprint)
    with pytest.raises(PipelineError, match=r"refused.*fingerprint") as raised:
        run_extract(root, tmp_path / "cache", replace(RAY, ray_workers=1))
    assert "same weights" in str(raised.value)
    assert not list((tmp_path / "cache").rglob("seg-*.h5")) and only_cache(tmp_path / "cache") is None


def _wait_for_committed_rows(process, cache_dir: Path, log_path: Path) -> bool:
    """True once a segment is committed; False if the process ended first."""
    deadline = time.monotonic() + STARTUP_TIMEOUT
    while time.monotonic() < deadline:
        if process.poll() is not None:
            return False
        if any(p for p in cache_dir.glob("*.partial/seg-*.h5") if ".tmp" not in p.name):
            return True
        time.sleep(0.01)
    process.kill()
    pytest.fail(f"no rows were committed within {STARTUP_TIMEOUT} s:\n{log_path.read_text()[-2000:]}")


@pytest.mark.slow
@pytest.mark.parametrize("sig", [signal.SIGKILL, signal.SIGTERM], ids=["SIGKILL", "SIGTERM"])
def test_a_killed_driver_leaves_a_valid_cache_and_the_rerun_sends_only_the_missing_rows(ray_cluster, tmp_path, sig):
    classes = ("cat", "dog", "fox", "owl")
    root = make_dataset(tmp_path / "many", classes=classes, per_class=10, splits=("train",))
    cache_dir, log_path = tmp_path / "cache", tmp_path / "extract.log"
    before = run_extract(root, cache_dir, OPTIONS)  # a cache of 40 images, extracted locally
    shutil.copytree(cache_dir, tmp_path / "clean")  # the same history, not interrupted (see the previous test)
    for index in range(200):  # 240 images in all: the Ray run has 200 to extract
        name = classes[index % 4]
        write_image(root / "train" / name / f"extra_{index}.jpg", CLASS_COLOURS[name], seed=50_000 + index)
    clean = run_extract(root, tmp_path / "clean", OPTIONS)
    clean_rows = _rows(clean.cache_path)
    args = ("extract", root, *TINY_BACKBONE_ARGS, "--batch-size", "4", "--valid-fraction", "0.3",
            "--commit-every", "4", "--engine", "ray", "--workers", "1", "--ray-address", ray_cluster,
            "--cache-dir", cache_dir, "--json")
    with open(log_path, "w") as log:
        process = subprocess.Popen(cli_command(*args), cwd=REPO_ROOT, env=cli_env(), stdout=subprocess.PIPE,
                                   stderr=log)
    assert _wait_for_committed_rows(process, cache_dir, log_path), "the run ended before any rows were committed"
    process.send_signal(sig)
    out, _ = process.communicate(timeout=EXIT_TIMEOUT)
    if sig == signal.SIGTERM:  # a clean stop: what had arrived is committed, and the CLI says so
        assert process.returncode == 130, log_path.read_text()[-2000:]
        assert json.loads(out)["error"].startswith("interrupted: finished work is saved")
    else:
        assert process.returncode == -signal.SIGKILL
    assert only_cache(cache_dir) == Path(before.cache_path)  # the previous cache, untouched and valid
    assert verify_cache(before.cache_path) == [] and read_cache_info(before.cache_path).row_count == 40
    committed = committed_rows(Path(before.cache_path), read_cache_info(clean.cache_path).key)
    assert 40 < len(committed) < 240
    assert all(clean_rows[sha] == row for sha, row in committed.items())
    rerun = run_extract(root, cache_dir, replace(RAY, ray_workers=1, commit_rows=4))
    assert rerun.extracted == 240 - len(committed) and rerun.reused == len(committed)
    assert verify_cache(rerun.cache_path) == []
    assert _rows(rerun.cache_path) == clean_rows


def test_ray_is_shut_down_only_once_the_consumer_threads_have_left_their_calls(caplog):
    """A thread still busy delays the shutdown until it ends; one parked on a condition does not; a deadline holds."""
    before = set(threading.enumerate())
    release, parked_condition = threading.Event(), threading.Condition()

    def parked():
        with parked_condition:
            parked_condition.wait()  # like Ray Data's idle prefetcher: no Ray call until woken

    def busy():
        while not release.is_set():  # like a consumer thread inside a Ray call
            time.sleep(0.005)

    threads = [threading.Thread(target=parked, daemon=True), threading.Thread(target=busy, daemon=True)]
    for thread in threads:
        thread.start()
    try:
        assert not ray_data.wait_for_threads_to_settle(before, grace=0.2)  # the busy one is still running
        assert "1 thread(s) still run" in caplog.text
        threading.Timer(0.3, release.set).start()
        started = time.monotonic()
        assert ray_data.wait_for_threads_to_settle(before, grace=10)
        assert 0.2 < time.monotonic() - started < 5  # waited for the busy thread, not for the parked one
        assert threads[0].is_alive() and not threads[1].is_alive()
    finally:
        release.set()
        with parked_condition:
            parked_condition.notify_all()


def test_the_worker_refuses_other_weights_and_records_bad_images_without_ray(tmp_path):
    """`BatchWorker` as plain Python (what each actor runs): the fingerprint check, then a batch with a bad file."""
    root = make_dataset(tmp_path / "pets", per_class=2)
    bad = root / "train" / "cat" / "broken.jpg"
    bad.write_bytes(b"not an image at all")
    summary = run_extract(root, tmp_path / "cache", OPTIONS)
    spec = read_cache_info(summary.cache_path).spec
    worker_spec = WorkerSpec(backbone="vgg16", layer=spec.layer, input_size=spec.input_size,
                             resize=ResizeSpec(spec.input_size, spec.input_size), weights_request="none",
                             cache_dir=str(tmp_path / "cache"), precision="float32", pooling="none",
                             store_dtype="float32", fingerprint=spec.weights_fingerprint, data_root=str(root))
    with pytest.raises(WorkerRefused, match="fingerprint"):
        BatchWorker(replace(worker_spec, fingerprint="f" * 64))
    with pytest.raises(WorkerRefused, match="cannot see the dataset folder"):
        BatchWorker(replace(worker_spec, data_root=str(tmp_path / "elsewhere")))
    worker = BatchWorker(worker_spec)
    good = root / "train" / "dog" / "dog_0.jpg"
    info = read_cache_info(summary.cache_path)
    sha = info.images.sha256[list(info.images.relpath).index("train/dog/dog_0.jpg")]
    out = worker({"plan": np.array([json.dumps({"size": 4, "entries": [[1, sha, str(good)], [3, "bad", str(bad)]]})],
                                   dtype=object)})
    assert list(out["address"]) == [sha, "bad"]
    assert out["failure"][0] == "" and out["failure"][1]  # the reason, as data
    assert out["features"].shape == (2, 1, 1, 512) and not out["features"][1].any()
    assert worker.compute(PlannedBatch(4, [(1, sha, good)]))[0] == [sha]


@pytest.fixture
def no_backbone_build(monkeypatch):
    """Refusals come before any backbone is built (no TensorFlow work for a run that cannot happen)."""
    from pipeline.backbones import forward

    def refuse(*args, **kwargs):
        raise AssertionError("the backbone was built before the engine was checked")

    monkeypatch.setattr(forward.FeatureExtractor, "__init__", refuse)


def test_engine_ray_without_the_extra_says_how_to_install_it(cli, tiny_dataset, tmp_path, monkeypatch,
                                                             no_backbone_build):
    monkeypatch.setitem(sys.modules, "ray", None)  # `import ray` now raises ImportError
    payload, result = cli.json(["extract", tiny_dataset, *TINY_BACKBONE_ARGS, "--engine", "ray",
                                "--cache-dir", tmp_path / "cache"], expect_ok=False)
    assert result.exit_code == 2
    assert "pip install -e '.[ray]'" in payload["error"] and "Traceback" not in result.output
    assert not list((tmp_path / "cache").rglob("seg-*.h5"))


def test_an_address_nobody_answers_is_refused_before_any_work(cli, tiny_dataset, tmp_path, no_backbone_build):
    pytest.importorskip("ray.data", reason="the ray extra is not installed (pip install -e '.[ray]')")
    started = time.monotonic()
    payload, result = cli.json(["extract", tiny_dataset, *TINY_BACKBONE_ARGS, "--engine", "ray", "--ray-address",
                                "127.0.0.1:1", "--cache-dir", tmp_path / "cache"], expect_ok=False)
    assert result.exit_code == 1 and "nothing answers at the Ray address 127.0.0.1:1" in payload["error"]
    assert "ray start --head" in payload["error"] and time.monotonic() - started < 30


def test_ray_options_without_engine_ray_are_refused(cli, tiny_dataset, tmp_path):
    payload, result = cli.json(["extract", tiny_dataset, *TINY_BACKBONE_ARGS, "--ray-address", "auto",
                                "--cache-dir", tmp_path / "cache"], expect_ok=False)
    assert result.exit_code == 2 and "--engine ray" in payload["error"]



def test_the_ray_summary_gives_when_rows_came_back_instead_of_a_rate_over_one_batch():
    """A small Ray run's rows all come back at once: a rows/s over that window would read as thousands."""
    from types import SimpleNamespace

    from pipeline.cli.data_commands import _ray_timing

    text = _ray_timing(SimpleNamespace(ray_workers=1, startup_seconds=14.42, forward_seconds=0.0))
    assert text == "1 Ray actor; first rows back after 14.4 s, the last 0.0 s later"
    assert "2 Ray actors;" in _ray_timing(SimpleNamespace(ray_workers=2, startup_seconds=1, forward_seconds=3))


@pytest.mark.slow
def test_ray_shards_merge_into_bitwise_the_local_cache(ray_cluster, animals, tmp_path):
    """`--shard I/N` with `--engine ray` (one Ray run per shard) merges into the single local run's cache."""
    root, local_rows, local_view = animals
    shards = [run_extract(root, tmp_path / "shards", replace(RAY, ray_workers=1, shard=Shard(index, 2)))
              for index in range(2)]
    assert sum(s.extracted for s in shards) == 26 and all(s.extracted > 0 for s in shards)
    merged = merge_shards([tmp_path / "shards"])
    assert merged.images == 26 and merged.rows == 26
    assert _rows(merged.cache_path) == local_rows and _view(merged.cache_path) == local_view


@pytest.mark.slow
def test_ray_views_are_bitwise_the_local_views(ray_cluster, animals, tmp_path):
    """`--views 1` on Ray computes every augmented view exactly as the local engine does."""
    root = animals[0]
    with_views = replace(OPTIONS, views=1)
    local = run_extract(root, tmp_path / "local", with_views)
    on_ray = run_extract(root, tmp_path / "ray", replace(with_views, engine="ray", ray_workers=2))
    assert on_ray.engine == "ray" and verify_cache(on_ray.cache_path) == []
    rows = rows_by_address(on_ray.cache_path)
    assert len(rows) == 2 * 26  # the plain view and one augmented view of each image
    assert rows == rows_by_address(local.cache_path)
