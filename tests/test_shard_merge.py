"""`extract --shard I/N` + `merge` give exactly the cache a single run writes."""

from __future__ import annotations

import json
import shutil
from dataclasses import replace
from pathlib import Path

import h5py
import numpy as np
import pytest

from pipeline.cache.merge import merge_shards
from pipeline.cache.shard import Shard, cut_index, index_digest, merged_cache_name
from pipeline.cache.slots import content_ordinals
from pipeline.cache.verify import verify_cache
from pipeline.errors import CacheError
from pipeline.extract.run import run_extract
from tests.conftest import make_dataset, write_image

SHARDS = 3
#: Small forward batches, so the tiny datasets here span several batches to deal out.
SHARD_BATCH = 2
_VIEW_COLUMNS = ("images/relpath", "images/label", "images/split", "images/sha256", "images/row", "images/size",
                 "images/mtime_ns", "failures/relpath", "failures/reason", "classes", "row_sha256")


def _messy_dataset(root):
    """Two classes with train/test folders, a duplicated image, an undecodable file and a broken link."""
    make_dataset(root, per_class=6)
    shutil.copy(root / "train" / "cat" / "cat_0.jpg", root / "train" / "dog" / "copy_of_cat_0.jpg")
    (root / "train" / "cat" / "broken.jpg").write_bytes(b"not an image at all")
    (root / "test" / "dog" / "gone.jpg").symlink_to(root / "does-not-exist.jpg")
    return root


def _read(path):
    with h5py.File(path, "r") as handle:
        arrays = {name: handle[name][()] for name in _VIEW_COLUMNS}
        arrays["features"] = handle["features"][()]
        attrs = {name: handle.attrs[name] for name in ("feature_key", "view_digest", "dataset")}
        has_shard_group = "shard" in handle
    return arrays, attrs, has_shard_group


def test_shards_are_dealt_whole_batches_round_robin(tmp_path):
    from pipeline.data.dataset import DatasetIndex, ImageRecord

    shas = [f"{i:064x}" for i in range(7)] + [f"{2:064x}"]  # the last file is a copy of the third
    records = tuple(ImageRecord(f"{i}.jpg", 0, "train", sha, size=1, mtime_ns=1) for i, sha in enumerate(shas))
    index = DatasetIndex(tmp_path, "generic", ("cat",), records)
    views = [cut_index(index, Shard(i, 2), batch_size=2) for i in range(2)]
    # distinct contents 0..6 in batches [0 1] [2 3] [4 5] [6]: batches 0 and 2 to shard 0, 1 and 3 to shard 1
    assert [r.relpath for r in views[0].index.records] == ["0.jpg", "1.jpg", "4.jpg", "5.jpg"]
    assert [r.relpath for r in views[1].index.records] == ["2.jpg", "3.jpg", "6.jpg", "7.jpg"]
    assert views[1].position_of["7.jpg"] == 7
    assert views[0].ordinals == views[1].ordinals == content_ordinals(shas)
    assert Shard.parse(" 2 / 8 ") == Shard(2, 8)


@pytest.mark.parametrize("text", ["3", "a/b", "4/4", "-1/3", "0/0"])
def test_bad_shard_text_is_refused_with_the_expected_form(text):
    with pytest.raises(ValueError, match=r"I/N|does not exist"):
        Shard.parse(text)


def test_merged_shards_equal_a_single_run(tmp_path, tiny_options):
    data = _messy_dataset(tmp_path / "pets")
    tiny_options = replace(tiny_options, batch_size=SHARD_BATCH)
    single = run_extract(data, tmp_path / "single", tiny_options)
    shard_runs = [run_extract(data, tmp_path / "sharded", replace(tiny_options, shard=Shard(i, SHARDS)))
                  for i in range(SHARDS)]
    assert sum(run.extracted for run in shard_runs) == single.extracted
    assert all(run.extracted > 0 for run in shard_runs)
    assert all(".shard-" in run.cache_path for run in shard_runs)

    summary = merge_shards([tmp_path / "sharded"])

    merged, merged_attrs, merged_has_shard = _read(summary.cache_path)
    expected, expected_attrs, _ = _read(single.cache_path)
    assert not merged_has_shard
    assert merged_attrs == expected_attrs
    for name in _VIEW_COLUMNS:
        np.testing.assert_array_equal(merged[name], expected[name], err_msg=name)
    np.testing.assert_array_equal(merged["features"], expected["features"])  # bitwise: same batches, same slots
    assert verify_cache(summary.cache_path) == []
    assert len(merged["failures/relpath"]) == 2  # the undecodable file and the broken link

    again = run_extract(data, tmp_path / "sharded", tiny_options)
    assert again.extracted == 0
    assert again.cache_path == summary.cache_path
    assert not again.wrote_cache


def test_merging_again_keeps_when_the_cache_was_first_written(tmp_path, tiny_options):
    from pipeline.cache.format import read_cache_info

    data = _messy_dataset(tmp_path / "pets")
    options = replace(tiny_options, batch_size=SHARD_BATCH)
    for i in range(SHARDS):
        run_extract(data, tmp_path / "sharded", replace(options, shard=Shard(i, SHARDS)))
    first = merge_shards([tmp_path / "sharded"])
    created = read_cache_info(first.cache_path).created
    with h5py.File(first.cache_path, "a") as handle:  # as if the first merge ran an hour ago
        handle.attrs["created"] = "2026-01-01T00:00:00+00:00"
    second = merge_shards([tmp_path / "sharded"])
    assert second.cache_path == first.cache_path and created
    assert read_cache_info(second.cache_path).created == "2026-01-01T00:00:00+00:00"


def test_merge_refuses_incomplete_or_mixed_shards(tmp_path, tiny_options):
    data = make_dataset(tmp_path / "pets", per_class=4)
    first = run_extract(data, tmp_path / "cache", replace(tiny_options, shard=Shard(0, 2)))
    with pytest.raises(CacheError, match="shards 1/2 are missing"):
        merge_shards([first.cache_path])

    other = run_extract(data, tmp_path / "cache", replace(tiny_options, shard=Shard(1, 2), store_dtype="float16"))
    with pytest.raises(CacheError, match="differ in store_dtype"):
        merge_shards([first.cache_path, other.cache_path])

    other_batch = run_extract(data, tmp_path / "batch", replace(tiny_options, shard=Shard(1, 2), batch_size=2))
    with pytest.raises(CacheError, match="same --batch-size"):
        merge_shards([first.cache_path, other_batch.cache_path])

    write_image(data / "train" / "cat" / "late_arrival.jpg", (200, 60, 60), seed=999)
    changed = run_extract(data, tmp_path / "cache", replace(tiny_options, shard=Shard(1, 2)))
    with pytest.raises(CacheError, match="different versions of the dataset"):
        merge_shards([first.cache_path, changed.cache_path])


def test_a_whole_dataset_cache_is_not_a_shard(tmp_path, tiny_options):
    data = make_dataset(tmp_path / "pets", per_class=2)
    whole = run_extract(data, tmp_path / "cache", tiny_options)
    with pytest.raises(CacheError, match="not a shard cache"):
        merge_shards([whole.cache_path])


def test_shard_cache_records_positions_in_the_full_index(tmp_path, tiny_options):
    data = make_dataset(tmp_path / "pets", per_class=3)
    run = run_extract(data, tmp_path / "cache", replace(tiny_options, shard=Shard(0, 2), batch_size=SHARD_BATCH))
    with h5py.File(run.cache_path, "r") as handle:
        shard = json.loads(handle.attrs["dataset"])["shard"]
        positions = handle["shard/image_position"][()]
        shas = handle["images/sha256"][()].astype(str)
    assert shard["count"] == 2 and shard["index"] == 0 and shard["records"] == 12
    assert shard["batch_size"] == SHARD_BATCH
    assert len(positions) == len(shas) and np.all(np.diff(positions) > 0)
    ordinals = [int(p) for p in positions]  # the generated images are all distinct: ordinal = position
    assert all((ordinal // SHARD_BATCH) % 2 == 0 for ordinal in ordinals) and len(ordinals) == 6


def test_cli_shard_and_merge(tmp_path, cli):
    from tests.conftest import TINY_CLI_ARGS

    data = make_dataset(tmp_path / "pets", per_class=3)
    cache_dir = tmp_path / "cache"
    for index in range(2):
        payload, _ = cli.json(["extract", data, "--shard", f"{index}/2", "--cache-dir", cache_dir, *TINY_CLI_ARGS])
        assert payload["shard"] == f"{index}/2"
    payload, _ = cli.json(["merge", cache_dir, "--delete-shards"])
    assert payload["images"] == 12
    assert len(list(cache_dir.glob("*.h5"))) == 1
    result = cli(["extract", data, "--shard", "2/2", "--cache-dir", cache_dir, *TINY_CLI_ARGS])
    assert result.exit_code == 2 and "--shard" in result.output


def test_index_digest_ignores_file_times_but_not_labels(tmp_path):
    from pipeline.data.dataset import DatasetIndex, ImageRecord

    record = ImageRecord("a.jpg", 0, "train", "ab" * 32, size=10, mtime_ns=1)
    index = DatasetIndex(tmp_path, "generic", ("cat", "dog"), (record,))
    touched = index.with_records([replace(record, mtime_ns=2, size=11)])
    relabelled = index.with_records([replace(record, label=1)])
    assert index_digest(index) == index_digest(touched)
    assert index_digest(index) != index_digest(relabelled)


def test_a_shard_cache_is_refused_by_heads_and_exports_until_merged(tmp_path, tiny_options, cli):
    data = make_dataset(tmp_path / "pets", per_class=3)
    shard = run_extract(data, tmp_path / "cache", replace(tiny_options, shard=Shard(0, 2)))

    for command in (["fit-head", shard.cache_path, "--head", "logreg"],
                    ["export-npz", shard.cache_path, tmp_path / "out.npz"]):
        result = cli(command)
        assert result.exit_code == 1, result.output
        assert "shard 0/2" in result.output and "merge" in result.output
        assert "Traceback" not in result.output
    assert not (tmp_path / "out.npz").exists()

    listing, _ = cli.json(["cache", "ls", "--cache-dir", tmp_path / "cache"])
    assert [row["shard"] for row in listing["caches"]] == ["0/2"]


def test_merge_waits_for_no_shard_being_written(tmp_path, tiny_options):
    from pipeline.cache.lock import CacheLock
    from pipeline.errors import CacheLockedError

    data = make_dataset(tmp_path / "pets", per_class=2)
    shards = [run_extract(data, tmp_path / "cache", replace(tiny_options, shard=Shard(i, 2))) for i in range(2)]
    with CacheLock(Path(shards[1].cache_path)):  # a shard job still writing
        with pytest.raises(CacheLockedError):
            merge_shards([tmp_path / "cache"])
    merged = tmp_path / "cache" / merged_cache_name(Path(shards[0].cache_path).name)
    assert not merged.exists()
    summary = merge_shards([tmp_path / "cache"], delete_shards=True)
    assert summary.cache_path == str(merged) and merged.exists()
    assert len(summary.deleted) >= 2 and not any(Path(s.cache_path).exists() for s in shards)


def test_a_folder_argument_ignores_shard_caches(tmp_path, tiny_options):
    from pipeline.cache.format import resolve_cache_argument

    data = make_dataset(tmp_path / "pets", per_class=2)
    cache_dir = tmp_path / "cache"
    run_extract(data, cache_dir, replace(tiny_options, shard=Shard(0, 2)))
    with pytest.raises(CacheError, match="only shard caches"):
        resolve_cache_argument(cache_dir)
    run_extract(data, cache_dir, replace(tiny_options, shard=Shard(1, 2)))
    summary = merge_shards([cache_dir])  # the shard caches stay
    assert resolve_cache_argument(cache_dir) == Path(summary.cache_path)
