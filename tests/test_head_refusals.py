"""fit-head refuses caches no classifier can be fitted on, with a message that says how to fix them."""

import re

import numpy as np
import pytest
from conftest import TINY_BACKBONE_ARGS, TINY_CLI_ARGS, make_dataset

from pipeline.cache.format import read_cache_info

#: TINY_CLI_ARGS without its --valid-fraction, for tests that choose their own.
FAST_ARGS = [*TINY_BACKBONE_ARGS, "--batch-size", "8"]


def _refused(cli, args, pattern):
    result = cli(args)
    assert result.exit_code == 1, result.output
    assert "Traceback" not in result.output
    assert re.search(pattern, result.output, re.S), result.output
    return result.output


@pytest.mark.parametrize("kind", ["logreg", "knn"])
def test_fit_head_refuses_a_one_class_cache(cli, tmp_path, kind):
    data = make_dataset(tmp_path / "cats", classes=("cat",))
    cli.json(["extract", data, *TINY_CLI_ARGS, "--cache-dir", tmp_path / "c"])
    _refused(cli, ["fit-head", "--head", kind, "--cache-dir", tmp_path / "c"],
             r"has only one class \('cat'\); a classifier needs at least 2 classes.*own folder.*re-run extract")
    payload, _ = cli.json(["fit-head", "--head", kind, "--cache-dir", tmp_path / "c"], expect_ok=False)
    assert "only one class" in payload["error"]
    assert not (tmp_path / "c" / "heads").exists() or not any((tmp_path / "c" / "heads").rglob("*.json"))


def test_fit_head_refuses_a_train_split_with_one_class(cli, tmp_path):
    data = make_dataset(tmp_path / "pets", classes=("cat",), splits=("train", "test"))
    make_dataset(data, classes=("dog",), splits=("test",), seed=1)  # dogs only in test
    cli.json(["extract", data, *TINY_CLI_ARGS, "--cache-dir", tmp_path / "c"])
    _refused(cli, ["fit-head", "--head", "svm", "--cache-dir", tmp_path / "c"],
             r"train split of cache .* only one class \(cat\).*dog: 6 test.*at least 2 classes in train")


def test_empty_validation_split_message_is_accurate_and_its_fix_works(cli, tmp_path):
    data = make_dataset(tmp_path / "pets", classes=("cat", "dog"), per_class=6, splits=())
    payload, _ = cli.json(["extract", data, *FAST_ARGS, "--valid-fraction", "0.01", "--cache-dir", tmp_path / "c"])
    assert payload["split_counts"].get("valid", 0) == 0, "the fixture no longer leaves validation empty"
    train = payload["split_counts"]["train"]
    output = _refused(cli, ["fit-head", "--head", "logreg", "--cache-dir", tmp_path / "c"],
                      rf"validation split of cache .* is empty: the dataset has only {train} training images "
                      r"\((cat|dog) \d, (cat|dog) \d\), and carving 1% of so few images")
    assert "--valid-fraction 0.15 (or" not in output  # the old advice, which was already the default
    suggested = re.search(r"--valid-fraction (\d\.\d\d) \(replaying", output.replace("\n", " "))
    assert suggested, output

    cli.json(["extract", data, *FAST_ARGS, "--valid-fraction", suggested.group(1), "--cache-dir", tmp_path / "c"])
    info = read_cache_info(next((tmp_path / "c").glob("*.h5")))
    for split in ("train", "valid"):
        assert np.all(np.bincount(info.images.label[info.images.in_split(split)], minlength=2) >= 1), split
    cli.json(["fit-head", "--head", "logreg", "--cache-dir", tmp_path / "c"])
