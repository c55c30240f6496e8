"""Fusion: one head on several caches of the same images, chosen on validation, never worse than one alone."""

from __future__ import annotations

import json
import re
from dataclasses import replace
from math import comb
from pathlib import Path

import numpy as np
import pytest
from conftest import make_dataset

from pipeline.heads import fusion
from pipeline.heads.fusion import FusionError, fit_fusion, late_weight_grid
from pipeline.heads.replay import split_probabilities
from pipeline.heads.store import read_sidecar


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
    # the report's per-image view replays the same head on the cached features
    probabilities, labels, _ = split_probabilities(read_sidecar(Path(report.sidecar_path)), two_caches[0], "test")
    replayed = np.mean(probabilities.argmax(axis=1) == labels)
    assert replayed == pytest.approx(report.metrics["test"]["top1"], abs=1e-9)


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


def test_members_are_marked_and_never_saved_twice(two_caches, cli):
    """A head `fit-head` already fitted is the member (marked, not copied); the leaderboard and the
    fit-head output say what each row is, in whole words."""
    from pipeline.heads.fitting import fit_head
    from pipeline.heads.store import heads_dir_of

    own = [Path(fit_head(cache, "logreg").sidecar_path) for cache in two_caches]
    result = cli(["fit-head", *two_caches, "--head", "logreg"])
    assert result.exit_code == 0, result.output
    assert "single: single" not in result.stdout
    chosen = re.search(r"chosen on validation: (single|late|early); the best single backbone: (\S+) "
                       r"\(valid top-1 (\d\.\d{3})\)", result.stdout)
    assert chosen, result.stdout
    fused = Path(result.stdout.split("Saved ")[-1].strip())
    sidecar = json.loads(fused.read_text())
    assert [Path(member["sidecar"]) for member in sidecar["members"]] == own  # the heads fit-head saved
    for cache, head in zip(two_caches, own):
        assert len(list(heads_dir_of(cache).glob("logreg-*.json"))) == 1  # no copy
        assert json.loads(head.read_text())["member_of"] == [fused.stem]
    board, _ = cli.json(["report", two_caches[0]])
    rows = {row["name"]: row for row in board["heads"]}
    assert rows[own[0].stem]["member_of"] == [fused.stem]
    assert rows[own[0].stem]["params"].endswith(f"; member of {fused.stem}")
    shown = _params_column(cli(["report", two_caches[0]]).stdout)
    assert shown[own[0].stem] == rows[own[0].stem]["params"] and shown[fused.stem] == rows[fused.stem]["params"]
    if sidecar["hyperparameters"]["method"] == "single":
        assert rows[fused.stem]["params"] == f"logreg single: {sidecar['hyperparameters']['carried_by'][0]}"

    again = fit_fusion(list(two_caches), "logreg")  # the same fusion again reuses the marked members
    assert json.loads(own[1].read_text())["member_of"] == [fused.stem, Path(again.sidecar_path).stem]
    assert len(list(heads_dir_of(two_caches[1]).glob("logreg-*.json"))) == 1


def test_a_member_without_a_twin_is_saved_marked(two_caches):
    from pipeline.heads.store import heads_dir_of

    report = fit_fusion(list(two_caches), "logreg")
    for cache in two_caches:
        (member,) = heads_dir_of(cache).glob("logreg-*.json")
        assert json.loads(member.read_text())["member_of"] == [Path(report.sidecar_path).stem]


def _params_column(table: str) -> dict:
    """head name -> its params cell in a `report` text table, continuation lines joined."""
    lines = table.splitlines()
    start, end = lines[0].index("params"), lines[0].index("valid")
    cells: dict = {}
    name = None
    for line in lines[2:]:
        if not line.strip() or line.startswith("Next rung"):
            break
        if line[:start].strip():
            name = line[:start].split()[0]
        cells[name] = (cells.get(name, "") + " " + line[start:end].strip()).strip()
    return cells
