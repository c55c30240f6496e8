"""Fusion: one head on several caches of the same images, chosen on validation, never worse than one alone."""

from __future__ import annotations

import json
from dataclasses import replace
from math import comb
from pathlib import Path

import numpy as np
import pytest
from conftest import make_dataset

from pipeline.heads import fusion
from pipeline.heads.fusion import FusionError, fit_fusion, late_weight_grid


@pytest.fixture
def two_caches(tiny_dataset, tmp_path, tiny_options):
    """Caches of the same images from two layers of the tiny backbone."""
    from pipeline.extract.run import run_extract

    cache_dir = tmp_path / "cache"
    top = run_extract(tiny_dataset, cache_dir, tiny_options)
    lower = run_extract(tiny_dataset, cache_dir, replace(tiny_options, layer="block4_pool"))
    return Path(top.cache_path), Path(lower.cache_path)


def test_the_weight_grid_covers_the_simplex_and_its_corners():
    grid = late_weight_grid(3, steps=10)
    assert len(grid) == comb(12, 2) and len(set(grid)) == len(grid)
    assert all(abs(sum(w) - 1) < 1e-9 and min(w) >= 0 for w in grid)
    assert {(1.0, 0.0, 0.0), (0.0, 1.0, 0.0), (0.0, 0.0, 1.0)} <= set(grid)


def test_fusion_is_chosen_on_validation_and_never_worse_than_one_backbone(two_caches, cli):
    report = fit_fusion(list(two_caches), "logreg")
    sidecar = json.loads(Path(report.sidecar_path).read_text())
    singles = [row for row in sidecar["search"] if row["method"] == "single"]
    assert len(singles) == 2 and any(row["method"] == "late" for row in sidecar["search"])
    assert any(row["method"] == "early" for row in sidecar["search"])
    assert report.metrics["valid"]["top1"] >= max(row["valid_top1"] for row in singles) - 1e-12
    weights = list(report.params["weights"].values())
    if report.params["method"] == "early":
        assert weights == [1.0, 1.0] and len(report.params["carried_by"]) == 2
    else:
        assert sum(weights) == pytest.approx(1.0) and report.params["carried_by"]
    assert len(sidecar["members"]) == 2 and sidecar["feature_keys"] == [m["feature_key"] for m in sidecar["members"]]
    for member, cache in zip(sidecar["members"], two_caches):
        assert Path(member["sidecar"]).parent.name == cache.stem, "each member is a head of its own cache"
    board, _ = cli.json(["report", two_caches[0]])
    assert "fusion" in {row["kind"] for row in board["heads"]}
    photo = sorted(two_caches[0].parents[1].rglob("*.jpg"))[0]
    payload, _ = cli.json(["predict", photo, "--head", report.sidecar_path, "--cache-dir", two_caches[0].parent])
    ranked = payload["results"][0]["predictions"]
    assert sum(p["probability"] for p in ranked) == pytest.approx(1.0, abs=1e-5)


def test_early_fusion_saves_its_own_head_and_predicts_through_every_backbone(two_caches, cli, monkeypatch):
    monkeypatch.setattr(fusion, "choose", lambda candidates: next(c for c in candidates if c.method == "early"))
    report = fit_fusion(list(two_caches), "svm")
    sidecar = json.loads(Path(report.sidecar_path).read_text())
    assert sidecar["hyperparameters"]["method"] == "early" and sidecar["concat_head"]["kind"] == "svm"
    assert (Path(report.sidecar_path).parent / sidecar["concat_head"]["model_file"]).is_file()
    photos = sorted(two_caches[0].parents[1].rglob("test/*/*.jpg"))
    payload, _ = cli.json(["predict", *photos, "--head", report.sidecar_path, "--top-k", "2",
                           "--cache-dir", two_caches[0].parent])
    predicted = [result["predictions"][0]["label"] for result in payload["results"]]
    accuracy = np.mean([label == photo.parent.name for label, photo in zip(predicted, photos)])
    assert accuracy == pytest.approx(report.metrics["test"]["top1"], abs=1e-9)


def test_caches_of_other_images_or_splits_are_refused_saying_which(two_caches, tmp_path, tiny_options, cli):
    from pipeline.extract.run import run_extract

    other = make_dataset(tmp_path / "other", seed=3)
    foreign = Path(run_extract(other, tmp_path / "cache", tiny_options).cache_path)
    with pytest.raises(FusionError, match=r"hold different images: 24 only in .*, 24 only in"):
        fit_fusion([two_caches[0], foreign], "logreg")
    data = two_caches[0].parents[1] / "pets"
    resplit = Path(run_extract(data, tmp_path / "resplit", replace(tiny_options, valid_fraction=0.6)).cache_path)
    with pytest.raises(FusionError, match=r"in different splits.*same --valid-fraction"):
        fit_fusion([two_caches[0], resplit], "logreg")
    payload, result = cli.json(["fit-head", two_caches[0], foreign, "--head", "logreg"], expect_ok=False)
    assert result.exit_code == 1 and "hold different images" in payload["error"]
