"""Feature maps on a tiny random-weight VGG16: ranking, the grid, layer names, the head's extraction."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from conftest import TINY_BACKBONE_ARGS, TINY_SIZE

SMALL_LAYER = "block2_conv1"  # 16x16x128 at 32 px


@pytest.fixture
def photo(tiny_dataset) -> Path:
    return sorted((tiny_dataset / "test").rglob("*.jpg"))[0]


def test_channels_are_ranked_by_mean_activation():
    from pipeline.explain.features import strongest_channels

    maps = np.zeros((2, 2, 5))
    maps[..., 3] = 4.0
    maps[0, 0, 1] = 8.0  # mean 2
    maps[..., 4] = 2.0  # mean 2: a tie goes to the lower index
    assert strongest_channels(maps, 3) == [3, 1, 4]


def test_cli_draws_the_strongest_channels_of_a_layer(cli, photo, tmp_path):
    payload, _ = cli.json(["features", photo, "--backbone", "vgg16", *TINY_BACKBONE_ARGS[:4], "--layer", SMALL_LAYER,
                           "--channels", 5, "--out", tmp_path, "--cache-dir", tmp_path / "cache"])
    assert payload["layer"] == SMALL_LAYER and payload["shape"] == [TINY_SIZE // 2, TINY_SIZE // 2, 128]
    means = [c["mean"] for c in payload["channels"]]
    assert len(means) == 5 and means == sorted(means, reverse=True)
    folder = Path(payload["result_dir"])
    assert (folder / "features.png").stat().st_size > 0
    sidecar = json.loads((folder / "result.json").read_text())
    assert sidecar["images"] == ["features.png"] and sidecar["settings"]["layer"] == SMALL_LAYER
    assert sidecar["classifier"]["kind"] == "backbone"


def test_the_ranking_matches_the_layers_own_output(photo, tmp_path):
    from pipeline.data.images import decode_image
    from pipeline.explain.features import activations, feature_source, run_features

    source = feature_source(tmp_path, backbone="vgg16", weights="none", input_size=TINY_SIZE)
    maps = activations(source, SMALL_LAYER, decode_image(photo, source.resize))
    outcome = run_features(photo, source, SMALL_LAYER, channels=3, out_dir=tmp_path)
    means = maps.reshape(-1, maps.shape[-1]).mean(axis=0)
    assert [c["channel"] for c in outcome["channels"]] == list(np.argsort(-means, kind="stable")[:3])
    assert outcome["channels"][0]["mean"] == pytest.approx(float(means.max()), rel=1e-5)


def test_an_unknown_layer_lists_the_valid_ones(cli, photo, tmp_path):
    payload, result = cli.json(["features", photo, "--backbone", "vgg16", *TINY_BACKBONE_ARGS[:4], "--layer",
                                "block9_conv9", "--out", tmp_path, "--cache-dir", tmp_path], expect_ok=False)
    assert result.exit_code == 2
    assert "no layer 'block9_conv9'" in payload["error"] and "block1_conv1" in payload["error"]
    assert "block5_pool" in payload["error"]


def test_a_head_uses_its_own_extraction_and_layer(cli, tiny_dataset, photo, tmp_path):
    from conftest import TINY_CLI_ARGS

    cache_dir = tmp_path / "cache"
    extracted, _ = cli.json(["extract", tiny_dataset, *TINY_CLI_ARGS, "--cache-dir", cache_dir])
    fitted, _ = cli.json(["fit-head", extracted["cache_path"], "--head", "logreg", "--cache-dir", cache_dir])
    head = Path(fitted["sidecar_path"])
    payload, _ = cli.json(["features", photo, "--head", head, "--channels", 2, "--cache-dir", cache_dir])
    assert payload["layer"] == "block5_pool" and Path(payload["result_dir"]).parent == head.parent / "explain"


def test_backbone_and_head_are_exclusive(cli, photo, tmp_path):
    payload, result = cli.json(["features", photo, "--cache-dir", tmp_path], expect_ok=False)
    assert result.exit_code == 2 and "--backbone" in payload["error"]
