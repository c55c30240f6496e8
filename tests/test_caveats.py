"""Scores that look better than they are: splits missing classes or holding a handful of images per class."""

from __future__ import annotations

import numpy as np
import pytest
from conftest import TINY_CLI_ARGS, make_dataset

from pipeline.heads.caveats import MIN_IMAGES_PER_CLASS, caveat_notes, metrics_caveat, split_caveat
from pipeline.heads.metrics import classification_metrics


def test_a_split_missing_classes_says_what_its_score_measures():
    caveat = split_caveat("test", [10, 0, 7, 0], ["a", "b", "c", "d"])
    assert caveat.missing == ("b", "d") and caveat.thin == ()
    assert caveat.text.startswith("test covers 2 of 4 classes (none of b, d)")
    assert "top-1 and mean/class measure those 2 classes only, not the 4-class problem" in caveat.text


def test_classes_with_a_handful_of_images_are_flagged_at_the_named_threshold():
    enough, few = MIN_IMAGES_PER_CLASS, MIN_IMAGES_PER_CLASS - 1
    assert split_caveat("valid", [enough, enough], ["a", "b"]) is None
    caveat = split_caveat("valid", [enough, few], ["a", "b"])
    assert caveat.thin == ("b",) and caveat.missing == ()
    assert f"1 of 2 classes have fewer than {MIN_IMAGES_PER_CLASS} images (b)" in caveat.text
    assert split_caveat("valid", [0, 0], ["a", "b"]) is None  # an empty split is shown as empty, not caveated


def test_the_caveat_is_read_from_a_metrics_dict_and_merged_for_a_leaderboard():
    y = np.array([0] * 6 + [2] * 6)
    metrics = classification_metrics(y, np.eye(3)[y], ("cat", "dog", "fox"))
    assert metrics["top1"] == 1.0
    caveat = metrics_caveat("test", metrics)
    assert caveat.missing == ("dog",)
    rows = [{"name": "a", "caveats": [caveat.text]}, {"name": "b", "caveats": [caveat.text]}, {"name": "c"}]
    assert caveat_notes(rows) == [f"{caveat.text} (heads: a, b)"]
    assert caveat_notes(rows[:2]) == [caveat.text]


@pytest.mark.realdata
def test_the_oxford_official_test_list_covering_3_of_37_breeds_is_flagged(shared_data):
    from pipeline.data.indexing import index_dataset

    index = index_dataset(shared_data / "oxford-pets-mini")
    counts = np.bincount([r.label for r in index.records if r.split == "test"], minlength=len(index.class_names))
    caveat = split_caveat("test", counts, index.class_names)
    assert len(index.class_names) == 37 and len(caveat.missing) == 34
    assert caveat.text.startswith("test covers 3 of 37 classes")
    valid = np.bincount([r.label for r in index.records if r.split == "valid"], minlength=37)
    assert split_caveat("valid", valid, index.class_names).thin  # about one image per breed carved


def test_fit_head_report_and_html_print_the_caveat(tmp_path, cli):
    data = make_dataset(tmp_path / "zoo", classes=("cat", "dog", "fox"), per_class=6, splits=("train",))
    make_dataset(data, classes=("cat",), per_class=3, splits=("test",), seed=1)
    cache_dir = tmp_path / "cache"
    cli.json(["extract", data, *TINY_CLI_ARGS, "--cache-dir", cache_dir])
    text = cli(["fit-head", "--head", "knn", "--cache-dir", cache_dir]).stdout
    assert "Caveat     test covers 1 of 3 classes (none of dog, fox)" in text
    payload, _ = cli.json(["fit-head", "--head", "logreg", "--cache-dir", cache_dir])
    test = [c for c in payload["caveats"] if c["split"] == "test"]
    assert len(test) == 1 and test[0]["missing"] == ["dog", "fox"] and test[0]["classes"] == 3
    report = cli(["report", "--cache-dir", cache_dir, "--html", tmp_path / "page.html"]).stdout
    assert "Caveat     test covers 1 of 3 classes" in report and "(heads:" not in report
    page = (tmp_path / "page.html").read_text()
    assert page.count('<p class="caveat"><b>Caveat:</b> test covers 1 of 3 classes') == 3  # leaderboard + 2 heads
