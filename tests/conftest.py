"""Shared fixtures: tiny generated datasets, fast extraction options, CLI helpers, real photos.

The default suite stays fast by extracting with a randomly initialised VGG16 at 32x32 pixels
(block5_pool is then 1x1x512). Tests that need the real photos in ../shared/data (or
$BOTTLENECK_SHARED_DATA) skip cleanly when that folder is absent.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import numpy as np
import pytest
from click.testing import CliRunner
from PIL import Image

from pipeline.extract.options import ExtractOptions

#: Set in each pytest-xdist worker (`-n 2` in setup.cfg); absent in a run with `-n 0`.
XDIST_WORKER = os.environ.get("PYTEST_XDIST_WORKER")
#: Thread pools of one worker when the workers share the CPU cores: one compute thread each, so two
#: workers on two cores do not oversubscribe them (TensorFlow's and the BLAS pools spin while
#: waiting). An explicit value in the environment wins.
WORKER_THREAD_LIMITS = {"TF_NUM_INTRAOP_THREADS": "1", "OMP_NUM_THREADS": "1", "OPENBLAS_NUM_THREADS": "1"}
REPO_ROOT = Path(__file__).resolve().parents[1]
SHARED_DATA = Path(os.environ.get("BOTTLENECK_SHARED_DATA", REPO_ROOT.parent / "shared" / "data"))
TINY_SIZE = 32
#: One base colour per class, so even random-weight features separate the classes.
CLASS_COLOURS = {"cat": (200, 60, 60), "dog": (60, 60, 200), "fox": (60, 180, 60), "owl": (200, 200, 60)}


def write_image(path: Path, colour, seed: int, size=(40, 48), fmt="JPEG") -> Path:
    """A small noisy image of `colour`; distinct seeds give distinct bytes."""
    rng = np.random.default_rng(seed)
    pixels = np.clip(np.array(colour) + rng.integers(-30, 30, (size[0], size[1], 3)), 0, 255).astype(np.uint8)
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(pixels).save(path, fmt)
    return path


def make_dataset(root: Path, classes=("cat", "dog"), per_class=6, splits=("train", "test"), seed=0) -> Path:
    """A generic-layout dataset: root/<split>/<class>/<n>.jpg (or root/<class>/ when splits is empty)."""
    counter = seed * 10_000
    for split in splits or (None,):
        for name in classes:
            for index in range(per_class):
                counter += 1
                folder = root / split / name if split else root / name
                write_image(folder / f"{name}_{index}.jpg", CLASS_COLOURS[name], counter)
    return root


@pytest.fixture
def tiny_dataset(tmp_path) -> Path:
    """train/ and test/ folders, 2 classes, 6 + 6 images each (validation is carved from train)."""
    return make_dataset(tmp_path / "pets")


#: The backbone every test extracts with: random-weight VGG16 at 32x32, fast and deterministic, on
#: the real code path. Precision is pinned to float32 so the suite behaves the same on every CPU
#: (`auto` picks bfloat16 where the CPU has AMX/AVX512-BF16), and the CLI and in-process runs of a
#: test key the same cache.
TINY_BACKBONE = {"weights": "none", "input_size": TINY_SIZE, "precision": "float32"}
TINY_BACKBONE_ARGS = ["--weights", "none", "--input-size", str(TINY_SIZE), "--precision", "float32"]


@pytest.fixture
def tiny_options() -> ExtractOptions:
    """`TINY_BACKBONE`, 8 images per batch, 30% carved for validation."""
    return ExtractOptions(**TINY_BACKBONE, batch_size=8, valid_fraction=0.3)


TINY_CLI_ARGS = [*TINY_BACKBONE_ARGS, "--batch-size", "8", "--valid-fraction", "0.3"]


@pytest.fixture
def cli():
    """Invoke the CLI in-process: cli(args) -> click Result; cli.json(args) -> parsed JSON + result."""
    from cli import main

    runner = CliRunner()

    def invoke(args, **kwargs):
        return runner.invoke(main, [str(a) for a in args], catch_exceptions=False, **kwargs)

    def invoke_json(args, expect_ok=True, **kwargs):
        result = invoke(list(args) + ["--json"], **kwargs)
        lines = [line for line in result.stdout.splitlines() if line.strip()]
        assert len(lines) == 1, f"expected exactly one JSON line on stdout, got: {result.stdout!r}"
        payload = json.loads(lines[0])
        assert payload["ok"] is expect_ok, payload
        return payload, result

    invoke.json = invoke_json
    return invoke


@pytest.fixture
def shared_data() -> Path:
    """The real-photo samples; skips the test when they are not on this machine."""
    if not SHARED_DATA.is_dir():
        pytest.skip(f"real photos not found at {SHARED_DATA} (set BOTTLENECK_SHARED_DATA)")
    return SHARED_DATA


@pytest.fixture(scope="session")
def catsdogs_cache_dir(tmp_path_factory) -> Path:
    """One cache folder for every test that extracts the real cats-vs-dogs photos with genuine VGG16.

    Rows are reused by feature key across a folder, so tests that ask for the same features (on
    a CPU without bfloat16, `auto` resolves to float32) extract the 300 photos once, not once per
    test module: on an AVX2-only CPU that extraction takes about two minutes.
    """
    if not (SHARED_DATA / "catsdogs").is_dir():
        pytest.skip(f"real photos not found at {SHARED_DATA / 'catsdogs'} (set BOTTLENECK_SHARED_DATA)")
    return tmp_path_factory.mktemp("catsdogs-cache")


def pytest_configure(config):
    """In a pytest-xdist worker, `WORKER_THREAD_LIMITS`: set before any test module imports TensorFlow, and
    inherited by the subprocesses a test starts; numpy's BLAS, already loaded here, is limited in place."""
    if XDIST_WORKER:
        from threadpoolctl import threadpool_limits

        for variable, value in WORKER_THREAD_LIMITS.items():
            os.environ.setdefault(variable, value)
        threadpool_limits(limits=int(os.environ["OPENBLAS_NUM_THREADS"]), user_api="blas")


def pytest_collection_modifyitems(config, items):
    """Under pytest-xdist, modules with a test marked `slow` run first, so the long files do not end a run alone.

    Files are sent to workers whole (`--dist loadfile`, so module fixtures are built once) in
    collection order; starting with the longest leaves the short ones to even out the end. Every
    worker computes the same order, as xdist requires. A run without workers keeps the file order.
    """
    if not XDIST_WORKER:
        return
    slow_files = {item.path for item in items if item.get_closest_marker("slow")}
    items.sort(key=lambda item: item.path not in slow_files)


#: Size of the small real filesystem `small_disk` mounts: room for a tiny cache, its segments and one copy.
SMALL_DISK_BYTES = 4 << 20


@pytest.fixture
def small_disk(tmp_path):
    """A 4 MiB tmpfs mounted for one test, for real disk-full failures (skipped where mounting is not
    allowed; the injected disk-full tests cover the logic there)."""
    import subprocess

    mount_point = tmp_path / "small-disk"
    mount_point.mkdir()
    try:
        subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={SMALL_DISK_BYTES}", "tmpfs", str(mount_point)],
                       check=True, capture_output=True, timeout=30)
    except (OSError, subprocess.SubprocessError) as error:
        pytest.skip(f"cannot mount a small tmpfs here ({error}); the injected disk-full tests cover the logic")
    try:
        yield mount_point
    finally:
        subprocess.run(["umount", "-l", str(mount_point)], capture_output=True, timeout=30)
