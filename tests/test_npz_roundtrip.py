"""`export-npz` then `import-npz`: every row comes back to its own file; failed exports say why."""

import os
from pathlib import Path

import numpy as np
import pytest
from conftest import CLASS_COLOURS, make_dataset, write_image
from sklearn.datasets import load_files

from pipeline.cache.format import read_cache_info
from pipeline.cache.rows import load_rows
from pipeline.extract.run import run_extract
from pipeline.interop import npz_export as npz_module
from pipeline.interop.npz_export import export_npz
from pipeline.interop.npz_import import CLASSIC_ROW_SHAPE, import_npz

SPLITS = ("train", "valid", "test")
PER_CLASS = {"train": 5, "valid": 2, "test": 3}
FOLDERS = {"001.Cat": "cat", "002.Dog": "dog", "003.Fox": "fox"}


def _dog_images(root: Path) -> Path:
    """A tiny dogImages tree: <split>/NNN.Name/<file>.jpg."""
    seed = 0
    for split, count in PER_CLASS.items():
        for folder, colour in FOLDERS.items():
            for _n in range(count):
                seed += 1
                write_image(root / split / folder / f"{colour}_{seed:03d}.jpg", CLASS_COLOURS[colour], seed)
    return root


def _features_by_path(cache_path) -> dict[str, np.ndarray]:
    info = read_cache_info(cache_path)
    rows = load_rows(cache_path, info.images.row, pooling=None)
    return {path: rows[i] for i, path in enumerate(info.images.relpath)}


def _to_classic_shape(rows: np.ndarray) -> np.ndarray:
    """Tiny-backbone rows (1x1x512) tiled to the 7x7x512 import-npz requires, values kept."""
    return np.ascontiguousarray(np.broadcast_to(rows, (len(rows),) + CLASSIC_ROW_SHAPE))


@pytest.fixture
def extracted(tmp_path, tiny_options):
    labels = _dog_images(tmp_path / "dogImages")
    summary = run_extract(labels, tmp_path / "cache", tiny_options)
    assert summary.failures == []
    return labels, Path(summary.cache_path)


def test_export_follows_load_files_order_so_the_file_is_a_drop_in_replacement(extracted, tmp_path):
    labels, cache_path = extracted
    out = tmp_path / "DogVGG16Data.npz"
    assert export_npz(cache_path, out) == {"train": 15, "valid": 6, "test": 9}
    info, features = read_cache_info(cache_path), _features_by_path(cache_path)
    with np.load(out, allow_pickle=False) as data:
        for split in SPLITS:
            classic = load_files(str(labels / split), load_content=False)  # the classic notebook's call
            expected = [Path(name).relative_to(labels).as_posix() for name in classic["filenames"]]
            assert data[f"{split}_paths"].tolist() == expected
            assert data[f"{split}_labels"].tolist() == classic["target"].tolist()
            for path, row in zip(expected, data[split]):
                np.testing.assert_array_equal(row, features[path])
        assert data["class_names"].tolist() == ["Cat", "Dog", "Fox"]
        cache_order = [info.images.relpath[i] for i in info.images.in_split("train")]
        assert data["train_paths"].tolist() != cache_order  # the order the bug exported in


def test_round_trip_gives_every_file_its_own_features(extracted, tmp_path):
    labels, cache_path = extracted
    out = tmp_path / "exported.npz"
    export_npz(cache_path, out)
    with np.load(out, allow_pickle=False) as data:
        arrays = {key: data[key] for key in data.files}
    for split in SPLITS:
        arrays[split] = _to_classic_shape(arrays[split])
    np.savez(tmp_path / "classic_shape.npz", **arrays)

    summary = import_npz(tmp_path / "classic_shape.npz", labels, tmp_path / "imported")
    assert summary.failures == [] and summary.images == 30
    original, imported = _features_by_path(cache_path), _features_by_path(summary.cache_path)
    assert set(imported) == set(original)
    for path, row in original.items():
        np.testing.assert_array_equal(imported[path], _to_classic_shape(row[None])[0])
    before, after = read_cache_info(cache_path), read_cache_info(summary.cache_path)
    assert after.class_names == before.class_names
    assert after.split_sizes() == before.split_sizes()
    labels_of = lambda info: dict(zip(info.images.relpath, info.images.label.tolist()))  # noqa: E731
    assert labels_of(after) == labels_of(before)


def test_splits_carved_from_one_folder_keep_the_cache_order_and_still_name_their_rows(tmp_path, tiny_options):
    pets = make_dataset(tmp_path / "pets")  # train/ and test/: valid is carved from train/
    summary = run_extract(pets, tmp_path / "cache", tiny_options)
    out = tmp_path / "pets.npz"
    export_npz(summary.cache_path, out)
    info, features = read_cache_info(summary.cache_path), _features_by_path(summary.cache_path)
    with np.load(out, allow_pickle=False) as data:
        for split in SPLITS:
            paths = data[f"{split}_paths"].tolist()
            if split == "test":  # a folder of its own: load_files order
                expected = [Path(name).relative_to(pets).as_posix()
                            for name in load_files(str(pets / "test"), load_content=False)["filenames"]]
            else:
                expected = [info.images.relpath[i] for i in info.images.in_split(split)]
            assert paths == expected
            assert all(np.array_equal(row, features[path]) for path, row in zip(paths, data[split]))


# --------------------------------------------------------------------------------------------
# output that cannot be written


def _no_temp_files(folder: Path) -> bool:
    return not [name for name in os.listdir(folder) if ".tmp" in name]


def test_export_into_a_missing_folder_says_so(extracted, tmp_path, cli, monkeypatch):
    _, cache_path = extracted
    monkeypatch.chdir(tmp_path)
    result = cli(["export-npz", cache_path, "nodir/x.npz"])
    assert result.exit_code == 1 and "Traceback" not in result.output
    assert "cannot write nodir/x.npz: the folder nodir does not exist" in result.output
    assert "mkdir -p nodir" in result.output
    assert not (tmp_path / "nodir").exists() and _no_temp_files(tmp_path)


def test_export_under_a_file_says_it_is_not_a_folder(extracted, tmp_path, cli):
    _, cache_path = extracted
    (tmp_path / "plain").write_text("a file")
    payload, result = cli.json(["export-npz", cache_path, tmp_path / "plain" / "x.npz"], expect_ok=False)
    assert result.exit_code == 1 and "is not a folder" in payload["error"]


@pytest.mark.skipif(not os.path.isdir("/proc"), reason="needs a folder that refuses new files")
def test_export_into_a_folder_that_refuses_files_says_so(extracted, cli):
    _, cache_path = extracted
    result = cli(["export-npz", cache_path, "/proc/x.npz"])
    assert result.exit_code == 1 and "Traceback" not in result.output
    assert "cannot write /proc/x.npz: the folder /proc does not accept new files" in result.output
    assert "choose a folder you can write to" in result.output
    assert _no_temp_files("/proc")


def test_a_write_failing_midway_leaves_neither_output_nor_temp_file(extracted, tmp_path, cli, monkeypatch):
    _, cache_path = extracted

    def disk_full(*args, **kwargs):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(npz_module, "_write_streamed", disk_full)
    out_dir = tmp_path / "out"
    out_dir.mkdir()
    payload, result = cli.json(["export-npz", cache_path, out_dir / "x.npz"], expect_ok=False)
    assert result.exit_code == 1 and "no space left in" in payload["error"]
    assert os.listdir(out_dir) == []
