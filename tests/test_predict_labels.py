"""`predict` output: ImageNet names hold commas, so a line shows each class's first synonym, separated by "; "."""

from __future__ import annotations

from pathlib import Path

import pytest

from pipeline.backbones.sources import nudity_mobilenet
from pipeline.cli.predict_commands import PREDICTION_SEPARATOR, ranked_text
from pipeline.predict.imagenet import short_name


def test_imagenet_names_shorten_to_their_first_synonym():
    assert short_name("great white shark, white shark, man-eater, man-eating shark, Carcharodon carcharias") == \
        "great white shark"
    assert short_name("golden retriever") == "golden retriever"


def test_a_line_of_predictions_splits_back_into_its_classes():
    predictions = [{"label": "tabby, tabby cat", "name": "tabby", "probability": 0.61},
                   {"label": "tiger cat", "name": "tiger cat", "probability": 0.2},
                   {"label": "cats, and, dogs", "probability": 0.1}]  # a head's class: no short name, shown whole
    text = ranked_text(predictions)
    assert text == "tabby 0.610; tiger cat 0.200; cats, and, dogs 0.100"
    assert len(text.split(PREDICTION_SEPARATOR)) == len(predictions)


@pytest.mark.skipif(nudity_mobilenet.find_source_file() is None, reason="offline MobileNet weights not installed")
def test_predict_imagenet_prints_first_synonyms(cli, tmp_path, monkeypatch):
    import sklearn.datasets

    monkeypatch.setenv("KERAS_HOME", str(tmp_path / "keras_home"))
    china = Path(sklearn.datasets.__file__).parent / "images" / "china.jpg"
    result = cli(["predict", china, "--imagenet", "--backbone", "mobilenet", "--cache-dir", tmp_path / "cache"])
    assert result.exit_code == 0, result.output
    ranked = result.stdout.strip().split(": ", 1)[1].split(PREDICTION_SEPARATOR)
    assert len(ranked) == 5 and not any("," in item for item in ranked), ranked
