"""`import-npz`: the classic DogVGG16Data.npz rows matched to dogImages files in load_files order."""

import shutil
from pathlib import Path

import numpy as np
import pytest
from conftest import write_image
from samples import DOG_BREEDS, dog_images_folder
from sklearn.datasets import load_files

from pipeline.cache.format import read_cache_info
from pipeline.cache.rows import load_rows
from pipeline.cache.verify import verify_cache
from pipeline.data.hashing import sha256_file
from pipeline.errors import DatasetError
from pipeline.interop.npz_import import CLASSIC_ROW_SHAPE, import_npz, iter_npz_blocks, load_files_order

SPLIT_SIZES = {"train": 4, "valid": 1, "test": 2}
BREEDS = DOG_BREEDS
#: Every row is its file's id plus this ramp, so a row read back whole proves both order and layout.
RAMP = np.arange(np.prod(CLASSIC_ROW_SHAPE), dtype=np.float32).reshape(CLASSIC_ROW_SHAPE) / 1e5


def _dog_images(root: Path) -> Path:
    return dog_images_folder(root, SPLIT_SIZES)


def _classic_npz(labels: Path, out: Path, compressed=False) -> dict[str, float]:
    """Write an npz whose rows follow sklearn's own load_files order; returns {relpath: row id}."""
    ids, arrays = {}, {}
    for split in SPLIT_SIZES:
        files = load_files(str(labels / split))["filenames"]  # the classic notebook's call, default arguments
        rows = np.empty((len(files),) + CLASSIC_ROW_SHAPE, dtype=np.float32)
        for i, name in enumerate(files):
            relpath = Path(name).relative_to(labels).as_posix()
            ids[relpath] = float(len(ids) + 1)
            rows[i] = ids[relpath] + RAMP
        arrays[split] = rows
    (np.savez_compressed if compressed else np.savez)(out, **arrays)
    return ids


@pytest.fixture
def classic(tmp_path):
    labels = _dog_images(tmp_path / "dogImages")
    npz = tmp_path / "DogVGG16Data.npz"
    return labels, npz, _classic_npz(labels, npz)


def _features_by_path(cache_path):
    info = read_cache_info(cache_path)
    rows = load_rows(cache_path, info.images.row, pooling=None)
    return info, {path: rows[i] for i, path in enumerate(info.images.relpath)}


# --------------------------------------------------------------------------------------------
# load_files order


def test_load_files_order_matches_sklearn_exactly_including_litter(tmp_path):
    split = _dog_images(tmp_path / "dogImages") / "train"
    (split / BREEDS[0] / ".DS_Store").write_bytes(b"\x00\x00\x00\x01Bud1")
    (split / BREEDS[1] / "Thumbs.db").write_bytes(b"\xd0\xcf\x11\xe0")
    (split / ".ipynb_checkpoints").mkdir()
    expected = [Path(name) for name in load_files(str(split))["filenames"]]
    assert load_files_order(split) == expected
    assert len(expected) == 14


def test_images_only_order_is_what_load_files_gave_before_the_litter(tmp_path):
    clean = _dog_images(tmp_path / "clean") / "train"
    littered = tmp_path / "littered"
    shutil.copytree(clean, littered)
    (littered / BREEDS[2] / ".DS_Store").write_bytes(b"\x00")
    (littered / BREEDS[0] / "desktop.ini").write_text("[.ShellClassInfo]")
    (littered / ".ipynb_checkpoints").mkdir()
    before = [Path(name).relative_to(clean) for name in load_files(str(clean))["filenames"]]
    assert [path.relative_to(littered) for path in load_files_order(littered, images_only=True)] == before


def test_npz_blocks_stream_stored_and_deflated_arrays(tmp_path):
    array = np.arange(5 * 2 * 3, dtype=np.float64).reshape(5, 2, 3)
    for saver in (np.savez, np.savez_compressed):
        path = tmp_path / f"{saver.__name__}.npz"
        saver(path, train=array)
        blocks = list(iter_npz_blocks(path, "train", block_rows=2))
        assert [len(b) for b in blocks] == [2, 2, 1] and all(b.dtype == np.float32 for b in blocks)
        np.testing.assert_array_equal(np.concatenate(blocks), array.astype(np.float32))


# --------------------------------------------------------------------------------------------
# importing


def test_import_attaches_every_row_to_its_file_and_label(classic, tmp_path):
    labels, npz, ids = classic
    summary = import_npz(npz, labels, tmp_path / "cache")
    assert summary.rows == {"train": 12, "valid": 3, "test": 6} and summary.images == 21 and summary.failures == []
    info, features = _features_by_path(summary.cache_path)
    assert info.class_names == ("Affenpinscher", "Afghan_hound", "Airedale_terrier")
    assert set(features) == set(ids)
    for relpath, row in features.items():
        np.testing.assert_array_equal(row, ids[relpath] + RAMP)
    for relpath, label, split in zip(info.images.relpath, info.images.label, info.images.split):
        assert BREEDS[label] == relpath.split("/")[1] and split == relpath.split("/")[0]
    assert info.split_sizes() == {"train": 12, "valid": 3, "test": 6}
    assert verify_cache(summary.cache_path) == []


def test_imported_features_get_an_honest_key_of_their_own(classic, tmp_path):
    labels, npz, _ = classic
    summary = import_npz(npz, labels, tmp_path / "cache")
    info = read_cache_info(summary.cache_path)
    spec = info.spec
    assert (spec.backbone, spec.layer, spec.input_size, spec.pooling) == ("vgg16", "block5_pool", 224, "none")
    assert spec.weights_fingerprint.startswith("imported-npz:sha256:") and info.is_imported
    assert info.origin.to_dict() == {"kind": "imported-npz", "file": str(Path(npz).resolve()),
                                     "sha256": sha256_file(npz)}
    assert spec.resize_policy == spec.preprocessing == spec.precision == "unknown (imported)"
    assert "imported from DogVGG16Data.npz" in info.weights.description
    assert Path(summary.cache_path).name.startswith("DogVGG16Data-vgg16-block5_pool-")
    again = import_npz(npz, labels, tmp_path / "cache")
    assert again.feature_key == summary.feature_key and again.cache_path == summary.cache_path


def test_deflated_npz_imports_the_same_rows(tmp_path):
    labels = _dog_images(tmp_path / "dogImages")
    ids = _classic_npz(labels, tmp_path / "compressed.npz", compressed=True)
    summary = import_npz(tmp_path / "compressed.npz", labels, tmp_path / "cache", backbone="vgg16")
    _, features = _features_by_path(summary.cache_path)
    assert all(np.array_equal(row, ids[path] + RAMP) for path, row in features.items())


def test_litter_added_after_the_npz_does_not_shift_rows(classic, tmp_path):
    labels, npz, ids = classic
    (labels / "train" / BREEDS[0] / ".DS_Store").write_bytes(b"\x00")
    (labels / "valid" / BREEDS[1] / "Thumbs.db").write_bytes(b"\x00")
    _, features = _features_by_path(import_npz(npz, labels, tmp_path / "cache").cache_path)
    assert all(np.array_equal(row, ids[path] + RAMP) for path, row in features.items())


def test_rows_of_non_image_entries_load_files_listed_are_unused(tmp_path):
    labels = _dog_images(tmp_path / "dogImages")
    (labels / "test" / BREEDS[1] / "README.txt").write_text("listed by load_files at the time")
    ids = _classic_npz(labels, tmp_path / "DogVGG16Data.npz")
    summary = import_npz(tmp_path / "DogVGG16Data.npz", labels, tmp_path / "cache")
    assert summary.rows["test"] == 7 and summary.images == 21
    assert any("include 1 non-image entries" in note for note in summary.notes)
    _, features = _features_by_path(summary.cache_path)
    assert all(np.array_equal(row, ids[path] + RAMP) for path, row in features.items())


def test_row_count_mismatch_is_refused_with_the_numbers(classic, tmp_path):
    labels, npz, _ = classic
    next((labels / "valid" / BREEDS[2]).iterdir()).unlink()
    with pytest.raises(DatasetError, match=r"has 3 valid rows, but .*valid holds 2 images .*exact dogImages folder"):
        import_npz(npz, labels, tmp_path / "cache")
    assert not list((tmp_path / "cache").glob("*.h5"))  # nothing half-imported


@pytest.mark.parametrize("arrays, message", [
    ({"train": np.zeros((1, 7, 7, 512), np.float32)}, "has no valid, test array"),
    ({split: np.zeros((1, 2048), np.float32) for split in SPLIT_SIZES}, "rows of 2048 match none of the classic"),
    ({split: np.zeros((1, 7, 7, 512), np.int32) for split in SPLIT_SIZES}, "must be float arrays"),
])
def test_other_npz_files_are_refused(tmp_path, arrays, message):
    labels = _dog_images(tmp_path / "dogImages")
    np.savez(tmp_path / "other.npz", **arrays)
    with pytest.raises(DatasetError, match=message):
        import_npz(tmp_path / "other.npz", labels, tmp_path / "cache")


def test_labels_must_be_a_class_folder_tree_with_three_splits(classic, tmp_path):
    labels, npz, _ = classic
    shutil.rmtree(labels / "valid")
    with pytest.raises(DatasetError, match="has no valid folder"):
        import_npz(npz, labels, tmp_path / "cache")


def test_cli_import_then_fit_and_predict_refuses(classic, tmp_path, cli):
    labels, npz, _ = classic
    payload, _ = cli.json(["import-npz", npz, "--labels", labels, "--cache-dir", tmp_path / "cache"])
    assert payload["rows"] == {"train": 12, "valid": 3, "test": 6} and payload["feature_shape"] == [7, 7, 512]
    fitted, _ = cli.json(["fit-head", payload["cache_path"], "--head", "logreg"])
    assert set(fitted["metrics"]) == {"train", "valid", "test"}
    image = next((labels / "test" / BREEDS[0]).iterdir())
    refused, result = cli.json(["predict", image, "--head", fitted["sidecar_path"], "--cache-dir", tmp_path / "cache"],
                               expect_ok=False)
    assert result.exit_code == 1 and "imported from an .npz file" in refused["error"]


@pytest.mark.realdata
def test_import_real_dogimages_sample(shared_data, tmp_path):
    labels = shared_data / "dogimages-mini"
    npz = tmp_path / "DogVGG16Data.npz"
    ids = _classic_npz(labels, npz)
    summary = import_npz(npz, labels, tmp_path / "cache")
    info, features = _features_by_path(summary.cache_path)
    assert summary.rows == {"train": 48, "valid": 12, "test": 12}
    assert info.class_names == ("German_shepherd", "golden_retriever", "Maltese_dog", "Saint_Bernard")
    assert all(np.array_equal(row, ids[path] + RAMP) for path, row in features.items())


# --------------------------------------------------------------------------------------------
# files that name their rows (`export-npz` writes <split>_paths)


def _named_npz(labels: Path, out: Path, order=None, **overrides) -> dict[str, float]:
    """An npz with `<split>_paths` whose rows are NOT in load_files order; returns {relpath: row id}."""
    ids, arrays = {}, {}
    rng = np.random.default_rng(7)
    for split in SPLIT_SIZES:
        paths = sorted(p.relative_to(labels).as_posix() for p in (labels / split).rglob("*.jpg"))
        paths = [paths[i] for i in (order or rng.permutation)(len(paths))]
        rows = np.empty((len(paths),) + CLASSIC_ROW_SHAPE, dtype=np.float32)
        for i, relpath in enumerate(paths):
            ids[relpath] = float(len(ids) + 1)
            rows[i] = ids[relpath] + RAMP
        arrays[split], arrays[f"{split}_paths"] = rows, np.array(paths, dtype=str)
    arrays["backbone"] = np.array("vgg16")  # as export-npz names it
    arrays.update(overrides)
    np.savez(out, **{k: v for k, v in arrays.items() if v is not None})
    return ids


def test_rows_are_attached_to_the_files_the_npz_names(tmp_path):
    labels = _dog_images(tmp_path / "dogImages")
    ids = _named_npz(labels, tmp_path / "named.npz")
    summary = import_npz(tmp_path / "named.npz", labels, tmp_path / "cache")
    assert summary.rows == {"train": 12, "valid": 3, "test": 6} and summary.images == 21 and summary.failures == []
    assert "test_paths entry names" in summary.notes[1]
    _info, features = _features_by_path(summary.cache_path)
    assert set(features) == set(ids)
    for relpath, row in features.items():
        np.testing.assert_array_equal(row, ids[relpath] + RAMP)
    assert verify_cache(summary.cache_path) == []


def test_images_the_npz_does_not_name_are_listed_as_failures(tmp_path):
    labels = _dog_images(tmp_path / "dogImages")
    ids = _named_npz(labels, tmp_path / "named.npz")
    extra = write_image(labels / "train" / BREEDS[0] / "added_later.jpg", (10, 20, 30), 999, size=(8, 8))
    summary = import_npz(tmp_path / "named.npz", labels, tmp_path / "cache")
    assert summary.images == 21
    assert [f["path"] for f in summary.failures] == [extra.relative_to(labels).as_posix()]
    assert "not among the files the npz has rows for" in summary.failures[0]["reason"]
    assert any("1 images in the labels folder have no row in the npz" in note for note in summary.notes)
    _, features = _features_by_path(summary.cache_path)
    assert all(np.array_equal(row, ids[path] + RAMP) for path, row in features.items())


def test_paths_missing_from_the_labels_folder_are_refused(tmp_path):
    labels = _dog_images(tmp_path / "dogImages")
    _named_npz(labels, tmp_path / "named.npz")
    gone = next((labels / "test" / BREEDS[1]).iterdir())
    gone.rename(gone.with_name("renamed.jpg"))
    with pytest.raises(DatasetError, match=r"1 of the 21 files named.npz has rows for are not in .*"
                                           + gone.name + r".*must be the dataset folder the npz was exported from"):
        import_npz(tmp_path / "named.npz", labels, tmp_path / "cache")
    assert not list((tmp_path / "cache").glob("*.h5"))


def test_paths_of_another_dataset_are_refused(tmp_path):
    labels = _dog_images(tmp_path / "dogImages")
    _named_npz(labels, tmp_path / "named.npz")
    other = tmp_path / "other"
    for split in SPLIT_SIZES:
        write_image(other / split / "001.Beagle" / "beagle.jpg", (1, 2, 3), len(split), size=(8, 8))
    with pytest.raises(DatasetError, match=r"21 of the 21 files .* are not in"):
        import_npz(tmp_path / "named.npz", other, tmp_path / "cache")


def test_a_path_in_another_split_is_refused(tmp_path):
    labels = _dog_images(tmp_path / "dogImages")
    _named_npz(labels, tmp_path / "named.npz")
    arrays = dict(np.load(tmp_path / "named.npz"))
    valid, test = arrays["valid_paths"].tolist(), arrays["test_paths"].tolist()
    valid[0], test[0] = test[0], valid[0]
    arrays["valid_paths"], arrays["test_paths"] = np.array(valid), np.array(test)
    np.savez(tmp_path / "swapped.npz", **arrays)
    with pytest.raises(DatasetError, match=r"files are in another split .*\(valid in the npz, test here\)"):
        import_npz(tmp_path / "swapped.npz", labels, tmp_path / "cache")


def test_a_path_named_twice_is_refused(tmp_path):
    labels = _dog_images(tmp_path / "dogImages")
    _named_npz(labels, tmp_path / "named.npz")
    arrays = dict(np.load(tmp_path / "named.npz"))
    train = arrays["train_paths"].tolist()
    arrays["train_paths"] = np.array([train[0]] + train[:-1])
    np.savez(tmp_path / "twice.npz", **arrays)
    with pytest.raises(DatasetError, match="names 1 files for more than one row"):
        import_npz(tmp_path / "twice.npz", labels, tmp_path / "cache")


@pytest.mark.parametrize("overrides, message", [
    ({"valid_paths": None}, r"has train_paths, test_paths but no valid_paths"),
    ({"test_paths": np.array(["test/a.jpg"])}, r"has 6 test rows but 1 test_paths entries"),
    ({"train_paths": np.arange(12)}, r"train_paths .* must be a 1-D array of relpaths"),
])
def test_incomplete_or_mismatched_paths_are_refused(tmp_path, overrides, message):
    labels = _dog_images(tmp_path / "dogImages")
    _named_npz(labels, tmp_path / "bad.npz", **overrides)
    with pytest.raises(DatasetError, match=message):
        import_npz(tmp_path / "bad.npz", labels, tmp_path / "cache")


@pytest.mark.parametrize("name", ["../../escaped", "sub/dir", ".hidden"])
def test_import_name_cannot_leave_the_cache_dir(classic, tmp_path, cli, name):
    labels, npz, _ = classic
    cache_dir = tmp_path / "a" / "cache"
    result = cli(["import-npz", npz, "--labels", labels, "--cache-dir", cache_dir, "--name", name])
    assert result.exit_code == 2 and "--name" in result.output, result.output
    assert not list(tmp_path.rglob("*.h5")), "no cache written anywhere"
