"""The notebook API: arrays, scores and recorded results, and the README's example run as written."""

from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np
import pytest
from conftest import REPO_ROOT

from pipeline import api
from pipeline.errors import HeadError, UsageError


@pytest.fixture
def cache(tiny_dataset, tmp_path, tiny_options):
    from pipeline.extract.run import run_extract

    return Path(run_extract(tiny_dataset, tmp_path / "cache", tiny_options).cache_path)


def test_arrays_paths_and_targets_line_up(cache):
    opened = api.open_cache(cache.parent)
    x, y = opened.arrays("train")
    assert x.dtype == np.float32 and x.shape == (len(y), 512) and opened.split_sizes()["train"] == len(y)
    paths = opened.paths("train")
    assert len(paths) == len(y) and all(path.is_file() for path in paths)
    assert [opened.class_names[label] for label in y] == [path.parent.name for path in paths]
    assert opened.targets == {"label": ("cat", "dog")}
    assert opened.arrays("train", pool="avgmax")[0].shape[1] == 1024
    with pytest.raises(UsageError, match="no 'holdout' images"):
        opened.arrays("holdout")
    with pytest.raises(UsageError, match="no 'holdout' images; its splits are: train, valid, test"):
        opened.paths("holdout")


def test_score_and_record_put_an_outside_model_in_the_leaderboard(cache, cli):
    opened = api.open_cache(cache)
    _, y_test = opened.arrays("test")
    perfect = np.eye(2)[y_test]
    assert api.score(y_test, perfect, opened.class_names)["top1"] == 1.0
    with pytest.raises(UsageError, match="one column per class"):
        api.score(y_test, perfect[:, :1], opened.class_names)
    with pytest.raises(UsageError, match="do not sum to 1"):
        api.record(opened, "scores", {"test": perfect * 3})
    sidecar = api.record(opened, "oracle", {"test": perfect}, params={"cheat": True})
    assert json.loads(sidecar.read_text())["metrics"]["test"]["top1"] == 1.0
    board, _ = cli.json(["report", cache])
    row = next(row for row in board["heads"] if row["kind"] == "external")
    assert row["test_top1"] == 1.0 and row["name"].startswith("oracle-")
    from pipeline.heads.store import load_head

    with pytest.raises(HeadError, match="fitted outside this tool"):
        load_head(sidecar)


def test_the_readme_example_runs_as_written(cache, capsys):
    readme = (REPO_ROOT / "README.md").read_text()
    code = re.search(r"<!-- api-example -->\n```python\n(.*?)```", readme, re.S).group(1)
    assert 'api.open_cache("cache")' in code
    exec(compile(code.replace('api.open_cache("cache")', f"api.open_cache({str(cache)!r})"), "README", "exec"), {})
    assert re.search(r"valid top-1 \d\.\d{3}, mean per-class \d\.\d{3}", capsys.readouterr().out)
    recorded = [json.loads(p.read_text()) for p in (cache.parent / "heads" / cache.stem).glob("*.json")]
    assert any(s.get("external_name") == "hist-gradient-boosting" and "test" in s["metrics"] for s in recorded)
