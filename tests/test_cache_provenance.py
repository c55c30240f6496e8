"""A cache's weights, dataset and origin attributes read as values (pipeline.cache.provenance) and
written back byte for byte: the JSON on disk is what earlier releases wrote and read."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import h5py
import pytest
from conftest import TINY_BACKBONE, make_dataset

from pipeline.cache.format import read_cache_info
from pipeline.cache.provenance import DatasetInfo, OriginInfo, WeightsInfo
from pipeline.data.dataset import SplitCarving
from pipeline.errors import CacheError
from pipeline.extract.options import ExtractOptions
from pipeline.extract.run import run_extract

FORMAT_1_CACHE = (Path(__file__).parent / "fixtures" / "cache-format-1" / "cache"
                  / "pets-vgg16-block5_pool-de05daf1e7.h5")


@pytest.fixture(scope="module")
def extracted(tmp_path_factory) -> tuple[Path, Path, ExtractOptions]:
    """(dataset folder, cache file, options) of one tiny extraction shared by this module's tests."""
    options = ExtractOptions(**TINY_BACKBONE, batch_size=8, valid_fraction=0.3)
    root = tmp_path_factory.mktemp("provenance")
    data = make_dataset(root / "pets")
    return data, Path(run_extract(data, root / "cache", options).cache_path), options


def _attrs(path: Path) -> dict:
    with h5py.File(path, "r") as handle:
        return {name: json.loads(handle.attrs[name]) for name in ("weights", "dataset", "origin")}


def test_an_extracted_cache_reads_as_values_that_write_back_the_same_json(extracted):
    data, cache, options = extracted
    info = read_cache_info(cache)
    stored = _attrs(cache)
    assert info.weights.source == "random" and info.weights.path is None and info.weights.request == "none"
    assert info.origin == OriginInfo.extracted() and not info.is_imported
    assert info.dataset.name == "pets" and info.dataset.layout == "generic" and info.dataset.shard is None
    assert info.carving == info.dataset.carving and info.dataset.carving.valid_fraction == options.valid_fraction
    assert info.data_root == Path(info.dataset.root) == data.resolve()
    assert {"weights": info.weights.to_dict(), "dataset": info.dataset.to_dict(),
            "origin": info.origin.to_dict()} == stored


def test_a_format_1_cache_reads_its_recovered_facts_as_values():
    info = read_cache_info(FORMAT_1_CACHE)
    assert info.origin.to_dict() == {"kind": "extracted"}
    assert info.weights == WeightsInfo.from_dict(_attrs_v1()["weights"])
    assert info.weights.description == "random initialisation (--weights none, seed 0)"
    assert info.dataset.carving == SplitCarving(valid_fraction=0.3, test_fraction=0.0, seed=0, pool=10,
                                                rounded_to_percent=True)
    assert info.dataset.notes[0] == "official splits from folders: test=test, train=train"


def _attrs_v1() -> dict:
    with h5py.File(FORMAT_1_CACHE, "r") as handle:
        return {name: json.loads(handle.attrs[name]) for name in ("weights", "dataset")}


@pytest.mark.parametrize("fields", [
    {"name": "pets", "root": "/data/pets", "layout": "generic", "notes": ["a note"], "carving": None,
     "shard": {"index": 1, "count": 4, "records": 40, "batch_size": 8, "index_digest": "ab"}},
    {"name": "dogs", "root": "/data/dogs", "layout": "csv", "notes": [], "carving": None,
     "imported_from": "/data/DogVGG16Data.npz"},
])
def test_shard_and_imported_dataset_attributes_round_trip(fields):
    assert DatasetInfo.from_dict(fields).to_dict() == fields


def test_an_imported_origin_keeps_its_file_and_digest():
    fields = {"kind": "imported-npz", "file": "/data/DogVGG16Data.npz", "sha256": "cd" * 32}
    origin = OriginInfo.from_dict(fields)
    assert origin.is_imported and origin.file == fields["file"] and origin.to_dict() == fields


@pytest.mark.parametrize("name", ["weights", "dataset", "origin"])
def test_a_provenance_attribute_that_is_not_an_object_is_a_damaged_cache(extracted, tmp_path, name):
    damaged = tmp_path / "damaged.h5"
    shutil.copy(extracted[1], damaged)
    with h5py.File(damaged, "r+") as handle:
        handle.attrs[name] = json.dumps([1, 2])
    with pytest.raises(CacheError, match=f"damaged or incomplete .*the {name} attribute is list"):
        read_cache_info(damaged)
