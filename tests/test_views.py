"""`extract --views K`: seeded augmented views as rows of the cache, addressed by (image sha256, view).

Views are a pure function of (seed, image bytes, view index); view 0 is the plain image; the key
changes only with views; a cache without views keeps its format; resume, incremental runs and
sibling reuse work per view; heads train on every view of train and score valid/test on view 0.
"""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import h5py
import numpy as np
import pytest
from conftest import CLASS_COLOURS, TINY_BACKBONE, make_dataset, write_image
from reliability_support import rows_by_address

from pipeline.cache.format import read_cache_info
from pipeline.cache.key import FeatureSpec
from pipeline.cache.rows import ROW_VIEW, load_rows
from pipeline.cache.verify import verify_cache
from pipeline.data.images import ResizeSpec, decode_image
from pipeline.data.views import ViewSpec, decode_view, parse_view_address, view_address
from pipeline.errors import UsageError
from pipeline.extract.options import ExtractOptions
from pipeline.extract.run import run_extract

VIEWS = 2
SIZE = ResizeSpec(32, 32)


@pytest.fixture
def options() -> ExtractOptions:
    return ExtractOptions(**TINY_BACKBONE, batch_size=4, valid_fraction=0.3, name="pets")


def test_a_view_is_a_function_of_seed_image_and_index_only(tmp_path):
    photo = write_image(tmp_path / "a.jpg", (120, 80, 40), seed=1, size=(60, 90))
    sha = "ab" * 32
    views = ViewSpec(3)
    first = [decode_view(photo, SIZE, views, view_address(sha, v)) for v in range(4)]
    again = [decode_view(photo, SIZE, views, view_address(sha, v)) for v in reversed(range(4))][::-1]
    assert all(np.array_equal(a, b) for a, b in zip(first, again))
    np.testing.assert_array_equal(first[0], decode_image(photo, SIZE))  # view 0 is the plain image
    assert all(not np.array_equal(first[0], view) for view in first[1:])
    assert len({view.tobytes() for view in first}) == 4
    other_seed = decode_view(photo, SIZE, ViewSpec(3, seed=7), view_address(sha, 1))
    other_image = decode_view(photo, SIZE, views, view_address("cd" * 32, 1))
    assert not np.array_equal(other_seed, first[1]) and not np.array_equal(other_image, first[1])


def test_addresses_are_the_bare_sha_for_view_zero():
    sha = "0f" * 32
    assert view_address(sha, 0) == sha
    assert parse_view_address(view_address(sha, 3)) == (sha, 3)
    assert parse_view_address(sha) == (sha, 0)


def test_views_enter_the_key_only_when_asked():
    plain = FeatureSpec(backbone="vgg16", weights_fingerprint="ab" * 32, layer="block5_pool", input_size=224,
                        resize_policy="stretch", resize_filter="bilinear", preprocessing="caffe",
                        precision="float32", pooling="none", store_dtype="float32")
    with_views = replace(plain, views=ViewSpec(4))
    assert "views" not in plain.key_document() and "views" not in plain.to_dict()
    assert with_views.key() != plain.key() and with_views.without_views().key() == plain.key()
    assert with_views.key() != replace(plain, views=ViewSpec(4, seed=1)).key()
    assert FeatureSpec.from_json(with_views.to_json()) == with_views
    assert "views4" in with_views.short_name()


def test_a_views_cache_holds_every_view_as_an_addressed_row(tiny_dataset, tmp_path, options):
    summary = run_extract(tiny_dataset, tmp_path / "cache", replace(options, views=VIEWS))
    info = read_cache_info(summary.cache_path)
    images = len(info.images)
    assert info.row_count == images * (VIEWS + 1) and summary.extracted == images * (VIEWS + 1)
    assert info.images.view_rows.shape == (images, VIEWS + 1)
    np.testing.assert_array_equal(info.images.view_rows[:, 0], info.images.row)
    assert verify_cache(Path(summary.cache_path)) == []
    rows = load_rows(info.path, info.images.view_rows.reshape(-1), pooling=None).reshape(images, VIEWS + 1, -1)
    assert all(not np.array_equal(rows[i, 0], rows[i, v]) for i in range(images) for v in range(1, VIEWS + 1))
    again = run_extract(tiny_dataset, tmp_path / "cache", replace(options, views=VIEWS))
    assert again.extracted == 0 and not again.wrote_cache


def test_a_cache_without_views_has_no_view_columns(tiny_dataset, tmp_path, options):
    summary = run_extract(tiny_dataset, tmp_path / "cache", options)
    with h5py.File(summary.cache_path, "r") as handle:
        assert ROW_VIEW not in handle and "view_rows" not in handle["images"]
        assert "views" not in handle.attrs["feature_spec"]
    assert read_cache_info(summary.cache_path).images.view_rows is None


def test_view_zero_rows_come_from_the_plain_sibling_cache(tiny_dataset, tmp_path, options):
    plain = run_extract(tiny_dataset, tmp_path / "cache", options)
    views = run_extract(tiny_dataset, tmp_path / "cache", replace(options, views=VIEWS))
    assert views.extracted == plain.images * VIEWS and views.reused == plain.images
    plain_rows, view_rows = rows_by_address(Path(plain.cache_path)), rows_by_address(Path(views.cache_path))
    assert all(view_rows[sha] == row for sha, row in plain_rows.items())


def test_added_images_extract_only_their_views(tiny_dataset, tmp_path, options):
    run_extract(tiny_dataset, tmp_path / "cache", replace(options, views=VIEWS))
    write_image(tiny_dataset / "train" / "cat" / "new.jpg", CLASS_COLOURS["cat"], seed=999)
    grown = run_extract(tiny_dataset, tmp_path / "cache", replace(options, views=VIEWS))
    assert grown.extracted == VIEWS + 1


def test_an_interrupted_views_extraction_resumes_to_the_same_rows(tmp_path, options, monkeypatch):
    from pipeline.cache import segments

    data = make_dataset(tmp_path / "pets")
    opts = replace(options, views=VIEWS, commit_rows=4)
    clean = rows_by_address(Path(run_extract(data, tmp_path / "clean", opts).cache_path))

    original, calls = segments.SegmentWriter.flush, []

    def flush_then_stop(self):
        original(self)
        calls.append(1)
        if len(calls) == 3:
            raise KeyboardInterrupt

    monkeypatch.setattr(segments.SegmentWriter, "flush", flush_then_stop)
    with pytest.raises(KeyboardInterrupt):
        run_extract(data, tmp_path / "resumed", opts)
    monkeypatch.setattr(segments.SegmentWriter, "flush", original)
    resumed = run_extract(data, tmp_path / "resumed", opts)
    assert 0 < resumed.extracted < len(clean)
    assert rows_by_address(Path(resumed.cache_path)) == clean


def test_heads_train_on_every_view_and_score_view_zero(tiny_dataset, tmp_path, options):
    from pipeline.heads.features import load_feature_set
    from pipeline.heads.fitting import fit_head
    from pipeline.heads.store import read_sidecar

    cache = Path(run_extract(tiny_dataset, tmp_path / "cache", replace(options, views=VIEWS)).cache_path)
    info = read_cache_info(cache)
    features = load_feature_set(cache, info)
    sizes = info.split_sizes()
    assert len(features.splits["train"]) == sizes["train"] * (VIEWS + 1)
    assert len(features.splits["valid"]) == sizes["valid"] and len(features.splits["test"]) == sizes["test"]
    report = fit_head(cache, "logreg")
    assert "view 0 only" in report.views
    assert read_sidecar(Path(report.sidecar_path)).views == report.views


def test_views_with_shards_are_refused(tiny_dataset, tmp_path, options):
    from pipeline.cache.shard import Shard

    with pytest.raises(UsageError, match="--shard"):
        run_extract(tiny_dataset, tmp_path / "cache", replace(options, views=VIEWS, shard=Shard(0, 2)))
