"""`search`: candidates chosen on validation only, within the budget, resumable, near-free when repeated.

One tiny four-class dataset (given train/valid/test folders) is searched once per module with
genuine MobileNet weights at small input sizes; the other tests search copies of it in the same
cache folder, so their rows come from the sibling cache (no forward passes) and only the heads are
fitted again.
"""

from __future__ import annotations

import json
import shutil
import time
from pathlib import Path

import pytest
from conftest import make_dataset

from pipeline.search.record import DONE, SKIPPED, load_record
from pipeline.search.run import run_search
from pipeline.search.scheduler import choose_winner, standard_error
from pipeline.search.space import SearchSpace

CLASSES = ("cat", "dog", "fox", "owl")
#: Small sizes keep the forward passes quick; 32 is MobileNet's smallest input.
#: An earlier layer is offered for MobileNet here only so the tiny search exercises the layer rung.
EARLIER = "conv_pw_11_relu"
SPACE = SearchSpace(backbones=("mobilenet",), heads=("logreg", "knn"), sizes={"mobilenet": (32, 48)},
                    layers={"mobilenet": (EARLIER,)}, poolings=("avg", "avgmax"), views=1, fusion=False)
GENEROUS = 600.0


@pytest.fixture(scope="module")
def searched(tmp_path_factory):
    """(dataset, cache dir, first result, its wall seconds) of one full search of the tiny dataset."""
    root = tmp_path_factory.mktemp("search")
    data = make_dataset(root / "pets", classes=CLASSES, per_class=5, splits=("train", "valid", "test"))
    cache_dir = root / "cache"
    started = time.perf_counter()
    result = run_search(data, cache_dir, GENEROUS, space=SPACE)
    return data, cache_dir, result, time.perf_counter() - started


def _copy(data: Path, name: str) -> Path:
    """The dataset under another folder name (a second dataset of the same images)."""
    target = data.parent / name
    shutil.copytree(data, target)
    return target


def _valid_scores(result) -> dict:
    return {row["name"]: row["valid"]["top1"] for row in result.leaderboard if row["status"] == DONE}


def test_every_axis_is_tried_and_the_winner_is_a_normal_head_that_predicts(searched, cli):
    data, cache_dir, result, _ = searched
    names = {row["name"] for row in result.leaderboard}
    assert {"mobilenet@32 logreg", "mobilenet@32 knn", "mobilenet@32 logreg avgmax"} <= names
    assert any(name.startswith("mobilenet@48 ") for name in names)
    assert any("+1views " in name for name in names)
    assert any(name.startswith("mobilenet@") and "+1views " in name and name.endswith(" tta") for name in names)
    record = load_record(Path(result.record_path))
    at_layer = [e for name, e in record["candidates"].items() if f":{EARLIER} " in name and e["status"] == DONE]
    assert at_layer and all(e["rung"] == 4 and e["recipe"]["layer"] == EARLIER for e in at_layer)
    from pipeline.cache.format import read_cache_info

    assert read_cache_info(Path(at_layer[0]["cache"])).spec.layer == EARLIER  # a normal cache of that layer
    sidecar = json.loads(Path(result.head).read_text())
    assert sidecar["kind"] == result.recipe["head"] and sidecar["feature_spec"]["input_size"] == result.recipe[
        "input_size"]
    photos = {photo: name for name in CLASSES for photo in sorted((data / "test" / name).iterdir())}
    payload, _ = cli.json(["predict", *photos, "--head", result.head, "--cache-dir", cache_dir])
    predicted = [r["predictions"][0]["label"] for r in payload["results"]]
    right = sum(label == truth for label, truth in zip(predicted, photos.values()))
    assert right / len(photos) == pytest.approx(result.test["top1"])  # predict reproduces the test score


def test_candidates_are_scored_on_validation_only_and_test_once_for_the_winner(searched):
    _, _, result, _ = searched
    record = load_record(Path(result.record_path))
    assert record["candidates"] and all("test" not in entry for entry in record["candidates"].values())
    assert record["winner"]["test"]["n"] == len(CLASSES) * 5 and "once" in record["winner"]["test_note"]
    assert result.selection["valid_images"] == len(CLASSES) * 5
    assert result.caveats == []  # 5 images of every class in valid and test: nothing to flag


def test_a_second_identical_search_extracts_and_fits_nothing(searched):
    data, cache_dir, first, first_seconds = searched
    started = time.perf_counter()
    again = run_search(data, cache_dir, GENEROUS, space=SPACE)
    seconds = time.perf_counter() - started
    assert (again.extracted_rows, again.fitted) == (0, 0)
    assert again.reused == sum(row["status"] == DONE for row in first.leaderboard)
    assert (again.winner, again.head) == (first.winner, first.head)
    assert seconds < 0.25 * first_seconds, (seconds, first_seconds)


def test_shuffled_test_labels_cannot_change_the_winner(searched):
    data, cache_dir, first, _ = searched
    shuffled = _copy(data, "pets-shuffled-test")
    for index, name in enumerate(CLASSES):  # every test photo moves to the next class: all test labels wrong
        source = data / "test" / name
        target = shuffled / "test" / CLASSES[(index + 1) % len(CLASSES)]
        for photo in source.iterdir():
            (shuffled / "test" / name / photo.name).unlink()
            shutil.copy(photo, target / f"moved-{photo.name}")
    result = run_search(shuffled, cache_dir, GENEROUS, space=SPACE)
    assert result.extracted_rows == 0  # same images: every row comes from the first search's caches
    assert result.winner == first.winner
    assert _valid_scores(result) == _valid_scores(first)
    assert any(name.endswith(" tta") for name in _valid_scores(first))  # TTA candidates are chosen on valid too
    assert result.test["top1"] < first.test["top1"]


def test_an_interrupted_search_resumes_where_it_stopped(searched):
    data, cache_dir, first, _ = searched
    copy = _copy(data, "pets-interrupted")
    fits = []

    def interrupt_on_third_fit(event):
        if event.action == "fit":
            fits.append(event.what)
            if len(fits) == 3:
                raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        run_search(copy, cache_dir, GENEROUS, space=SPACE, progress=interrupt_on_third_fit)
    record = load_record(cache_dir / "heads" / "search-pets-interrupted.json")
    assert sorted(name for name, e in record["candidates"].items() if e["status"] == DONE) == sorted(fits[:2])
    resumed = run_search(copy, cache_dir, GENEROUS, space=SPACE)
    assert resumed.reused == 2 and resumed.extracted_rows == 0
    assert resumed.winner == first.winner and _valid_scores(resumed) == _valid_scores(first)


#: Input sizes from which the budget test's cost model is told forward passes cost this many times more.
COSTLY_FROM_SIZE, COST_FACTOR = 160, 1000.0


def test_the_budget_is_respected_and_what_it_could_not_pay_for_is_listed(searched, tmp_path, monkeypatch):
    from pipeline.search.cost import CostModel

    measured = CostModel.forward_seconds_per_row

    def costly_at_large_sizes(self, extraction):  # so some steps cannot fit, however fast the machine is today
        factor = COST_FACTOR if extraction.input_size >= COSTLY_FROM_SIZE else 1.0
        return measured(self, extraction) * factor

    monkeypatch.setattr(CostModel, "forward_seconds_per_row", costly_at_large_sizes)
    data = make_dataset(tmp_path / "pets", classes=CLASSES, per_class=5, splits=("train", "valid", "test"))
    shutil.copytree(searched[1] / "weights", tmp_path / "cache" / "weights")  # converted once per module
    space = SearchSpace(("mobilenet",), ("logreg",), {"mobilenet": (32, 64, 96, 128, 160, 192, 224)},
                        poolings=("avg",), views=4, fusion=False)
    budget = 40.0
    result = run_search(data, tmp_path / "cache", budget, space=space)
    # Steps start only when their estimate (from measured throughput) fits; the last one may run a
    # little long when the shared machine slows down mid-step.
    assert result.spent_seconds <= budget * 1.1
    skipped = [row for row in result.leaderboard if row["status"] == SKIPPED]
    assert skipped and all("estimated" in row["note"] for row in skipped)
    assert any(row["name"].startswith("mobilenet@224") for row in skipped)


def test_a_budget_too_small_for_anything_names_the_cheapest_candidates_cost(searched, cli, tmp_path):
    data, _, _, _ = searched
    result = cli(["search", data, "--budget", "2s", "--backbones", "mobilenet", "--cache-dir", tmp_path / "fresh"])
    assert result.exit_code == 2
    assert "too small" in result.output and "cheapest candidate (mobilenet@224 logreg)" in result.output
    assert "pass --budget" in result.output


@pytest.mark.parametrize("option, value, valid", [
    ("--backbones", "vgg16,alexnet", "valid: vgg16, mobilenet, efficientnet_lite0"),
    ("--heads", "logreg,forest", "valid: gap-dense, logreg, svm, mlp, knn"),
])
def test_unknown_backbones_or_heads_are_refused_naming_the_valid_ones(cli, tmp_path, option, value, valid):
    data = make_dataset(tmp_path / "pets", per_class=2)
    payload, result = cli.json(["search", data, option, value, "--cache-dir", tmp_path / "cache"], expect_ok=False)
    assert result.exit_code == 2
    assert valid in payload["error"] and value.split(",")[1] in payload["error"]


def test_budget_syntax_errors_are_usage_errors(cli, tmp_path):
    data = make_dataset(tmp_path / "pets", per_class=2)
    result = cli(["search", data, "--budget", "soon", "--cache-dir", tmp_path / "cache"])
    assert result.exit_code == 2 and "30m, 1h30m, 90s" in result.output


def test_the_simplest_candidate_within_one_standard_error_wins():
    def entry(backbone, size, top1, head="logreg", order=0):
        return {"status": DONE, "valid": {"top1": top1}, "order": order,
                "recipe": {"backbone": backbone, "input_size": size, "views": 0, "head": head, "pooling": "avg"}}

    candidates = {"big": entry("vgg16", 448, 0.90, order=1), "small": entry("mobilenet", 224, 0.85, order=2),
                  "worse": entry("efficientnet_lite0", 224, 0.60, order=3)}
    name, selection = choose_winner(candidates, valid_images=20)
    assert standard_error(0.90, 20) > 0.05 and name == "small" and selection["simpler_than_best"]
    name, _ = choose_winner(candidates, valid_images=2000)  # a large validation split tells them apart
    assert name == "big"


def test_the_layer_rung_tries_the_best_backbones_earlier_layers_only():
    from pipeline.search.scheduler import layer_rung
    from pipeline.search.space import EARLIER_LAYERS, Extraction

    space = SearchSpace(("vgg16", "mobilenet"), ("logreg",), {"vgg16": (224, 320), "mobilenet": (224,)},
                        layers={"vgg16": EARLIER_LAYERS["vgg16"]})
    scores = {Extraction("vgg16", 224): 0.7, Extraction("vgg16", 320): 0.8, Extraction("mobilenet", 224): 0.6,
              Extraction("vgg16", 320, views=4): 0.9}
    assert layer_rung(space, scores) == [Extraction("vgg16", 320, layer="block4_pool")]
    assert layer_rung(space, {**scores, Extraction("mobilenet", 224): 0.85}) == []  # no earlier layer offered
    assert Extraction("vgg16", 320, layer="block4_pool").name == "vgg16@320:block4_pool"


def test_test_time_augmentation_wins_only_beyond_one_standard_error_of_the_plain_recipe():
    def entry(top1, tta=False, order=0):
        recipe = {"backbone": "mobilenet", "input_size": 224, "views": 4, "head": "logreg", "pooling": "avg"}
        return {"status": DONE, "valid": {"top1": top1}, "order": order, "recipe": recipe | ({"tta": True} if tta
                                                                                             else {})}

    candidates = {"plain": entry(0.80, order=1), "plain tta": entry(0.84, tta=True, order=2)}
    assert choose_winner(candidates, valid_images=37)[0] == "plain"  # 1.5 images apart on 37: noise
    assert choose_winner(candidates, valid_images=5000)[0] == "plain tta"


def test_a_winner_with_test_time_augmentation_keeps_it_and_predicts_with_it(searched, cli):
    from pipeline.search.final import fit_winner

    data, cache_dir, result, _ = searched
    record = load_record(Path(result.record_path))
    name, entry = max(((n, e) for n, e in record["candidates"].items() if n.endswith(" tta") and e["status"] == DONE),
                      key=lambda item: item[1]["valid"]["top1"])
    winner = fit_winner(name, entry)
    sidecar = json.loads(Path(winner["head"]).read_text())
    assert sidecar["tta_views"] == [0, 1] and sidecar["tta"]["view_set"] == "all"
    assert winner["valid"]["top1"] == entry["valid"]["top1"]  # the score it was chosen on, refitted the same
    assert winner["valid"] == {k: v for k, v in sidecar["tta"]["metrics"]["valid"].items() if k in winner["valid"]}
    assert winner["plain"]["test"]["top1"] == sidecar["metrics"]["test"]["top1"]
    photos = {photo: label for label in CLASSES for photo in sorted((data / "test" / label).iterdir())}
    payload, _ = cli.json(["predict", *photos, "--head", winner["head"], "--cache-dir", cache_dir])
    assert payload["tta_views"] == [0, 1] and all(r["views_averaged"] == 2 for r in payload["results"])
    right = sum(r["predictions"][0]["label"] == label for r, label in zip(payload["results"], photos.values()))
    assert right / len(photos) == pytest.approx(winner["test"]["top1"])  # predict reproduces the TTA test score


def test_report_shows_the_search_that_used_the_cache(searched, cli):
    _, cache_dir, result, _ = searched
    cache = json.loads(Path(result.head).read_text())["cache"]["path"]
    payload, _ = cli.json(["report", cache, "--cache-dir", cache_dir])
    search = next(s for s in payload["searches"] if s["record"] == result.record_path)
    assert search["winner"] == result.winner and search["valid_images"] == len(CLASSES) * 5
    assert len(search["candidates"]) == len(result.leaderboard)
    text = cli(["report", cache, "--cache-dir", cache_dir]).output
    assert f"Search     winner {result.winner}" in text


def test_costs_come_from_measured_throughput_scaled_by_pixels_and_missing_rows():
    from pipeline.search.cost import CostModel
    from pipeline.search.space import Extraction

    cost = CostModel(startup_seconds=10.0)
    vgg_native, vgg_large, light = Extraction("vgg16", 224), Extraction("vgg16", 448), Extraction("mobilenet", 224)
    assert cost.extraction_seconds(vgg_native, 0) == 0.0  # everything cached: free
    borrowed = cost.extraction_seconds(vgg_native, 100)
    cost.observe_extraction(light, rows=100, seconds=30.0, startup_seconds=10.0)  # 0.2 s a row
    assert cost.extraction_seconds(light, 50) == pytest.approx(10.0 + 50 * 0.2)
    assert cost.extraction_seconds(vgg_native, 100) != borrowed  # the machine's rate per GFLOP, learnt
    cost.observe_probe(vgg_native, forward_seconds_per_row=0.5, startup_seconds=4.0)  # a timed probe wins
    per_row = 0.5 + cost.decode_seconds
    assert cost.extraction_seconds(vgg_native, 10) == pytest.approx(4.0 + 10 * per_row)
    assert cost.extraction_seconds(vgg_large, 10) == pytest.approx(4.0 + 10 * per_row * 4)  # 2x side, 4x pixels


def test_the_notebook_api_searches_with_the_same_filters(tmp_path):
    from pipeline import api
    from pipeline.errors import UsageError

    data = make_dataset(tmp_path / "pets", per_class=2)
    with pytest.raises(UsageError, match="unknown backbone 'alexnet'"):
        api.search(data, budget="1m", backbones=["alexnet"], cache_dir=tmp_path / "cache")
    with pytest.raises(UsageError, match="--budget must be a duration"):
        api.search(data, budget="soon", cache_dir=tmp_path / "cache")


@pytest.mark.realdata
def test_search_on_real_dog_photos_finds_a_winner_within_the_budget(cli, shared_data, tmp_path):
    payload, _ = cli.json(["search", shared_data / "dogimages-mini", "--backbones", "efficientnet_lite0",
                           "--heads", "logreg", "--budget", "2m", "--cache-dir", tmp_path / "cache"])
    assert payload["recipe"]["backbone"] == "efficientnet_lite0" and payload["valid"]["top1"] >= 0.9
    assert payload["spent_seconds"] <= 120 * 1.1 and Path(payload["head"]).is_file()
    assert payload["test"]["n"] == 12 and "once" in payload["test_note"]
    # 3 test (and valid) photos per breed: the figures carry the split caveat fit-head and report print
    assert any(text.startswith("test ") and "fewer than 5 images" in text for text in payload["caveats"])
