"""Extra targets, multi-task heads and pooling choices (fit-head --target, --head multitask, --pool)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from conftest import CLASS_COLOURS, TINY_CLI_ARGS, write_image

from pipeline.heads.targets import implied_mapping

#: Four "breeds", each of one "species" (as Oxford-IIIT Pet's breeds are cats or dogs).
SPECIES_OF = {"cat": "feline", "dog": "canine", "fox": "canine", "owl": "bird"}
PER_BREED = 12


@pytest.fixture
def pets_cache(tmp_path, cli):
    """A CSV-manifest dataset with a species column, extracted with the tiny backbone."""
    root = tmp_path / "pets"
    lines = ["path,label,species"]
    seed = 0
    for breed, colour in CLASS_COLOURS.items():
        for index in range(PER_BREED):
            seed += 1
            write_image(root / "images" / f"{breed}_{index}.jpg", colour, seed)
            lines.append(f"images/{breed}_{index}.jpg,{breed},{SPECIES_OF[breed]}")
    (root / "labels.csv").write_text("\n".join(lines) + "\n")
    payload, _ = cli.json(["extract", root / "labels.csv", *TINY_CLI_ARGS, "--cache-dir", tmp_path / "cache"])
    return Path(payload["cache_path"])


def test_implied_mapping_needs_one_label_per_class():
    assert implied_mapping(np.array([0, 0, 1, 2]), np.array([1, 1, 0, 1]), 4).tolist() == [1, 0, 1, -1]
    assert implied_mapping(np.array([0, 0, 1]), np.array([1, 0, 0]), 2) is None


def test_a_head_fits_on_an_extra_target(pets_cache, cli):
    payload, _ = cli.json(["fit-head", pets_cache, "--head", "logreg", "--target", "species"])
    sidecar = json.loads(Path(payload["sidecar_path"]).read_text())
    assert sidecar["target"] == "species" and sidecar["class_names"] == ["bird", "canine", "feline"]
    assert Path(payload["sidecar_path"]).name.startswith("logreg-species-")
    assert payload["metrics"]["test"]["n"] > 0
    photo = pets_cache.parent.parent / "pets" / "images" / "owl_0.jpg"
    predicted, _ = cli.json(["predict", photo, "--head", payload["sidecar_path"], "--cache-dir", pets_cache.parent])
    assert {p["label"] for p in predicted["results"][0]["predictions"]} == {"bird", "canine", "feline"}
    refused, result = cli.json(["fit-head", pets_cache, "--head", "logreg", "--target", "colour"], expect_ok=False)
    assert result.exit_code == 2 and "no target 'colour'" in refused["error"] and "species" in refused["error"]


def test_a_breed_head_reports_the_species_it_implies(pets_cache, cli):
    payload, _ = cli.json(["fit-head", pets_cache, "--head", "logreg"])
    implied = payload["implied"]["species"]
    assert implied["implied_by"] == "label" and "accuracy_direct" not in implied["test"]
    assert 0.0 <= implied["test"]["accuracy_from_primary"] <= 1.0


@pytest.mark.parametrize("weighting", ["fixed", "uncertainty"])
def test_a_multitask_head_learns_every_target_and_reports_consistency(pets_cache, cli, weighting):
    payload, _ = cli.json(["fit-head", pets_cache, "--head", "multitask", "--targets", "label,species",
                           "--task-weight", "species=0.3", "--task-weighting", weighting, "--hidden-units", "16"])
    params = payload["params"]
    assert params["targets"] == ["label", "species"] and params["task_weights"] == {"label": 1.0, "species": 0.3}
    assert set(payload["metrics_by_target"]) == {"label", "species"}
    assert payload["metrics_by_target"]["label"]["test"] == payload["metrics"]["test"]
    assert (params["learned_log_variances"] is None) == (weighting == "fixed")
    test = payload["implied"]["species"]["test"]
    assert {"accuracy_from_primary", "accuracy_direct", "consistency"} <= set(test)
    assert payload["metrics_by_target"]["species"]["test"]["top1"] == pytest.approx(test["accuracy_direct"])
    photo = pets_cache.parent.parent / "pets" / "images" / "fox_3.jpg"
    predicted, _ = cli.json(["predict", photo, "--head", payload["sidecar_path"], "--cache-dir", pets_cache.parent])
    by_target = predicted["results"][0]["by_target"]
    assert {p["label"] for p in by_target["species"]} == {"bird", "canine", "feline"}
    assert by_target["label"] == predicted["results"][0]["predictions"]
    bad, result = cli.json(["fit-head", pets_cache, "--head", "logreg", "--targets", "label,species"],
                           expect_ok=False)
    assert result.exit_code == 2 and "applies to multitask" in bad["error"]


@pytest.mark.parametrize("pooling", ["max", "avgmax"])
def test_the_pooling_is_recorded_and_applied_by_predict(pets_cache, cli, pooling):
    from pipeline.heads.store import load_head

    payload, _ = cli.json(["fit-head", pets_cache, "--head", "svm", "--pool", pooling])
    sidecar = json.loads(Path(payload["sidecar_path"]).read_text())
    assert sidecar["head_pooling"] == pooling and sidecar["head_input"] == f"{pooling}-pooled features"
    head, _ = load_head(Path(payload["sidecar_path"]))
    assert head.coef_.shape[0] == 512 * (2 if pooling == "avgmax" else 1)
    photo = pets_cache.parent.parent / "pets" / "images" / "cat_1.jpg"
    predicted, _ = cli.json(["predict", photo, "--head", payload["sidecar_path"], "--cache-dir", pets_cache.parent])
    assert sum(p["probability"] for p in predicted["results"][0]["predictions"]) == pytest.approx(1.0, abs=1e-5)
