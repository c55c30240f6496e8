"""The cache contract: what is extracted, reused, and stored, on tiny generated datasets."""

import shutil
import time
from dataclasses import replace

import h5py
import numpy as np
import pytest
from conftest import make_dataset, write_image

from pipeline.backbones import forward
from pipeline.cache.format import find_caches, read_cache_info
from pipeline.cache.rows import load_rows
from pipeline.cache.verify import verify_cache
from pipeline.extract.run import run_extract


@pytest.fixture
def no_forward_pass(monkeypatch):
    """Make any later attempt to build the backbone fail the test."""
    def refuse(*args, **kwargs):
        raise AssertionError("the backbone was built, but nothing should have been extracted")

    return lambda: monkeypatch.setattr(forward.FeatureExtractor, "__init__", refuse)


def _features_by_path(cache_path):
    info = read_cache_info(cache_path)
    rows = load_rows(cache_path, info.images.row, pooling=None)
    return {path: rows[i] for i, path in enumerate(info.images.relpath)}


def test_first_run_extracts_every_image_and_records_the_dataset(tiny_dataset, tmp_path, tiny_options):
    summary = run_extract(tiny_dataset, tmp_path / "cache", tiny_options)
    assert summary.extracted == 24 and summary.reused == 0 and summary.failures == []
    info = read_cache_info(summary.cache_path)
    assert info.class_names == ("cat", "dog")
    assert info.feature_shape == (1, 1, 512) and info.row_count == 24
    assert info.split_sizes()["test"] == 12
    assert info.split_sizes()["train"] + info.split_sizes()["valid"] == 12
    labels = {path: info.class_names[label] for path, label in zip(info.images.relpath, info.images.label)}
    assert labels["train/cat/cat_0.jpg"] == "cat" and labels["test/dog/dog_5.jpg"] == "dog"
    assert info.weights.source == "random"
    assert verify_cache(summary.cache_path) == []


def test_rerun_extracts_nothing_and_never_builds_the_backbone(tiny_dataset, tmp_path, tiny_options, no_forward_pass):
    first = run_extract(tiny_dataset, tmp_path / "cache", tiny_options)
    before = _features_by_path(first.cache_path)
    no_forward_pass()
    second = run_extract(tiny_dataset, tmp_path / "cache", tiny_options)
    assert second.extracted == 0 and second.reused == 24 and not second.wrote_cache
    assert second.cache_path == first.cache_path
    after = _features_by_path(second.cache_path)
    assert all(np.array_equal(before[p], after[p]) for p in before)


def test_added_images_are_extracted_alone(tiny_dataset, tmp_path, tiny_options):
    run_extract(tiny_dataset, tmp_path / "cache", tiny_options)
    write_image(tiny_dataset / "train" / "cat" / "new_cat.jpg", (250, 10, 10), seed=999)
    write_image(tiny_dataset / "test" / "dog" / "new_dog.jpg", (10, 10, 250), seed=998)
    summary = run_extract(tiny_dataset, tmp_path / "cache", tiny_options)
    assert summary.extracted == 2 and summary.reused == 24
    assert read_cache_info(summary.cache_path).row_count == 26


def test_renamed_and_relabelled_files_are_hits(tiny_dataset, tmp_path, tiny_options, no_forward_pass):
    run_extract(tiny_dataset, tmp_path / "cache", tiny_options)
    (tiny_dataset / "train" / "cat" / "cat_0.jpg").rename(tiny_dataset / "train" / "cat" / "renamed.jpg")
    shutil.move(tiny_dataset / "train" / "dog" / "dog_1.jpg", tiny_dataset / "train" / "cat" / "was_a_dog.jpg")
    no_forward_pass()
    summary = run_extract(tiny_dataset, tmp_path / "cache", tiny_options)
    assert summary.extracted == 0 and summary.wrote_cache
    info = read_cache_info(summary.cache_path)
    labels = {path: info.class_names[label] for path, label in zip(info.images.relpath, info.images.label)}
    assert labels["train/cat/renamed.jpg"] == "cat"
    assert labels["train/cat/was_a_dog.jpg"] == "cat"  # the new label round-trips
    assert "train/cat/cat_0.jpg" not in labels


def test_same_images_in_another_directory_hit_the_cache(tiny_dataset, tmp_path, tiny_options, no_forward_pass):
    first = run_extract(tiny_dataset, tmp_path / "cache", tiny_options)
    copy = shutil.copytree(tiny_dataset, tmp_path / "elsewhere" / "copy_of_pets")
    no_forward_pass()
    second = run_extract(copy, tmp_path / "cache", tiny_options)
    assert second.extracted == 0 and second.reused == 24
    assert second.cache_path != first.cache_path  # its own dataset view, rows borrowed
    a, b = _features_by_path(first.cache_path), _features_by_path(second.cache_path)
    assert all(np.array_equal(a[p], b[p]) for p in a)


@pytest.mark.parametrize("change", [
    {"layer": "block4_pool"}, {"input_size": 48}, {"resize": "crop"}, {"pool": "avg"},
    {"store_dtype": "float16"}, {"precision": "bfloat16"}, {"backbone": "vgg19"},
])
def test_any_provenance_change_is_a_miss(tiny_dataset, tmp_path, tiny_options, change):
    first = run_extract(tiny_dataset, tmp_path / "cache", tiny_options)
    second = run_extract(tiny_dataset, tmp_path / "cache", replace(tiny_options, **change))
    assert second.extracted == 24 and second.reused == 0
    assert second.cache_path != first.cache_path
    assert len(find_caches(tmp_path / "cache")) == 2


def test_different_weights_are_a_miss(tiny_dataset, tmp_path, tiny_options):
    import keras

    first = run_extract(tiny_dataset, tmp_path / "cache", tiny_options)
    keras.utils.set_random_seed(123)
    other = keras.applications.VGG16(include_top=False, weights=None, input_shape=(32, 32, 3))
    weights_file = tmp_path / "other.weights.h5"
    other.save_weights(weights_file)
    second = run_extract(tiny_dataset, tmp_path / "cache", replace(tiny_options, weights=str(weights_file)))
    assert second.extracted == 24 and second.cache_path != first.cache_path
    assert (read_cache_info(second.cache_path).spec.weights_fingerprint
            != read_cache_info(first.cache_path).spec.weights_fingerprint)


def test_class_order_is_sorted_and_stable(tmp_path, tiny_options):
    data = make_dataset(tmp_path / "zoo", classes=("owl", "cat", "fox"), per_class=3, splits=())
    first = read_cache_info(run_extract(data, tmp_path / "cache", tiny_options).cache_path)
    assert first.class_names == ("cat", "fox", "owl")
    make_dataset(data, classes=("dog",), per_class=3, splits=(), seed=5)
    second = read_cache_info(run_extract(data, tmp_path / "cache", tiny_options).cache_path)
    assert second.class_names == ("cat", "dog", "fox", "owl")
    labels = {p: second.class_names[label] for p, label in zip(second.images.relpath, second.images.label)}
    assert labels["owl/owl_0.jpg"] == "owl" and labels["fox/fox_2.jpg"] == "fox"


def test_undecodable_files_are_skipped_and_recorded(tiny_dataset, tmp_path, tiny_options):
    (tiny_dataset / "train" / "cat" / "broken.jpg").write_bytes(b"not an image at all")
    (tiny_dataset / "train" / "cat" / "empty.jpg").write_bytes(b"")
    summary = run_extract(tiny_dataset, tmp_path / "cache", tiny_options)
    reasons = {f["path"]: f["reason"] for f in summary.failures}
    assert "not a recognised image format" in reasons["train/cat/broken.jpg"]
    assert reasons["train/cat/empty.jpg"] == "empty file (0 bytes)"
    assert summary.images == 24
    info = read_cache_info(summary.cache_path)
    assert dict(info.failures) == reasons


def test_features_match_the_backbone_run_directly(tiny_dataset, tmp_path, tiny_options):
    """The cache holds exactly what the model computes on caffe-preprocessed pixels."""
    import keras

    from pipeline.data.images import ResizeSpec, decode_image

    summary = run_extract(tiny_dataset, tmp_path / "cache", tiny_options)
    cached = _features_by_path(summary.cache_path)["train/dog/dog_2.jpg"]
    keras.utils.set_random_seed(0)
    model = keras.applications.VGG16(include_top=False, weights=None, input_shape=(32, 32, 3))
    pixels = decode_image(tiny_dataset / "train" / "dog" / "dog_2.jpg", ResizeSpec(32, 32)).astype("float32")
    bgr = pixels[..., ::-1] - np.array([103.939, 116.779, 123.68], dtype="float32")
    expected = model.predict(bgr[None], verbose=0)[0]
    np.testing.assert_allclose(cached, expected, rtol=1e-4, atol=1e-4)


def test_store_dtype_float16_halves_the_rows(tiny_dataset, tmp_path, tiny_options):
    full = run_extract(tiny_dataset, tmp_path / "c32", tiny_options)
    half = run_extract(tiny_dataset, tmp_path / "c16", replace(tiny_options, store_dtype="float16"))
    with h5py.File(full.cache_path) as a, h5py.File(half.cache_path) as b:
        assert a["features"].dtype == np.float32 and b["features"].dtype == np.float16
        np.testing.assert_allclose(a["features"][()], b["features"][()], rtol=1e-3, atol=1e-2)


def test_pooled_extraction_stores_vectors(tiny_dataset, tmp_path, tiny_options):
    summary = run_extract(tiny_dataset, tmp_path / "cache", replace(tiny_options, pool="avg", input_size=64))
    assert summary.feature_shape == [512]


def test_summary_accounts_for_startup_and_idle_time(tiny_dataset, tmp_path, tiny_options, monkeypatch):
    from pipeline.cache import segments

    first = run_extract(tiny_dataset, tmp_path / "cache", tiny_options)
    assert first.startup_seconds > 0  # built while fingerprinting the new weights, before any batch
    assert first.forward_seconds > 0 and first.waiting_for_images_seconds >= 0

    disk_delay = 0.2
    slow_add = segments.SegmentWriter.add

    def add_slowly(self, *args, **kwargs):
        time.sleep(disk_delay)
        return slow_add(self, *args, **kwargs)

    monkeypatch.setattr(segments.SegmentWriter, "add", add_slowly)
    (tmp_path / "more").mkdir()
    for i in range(3 * tiny_options.batch_size):
        write_image(tmp_path / "more" / "cat" / f"extra_{i}.jpg", (i, 40, 90), seed=500 + i)
    slow = run_extract(tmp_path / "more", tmp_path / "cache", tiny_options)
    assert slow.extracted == 3 * tiny_options.batch_size
    # three batches through a two-slot queue: the backbone waits on the writer at least once
    assert slow.waiting_for_writer_seconds >= disk_delay
    assert slow.startup_seconds > 0  # the fingerprint was memoised, so the backbone was built for the batches


def test_strict_lists_every_copy_of_a_broken_file(tiny_dataset, tmp_path, tiny_options):
    from pipeline.errors import DatasetError

    (tiny_dataset / "train" / "cat" / "empty_a.jpg").write_bytes(b"")
    (tiny_dataset / "train" / "dog" / "empty_b.jpg").write_bytes(b"")  # same (empty) content
    with pytest.raises(DatasetError, match="2 files cannot be used") as refused:
        run_extract(tiny_dataset, tmp_path / "cache", replace(tiny_options, strict=True))
    assert "empty_a.jpg" in str(refused.value) and "empty_b.jpg" in str(refused.value)
