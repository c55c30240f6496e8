"""The benchmark harness: its smoke mode runs every scenario and writes the report (no timing asserted)."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from benchmarks.measure import run_measured
from benchmarks.plan import SMOKE
from benchmarks.report import TARGETS, verdicts
from benchmarks.scenarios import SCENARIOS
from tests.conftest import REPO_ROOT

BENCH = REPO_ROOT / "benchmarks"

#: Targets that need the real photos, which smoke mode does not use.
REAL_PHOTO_TARGETS = {"2b-bf16-cosine", "2c-bf16-accuracy"}


@pytest.fixture(scope="module")
def smoke_results(tmp_path_factory):
    out = tmp_path_factory.mktemp("bench-out")
    done = subprocess.run([sys.executable, str(BENCH / "bench.py"), "--smoke", "--out", str(out)], cwd=REPO_ROOT,
                          capture_output=True, text=True, timeout=1200)
    assert done.returncode == 0, done.stderr[-3000:]
    return json.loads((out / "results.json").read_text()), (out / "benchmarks.md").read_text()


def test_smoke_run_measures_every_scenario(smoke_results):
    results, _ = smoke_results
    assert results["mode"] == "smoke"
    assert results["errors"] == {}
    assert set(results["scenarios"]) == set(SCENARIOS)
    assert {row["target"] for row in results["verdicts"]} == set(TARGETS) - REAL_PHOTO_TARGETS
    assert results["scenarios"]["real_photos"] == {"skipped": "smoke mode uses no real photos"}


def test_smoke_run_exercises_the_real_code_paths(smoke_results):
    scenarios = smoke_results[0]["scenarios"]
    pipeline_rounds = [r["pipeline"] for r in scenarios["input_pipeline"]["rounds"] if "pipeline" in r]
    assert [r["images"] for r in pipeline_rounds] == [SMOKE.pipeline_chunk_images] * SMOKE.pipeline_chunks
    assert len(scenarios["input_pipeline"]["rounds"]) == SMOKE.pipeline_chunks + 1  # bare rounds on both sides
    assert set(scenarios["precision_speed"]["variants"]) == set(SMOKE.forward_variants)
    assert scenarios["full_size"]["extract"]["extracted"] == SMOKE.photos
    assert scenarios["caching"]["rerun"]["extracted"] == 0
    assert scenarios["caching"]["added"]["extracted"] == SMOKE.added
    assert scenarios["caching"]["added"]["reused"] == SMOKE.photos
    for count, run in scenarios["memory"]["runs"].items():
        assert run["extract"]["extracted"] == int(count)
        assert run["extract"]["process"]["peak_rss_mb"] > 0 and run["naive"]["process"]["peak_rss_mb"] > 0
    assert [run["kind"] for run in scenarios["naive_speed"]["runs"]] == ["extract", "naive"]
    fits = scenarios["heads"]["fits"]
    assert set(fits) == {"logreg", "svm", "gap-dense-classic"}
    assert all(0.0 <= fit["top1"]["test"] <= 1.0 for fit in fits.values())
    assert fits["gap-dense-classic"]["tensorflow_import_seconds"] > 0 and fits["logreg"]["tensorflow_import_seconds"] == 0
    assert scenarios["heads"]["feature_bytes"]["float16"]["bytes_per_row"] * 2 == \
        scenarios["heads"]["feature_bytes"]["float32"]["bytes_per_row"]


def test_smoke_markdown_lists_machine_and_targets(smoke_results):
    results, text = smoke_results
    assert "## Machine" in text and results["machine"]["cpu_model"] in text
    for row in results["verdicts"]:
        assert f"| {row['target']} |" in text


def test_run_measured_reports_the_childs_own_peak_memory():
    allocate = "import time; block = bytearray(300 << 20); time.sleep(0.2)"
    big = run_measured([sys.executable, "-c", allocate])
    small = run_measured([sys.executable, "-c", "pass"])
    assert big.peak_rss_mb >= 300 > small.peak_rss_mb
    assert big.wall_seconds >= 0.2


def test_verdicts_compare_against_the_targets():
    results = {"machine": {"cpu_flags": {}}, "scenarios": {
        "input_pipeline": {"ratio": 0.89, "bare_images_per_second": 4.0, "pipeline_images_per_second": 3.56},
        "full_size": {"extract": {"process": {"wall_seconds": 100.0}}},
        "caching": {"rerun": {"process": {"wall_seconds": 2.0}}, "added": {"process": {"wall_seconds": 16.0}}},
    }}
    met = {row["target"]: row["met"] for row in verdicts(results)}
    assert met == {"1-input-pipeline": False, "3a-rerun": True, "3b-add-10pct": False}
