"""Choosing a cache by what it holds (pipeline/caches/select.py): specs, the API's keywords, the CLI's CACHE."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest

from pipeline import api
from pipeline.caches.select import DEMO_DATASET, parse_spec, select_cache
from pipeline.errors import CacheError, UsageError


@pytest.fixture(scope="module")
def folder(tmp_path_factory):
    """One folder, three caches of the same images: stretch, crop, and quickstart's demo name."""
    from conftest import make_dataset

    from pipeline.extract.options import ExtractOptions
    from pipeline.extract.run import run_extract

    root = tmp_path_factory.mktemp("select")
    data = make_dataset(root / "pets", per_class=3)
    options = ExtractOptions(weights="none", input_size=32, precision="float32", batch_size=8, valid_fraction=0.3)
    cache_dir = root / "cache"
    paths = {policy: Path(run_extract(data, cache_dir, dataclasses.replace(options, resize=policy)).cache_path)
             for policy in ("stretch", "crop")}
    paths["demo"] = Path(run_extract(data, cache_dir, dataclasses.replace(options, name=DEMO_DATASET)).cache_path)
    return cache_dir, paths


def test_specs_parse_positional_and_named_parts():
    assert parse_spec("pets") == {"dataset": "pets"}
    assert parse_spec("pets/vgg16/block4_pool") == {"dataset": "pets", "backbone": "vgg16", "layer": "block4_pool"}
    assert parse_spec("*/mobilenet/resize=crop") == {"backbone": "mobilenet", "resize": "crop"}
    assert parse_spec("pool=avg") == {"pool": "avg"}
    with pytest.raises(UsageError, match="no property 'colour'"):
        parse_spec("pets/colour=red")
    with pytest.raises(UsageError, match="more than 3 positional parts"):
        parse_spec("a/b/c/d")


def test_ambiguity_lists_what_differs_and_how_to_pick(folder):
    cache_dir, paths = folder
    with pytest.raises(CacheError) as raised:
        api.open_cache(cache_dir)
    message = str(raised.value)
    assert "holds 2 caches; they differ in resize:" in message
    assert "-> pets/vgg16/block5_pool/resize=crop" in message and "-> pets/vgg16/block5_pool/resize=stretch" in message
    assert "1 cache(s) made by quickstart or fine-tune were set aside" in message
    assert api.open_cache(cache_dir, resize="crop").path == paths["crop"]
    assert api.open_cache(cache_dir, dataset=DEMO_DATASET).path == paths["demo"]  # chosen when it alone matches
    with pytest.raises(CacheError, match=r"no cache in .* matches backbone=mobilenet; its caches:"):
        api.open_cache(cache_dir, backbone="mobilenet")
    with pytest.raises(CacheError, match="does not match resize=crop: it has resize=stretch"):
        api.open_cache(paths["stretch"], resize="crop")
    with pytest.raises(UsageError, match="cannot be selected by colour"):
        api.open_cache(cache_dir, colour="red")


def test_the_demo_cache_is_set_aside_when_a_cache_of_your_own_matches(folder, tmp_path):
    paths = folder[1]
    only = tmp_path / "cache"
    only.mkdir()
    for name in ("stretch", "demo"):
        (only / paths[name].name).symlink_to(paths[name])
    assert select_cache(only) == only / paths["stretch"].name


def test_the_cli_takes_a_spec_wherever_it_takes_a_cache(folder, cli):
    cache_dir, paths = folder
    payload, _ = cli.json(["cache", "show", "pets/vgg16/resize=crop", "--cache-dir", cache_dir])
    assert payload["file"] == str(paths["crop"])
    payload, _ = cli.json(["fit-head", "pets/resize=stretch", "--head", "knn", "--cache-dir", cache_dir])
    assert payload["sidecar_path"].startswith(str(cache_dir / "heads" / paths["stretch"].stem))
    payload, result = cli.json(["report", "pets", "--cache-dir", cache_dir], expect_ok=False)
    assert result.exit_code == 1 and "differ in resize" in payload["error"]
    result = cli(["report", "--cache-dir", cache_dir])
    assert result.exit_code == 1 and "resize=crop" in result.stderr and "Traceback" not in result.output


def test_cache_ls_shows_what_differs_and_the_spec_of_each(folder, cli):
    cache_dir, paths = folder
    text = cli(["cache", "ls", "--cache-dir", cache_dir]).stdout
    crop = next(line for line in text.splitlines() if line.startswith(str(paths["crop"])))
    stretch = next(line for line in text.splitlines() if line.startswith(str(paths["stretch"])))
    assert "vgg16/block5_pool  resize=crop  " in crop and "vgg16/block5_pool  resize=stretch  " in stretch
    assert "Choose     pass `DATASET/BACKBONE/LAYER/NAME=VALUE`" in text
    payload, _ = cli.json(["cache", "ls", "--cache-dir", cache_dir])
    rows = {row["file"]: row for row in payload["caches"]}
    assert rows[str(paths["crop"])]["spec"] == "pets/vgg16/block5_pool/resize=crop"
    assert rows[str(paths["crop"])]["properties"]["store_dtype"] == "float32"
    assert select_cache(cache_dir, parse_spec(rows[str(paths["crop"])]["spec"])) == paths["crop"]


def test_a_data_folder_named_like_the_dataset_does_not_hide_the_spec(folder, cli, tmp_path, monkeypatch):
    cache_dir, paths = folder
    monkeypatch.chdir(tmp_path)
    (tmp_path / "pets").mkdir()  # the user's data folder, holding no cache
    payload, _ = cli.json(["cache", "show", "pets/resize=crop", "--cache-dir", cache_dir])
    assert payload["file"] == str(paths["crop"])
    payload, result = cli.json(["report", "pets", "--cache-dir", cache_dir], expect_ok=False)
    assert result.exit_code == 1 and "differ in resize" in payload["error"]
    payload, _ = cli.json(["report", tmp_path / "pets", "--cache-dir", tmp_path / "none"], expect_ok=False)
    assert "no feature cache in" in payload["error"]
