"""`report` names the rung a leaderboard suggests next, with its reason and command."""

from __future__ import annotations

from pathlib import Path

import pytest
from conftest import TINY_BACKBONE

from pipeline.cache.format import read_cache_info
from pipeline.extract.options import ExtractOptions
from pipeline.extract.run import run_extract
from pipeline.report import rungs
from pipeline.report.rungs import next_rung


@pytest.fixture(scope="module")
def cache(tmp_path_factory):
    from conftest import make_dataset

    root = tmp_path_factory.mktemp("rungs")
    data = make_dataset(root / "pets")
    return Path(run_extract(data, root / "cache", ExtractOptions(**TINY_BACKBONE, valid_fraction=0.3)).cache_path)


def _row(kind="logreg", train=1.0, valid=0.8, name="logreg-1"):
    return {"kind": kind, "name": name, "train_top1": train, "valid_top1": valid, "path": f"/heads/{name}.json"}


def test_without_heads_the_first_rung_is_a_frozen_head(cache):
    assert next_rung(cache, [])["rung"] == 1


def test_over_fitting_on_small_data_suggests_views_not_fine_tuning(cache):
    suggestion = next_rung(cache, [_row(train=1.0, valid=0.7)])
    assert suggestion["rung"] == 2 and "over-fits" in suggestion["advice"] and "--views 4" in suggestion["command"]


def test_under_fitting_suggests_earlier_layers(cache):
    suggestion = next_rung(cache, [_row(train=0.6, valid=0.55)])
    assert suggestion["rung"] == 2 and "--layer" in suggestion["command"]


def test_a_solved_cache_stays_on_the_first_rung(cache):
    assert next_rung(cache, [_row(train=1.0, valid=0.99)])["rung"] == 1


def test_large_data_suggests_fine_tuning_the_top_block(cache, monkeypatch):
    monkeypatch.setattr(rungs, "LARGE_PER_CLASS", 1)
    suggestion = next_rung(cache, [_row(train=0.95, valid=0.9)])
    assert suggestion["rung"] == 3 and "--unfreeze block5" in suggestion["command"]
    tuned = next_rung(cache, [_row(kind="fine-tuned", valid=0.95, name="fine-tuned-block5"), _row(valid=0.9)])
    assert tuned["rung"] == 4


def test_a_fine_tune_that_did_not_help_says_so(cache):
    suggestion = next_rung(cache, [_row(valid=0.9), _row(kind="fine-tuned", valid=0.85, name="fine-tuned-block5")])
    assert suggestion["rung"] == 1 and "did not help" in suggestion["advice"]


def test_an_earlier_layer_that_scores_better_is_named(cache):
    from pipeline.heads.fitting import fit_head

    info_dir = cache.parent
    data = read_cache_info(cache).data_root
    earlier = run_extract(data, info_dir, ExtractOptions(**TINY_BACKBONE, layer="block4_pool", valid_fraction=0.3))
    fit_head(Path(earlier.cache_path), "logreg")
    suggestion = next_rung(cache, [_row(train=0.3, valid=0.2)])
    assert suggestion["rung"] == 2 and "an earlier layer, block4_pool" in suggestion["advice"]


def test_report_prints_the_next_rung(cache, cli):
    from pipeline.heads.fitting import fit_head

    fit_head(cache, "logreg")
    payload, _ = cli.json(["report", cache])
    assert payload["next_rung"]["rung"] in (1, 2, 3, 4)
    assert "Next rung" in cli(["report", cache]).stdout
