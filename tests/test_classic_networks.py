"""The notebook's five classic files: import each, fit the classic recipe on it, export it back in its layout."""

from pathlib import Path

import numpy as np
import pytest
from samples import DOG_BREEDS, dog_images_folder
from sklearn.datasets import load_files

from pipeline.cache.format import read_cache_info
from pipeline.cache.rows import load_rows, pool_rows
from pipeline.errors import DatasetError, UsageError
from pipeline.heads.fitting import fit_head
from pipeline.interop.classic import CLASSIC_NETWORKS, backbone_in_name, network_of, recognise
from pipeline.interop.npz_export import classic_layout, export_npz
from pipeline.interop.npz_import import import_npz

SPLIT_SIZES = {"train": 5, "valid": 2, "test": 3}
BREEDS = DOG_BREEDS
SIGNAL = 1.0  # every channel c with c % classes == label holds this; the others 0
ROW_ID_SCALE = 1e-4  # plus a per-row constant, so a row read back proves which file it came from


def _dog_images(root: Path) -> Path:
    return dog_images_folder(root, SPLIT_SIZES)


def _label_row(label: int, row_id: float, shape) -> np.ndarray:
    """A row whose channels encode `label` (so only correctly attached labels can be learned)."""
    channels = (np.arange(shape[-1]) % len(BREEDS) == label).astype(np.float32) * SIGNAL
    return np.broadcast_to(channels, shape).astype(np.float32) + np.float32(row_id * ROW_ID_SCALE)


def _classic_file(labels: Path, out: Path, shape) -> dict[str, np.ndarray]:
    """A hand-made classic file: rows in sklearn's own load_files order; returns {relpath: row}."""
    rows_of, arrays = {}, {}
    for split in SPLIT_SIZES:
        listing = load_files(str(labels / split), load_content=False)  # the notebook's call
        rows = np.empty((len(listing["filenames"]),) + tuple(shape), dtype=np.float32)
        for i, (name, label) in enumerate(zip(listing["filenames"], listing["target"])):
            rows[i] = _label_row(int(label), len(rows_of) + 1, shape)
            rows_of[Path(name).relative_to(labels).as_posix()] = rows[i]
        arrays[split] = rows
    np.savez(out, **arrays)
    return rows_of


@pytest.fixture(scope="module")
def dog_images(tmp_path_factory):
    return _dog_images(tmp_path_factory.mktemp("classic") / "dogImages")


def _rows_by_path(cache_path) -> dict[str, np.ndarray]:
    info = read_cache_info(cache_path)
    rows = load_rows(cache_path, info.images.row, pooling=None)
    return {path: rows[i] for i, path in enumerate(info.images.relpath)}


# --------------------------------------------------------------------------------------------
# recognising the network


def test_file_names_spell_their_network():
    assert [backbone_in_name(n.file_name) for n in CLASSIC_NETWORKS] == [n.backbone for n in CLASSIC_NETWORKS]
    assert backbone_in_name("bottleneck_features/DogInception_V3Data.npz".split("/")[-1]) == "inception_v3"
    assert backbone_in_name("features.npz") is None


def test_row_shape_alone_recognises_every_network_but_the_two_vggs():
    for network in CLASSIC_NETWORKS:
        if network.backbone.startswith("vgg"):
            with pytest.raises(DatasetError, match=r"fit vgg16 and vgg19 alike.*--backbone vgg16 or --backbone vgg19"):
                recognise("features.npz", network.row_shape)
        else:
            assert recognise("features.npz", network.row_shape)[0] is network


def test_a_shape_that_matches_no_network_is_refused_with_the_table():
    with pytest.raises(DatasetError) as error:
        recognise("features.npz", (8, 8, 2048))
    message = str(error.value)
    assert "rows of 8x8x2048 match none of the classic files" in message
    for network in CLASSIC_NETWORKS:
        assert network.file_name in message and network.description in message


def test_a_name_or_backbone_that_disagrees_with_the_shape_is_refused():
    with pytest.raises(DatasetError, match=r"recognised as resnet50 from the file name .* rows are 7x7x512"):
        recognise("DogResnet50Data.npz", (7, 7, 512))
    with pytest.raises(DatasetError, match=r"recognised as xception from --backbone xception"):
        recognise("DogVGG16Data.npz", (7, 7, 512), backbone="xception")
    with pytest.raises(UsageError, match="computed with vgg16, vgg19, resnet50, inception_v3, xception only"):
        recognise("DogVGG16Data.npz", (7, 7, 512), backbone="mobilenet")


# --------------------------------------------------------------------------------------------
# importing each file and fitting the classic recipe


@pytest.mark.parametrize("network", CLASSIC_NETWORKS, ids=lambda n: n.backbone)
def test_each_classic_file_imports_with_an_honest_key_and_the_classic_recipe_learns_it(network, dog_images,
                                                                                       tmp_path):
    npz = tmp_path / network.file_name
    rows_of = _classic_file(dog_images, npz, network.row_shape)
    summary = import_npz(npz, dog_images, tmp_path / "cache")
    assert summary.feature_shape == list(network.row_shape) and summary.failures == []
    assert f"recognised from the file name {network.file_name}" in summary.notes[0]
    info = read_cache_info(summary.cache_path)
    spec = info.spec
    assert (spec.backbone, spec.layer, spec.input_size, spec.pooling) == (network.backbone, network.recorded_layer,
                                                                         224, "none")
    assert info.is_imported and spec.preprocessing == "unknown (imported)"
    imported = _rows_by_path(summary.cache_path)
    assert set(imported) == set(rows_of)
    assert all(np.array_equal(imported[path], row) for path, row in rows_of.items())

    report = fit_head(summary.cache_path, "gap-dense", recipe="classic")
    assert report.metrics["test"]["top1"] == 1.0  # labels aligned: only then do the channels predict them


def test_vgg19_needs_its_name_or_backbone_and_then_records_vgg19(dog_images, tmp_path):
    _classic_file(dog_images, tmp_path / "features.npz", (7, 7, 512))
    with pytest.raises(DatasetError, match="fit vgg16 and vgg19 alike"):
        import_npz(tmp_path / "features.npz", dog_images, tmp_path / "cache")
    summary = import_npz(tmp_path / "features.npz", dog_images, tmp_path / "cache", backbone="vgg19")
    assert read_cache_info(summary.cache_path).spec.backbone == "vgg19"
    assert "recognised from --backbone vgg19" in summary.notes[0]


def test_cli_imports_with_backbone_and_refuses_unknown_shapes_with_the_table(dog_images, tmp_path, cli):
    _classic_file(dog_images, tmp_path / "features.npz", (7, 7, 512))
    payload, _ = cli.json(["import-npz", tmp_path / "features.npz", "--labels", dog_images, "--backbone", "vgg19",
                           "--cache-dir", tmp_path / "cache"])
    assert payload["feature_shape"] == [7, 7, 512] and "vgg19-block5_pool" in Path(payload["cache_path"]).name
    _classic_file(dog_images, tmp_path / "odd.npz", (3, 3, 1024))
    refused, result = cli.json(["import-npz", tmp_path / "odd.npz", "--labels", dog_images,
                                "--cache-dir", tmp_path / "cache"], expect_ok=False)
    assert result.exit_code == 1 and "DogXceptionData.npz" in refused["error"] and "3x3x1024" in refused["error"]


# --------------------------------------------------------------------------------------------
# exporting in the notebook's layout


@pytest.mark.parametrize("network", CLASSIC_NETWORKS, ids=lambda n: n.backbone)
def test_classic_export_round_trips_each_file_in_the_notebooks_layout(network, dog_images, tmp_path):
    npz = tmp_path / network.file_name
    _classic_file(dog_images, npz, network.row_shape)
    imported = import_npz(npz, dog_images, tmp_path / "cache").cache_path
    assert "written as they are" in classic_layout(read_cache_info(imported))[2]
    out = tmp_path / "out" / network.file_name
    out.parent.mkdir()
    export_npz(imported, out, classic=True)
    with np.load(npz) as original, np.load(out, allow_pickle=False) as exported:
        for split in SPLIT_SIZES:  # same rows, same load_files order: the notebook's cells read it unchanged
            np.testing.assert_array_equal(exported[split], original[split])
        assert str(exported["backbone"]) == network.backbone
    again = import_npz(out, dog_images, tmp_path / "again")
    assert read_cache_info(again.cache_path).spec.layer == network.recorded_layer


def test_classic_export_refuses_caches_of_other_layouts(tmp_path, tiny_dataset, tiny_options, cli):
    from pipeline.extract.run import run_extract

    cache = run_extract(tiny_dataset, tmp_path / "cache", tiny_options).cache_path  # vgg16 at 32 px
    refused, result = cli.json(["export-npz", cache, tmp_path / "x.npz", "--classic"], expect_ok=False)
    assert result.exit_code == 2 and "DogVGG16Data.npz holds vgg16 block5_pool rows at 224 px" in refused["error"]
    assert "extract --backbone vgg16 --layer block5_pool --input-size 224" in refused["error"]
    assert not (tmp_path / "x.npz").exists()


@pytest.mark.slow
def test_a_resnet50_cache_exports_averaged_to_1x1_and_the_notebooks_cells_load_it(dog_images, tmp_path, cli):
    """A real ResNet50 extraction (random weights, 224 px): conv5_block3_out 7x7x2048 -> 1x1x2048."""
    import keras

    payload, _ = cli.json(["extract", dog_images, "--backbone", "resnet50", "--weights", "none", "--input-size",
                           "224", "--precision", "float32", "--batch-size", "8", "--cache-dir", tmp_path / "cache"])
    cache = payload["cache_path"]
    assert read_cache_info(cache).feature_shape == (7, 7, 2048)
    out = tmp_path / "DogResnet50Data.npz"
    exported, _ = cli.json(["export-npz", cache, out, "--classic"])
    assert "averaged over their 49 positions to 1x1x2048" in exported["classic"]
    maps = _rows_by_path(cache)
    with np.load(out, allow_pickle=False) as data:
        train, paths = data["train"], data["train_paths"].tolist()
        assert train.shape[1:] == (1, 1, 2048)
        for path, row in zip(paths, train):
            np.testing.assert_array_equal(row[0, 0], pool_rows(maps[path][None], "avg")[0])
    # the notebook's own cell: GAP + Dense on the loaded array (a 1x1 map pools to itself)
    model = keras.Sequential([keras.Input(train.shape[1:]), keras.layers.GlobalAveragePooling2D(),
                              keras.layers.Dense(len(BREEDS), activation="softmax")])
    assert model.predict(train, verbose=0).shape == (len(train), len(BREEDS))
    again = import_npz(out, dog_images, tmp_path / "again")
    assert read_cache_info(again.cache_path).spec.layer == network_of("resnet50").recorded_layer
    assert "recognised from the file name DogResnet50Data.npz" in again.notes[0]
