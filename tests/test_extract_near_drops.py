"""`extract --drop-cross-split-duplicates` after extraction: near-duplicates (other bytes, same picture) in a
later split are dropped with the audit's finder, listed, kept out of every split reader, and a re-run
computes nothing and drops the same images."""

from __future__ import annotations

import os
from dataclasses import replace

import h5py
import numpy as np
import pytest
from conftest import TINY_CLI_ARGS
from PIL import Image
from samples import write_pattern

from pipeline.cache.format import read_cache_info
from pipeline.cache.near_duplicates import MAX_HASH_DISTANCE, NEAR_DUPLICATE_SIMILARITY
from pipeline.cache.segments import RowSource
from pipeline.data.dataset import ImageRecord
from pipeline.extract.near_drops import find_near_drops


@pytest.fixture
def planted(tmp_path):
    """Distinct pictures in train/valid/test, plus: a resized copy of a training image in test, a
    re-compressed copy of another in valid, and a re-compressed copy of a test image within test."""
    root, seed = tmp_path / "pets", 0
    for split, count in (("train", 6), ("valid", 2), ("test", 3)):
        for name in ("cat", "dog"):
            for index in range(count):
                seed += 1
                write_pattern(root / split / name / f"{name}_{index}.jpg", seed)
    Image.open(root / "train/cat/cat_1.jpg").resize((48, 48)).save(root / "test/cat/resized.jpg", quality=90)
    Image.open(root / "train/dog/dog_2.jpg").save(root / "valid/dog/recompressed.jpg", quality=40)
    Image.open(root / "test/dog/dog_0.jpg").save(root / "test/dog/twin.jpg", quality=40)
    return root


def _extract(cli, root, cache_dir, *extra):
    payload, _ = cli.json(["extract", root, "--cache-dir", cache_dir, *TINY_CLI_ARGS, *extra])
    return payload


def test_later_split_near_copies_are_dropped_listed_and_a_rerun_computes_nothing(planted, tmp_path, cli):
    cache_dir = tmp_path / "cache"
    plain = _extract(cli, planted, cache_dir)
    assert plain["near_duplicates_dropped"] == [] and plain["failures"] == []  # opt-in
    assert "test/cat/resized.jpg" in read_cache_info(plain["cache_path"]).images.relpath

    first = _extract(cli, planted, cache_dir, "--drop-cross-split-duplicates")
    assert first["extracted"] == 0 and first["wrote_cache"]
    dropped = {drop["path"]: drop for drop in first["near_duplicates_dropped"]}
    assert sorted(dropped) == ["test/cat/resized.jpg", "valid/dog/recompressed.jpg"]  # not the test-test twin
    assert dropped["test/cat/resized.jpg"]["near"] == "train/cat/cat_1.jpg"
    assert dropped["valid/dog/recompressed.jpg"]["near_split"] == "train"
    assert all(drop["similarity"] >= NEAR_DUPLICATE_SIMILARITY for drop in dropped.values())
    assert all(drop["hash_distance"] <= MAX_HASH_DISTANCE for drop in dropped.values())  # both finders agree here
    reasons = {failure["path"]: failure["reason"] for failure in first["failures"]}
    assert reasons["test/cat/resized.jpg"].startswith("near-duplicate of train/cat/cat_1.jpg in train (similarity 0.")
    assert reasons["test/cat/resized.jpg"].endswith("dropped from test by --drop-cross-split-duplicates")
    assert first["split_counts"] == {"train": 12, "valid": 4, "test": 7}
    assert any(note.startswith("dropped 2 near-duplicates") for note in first["notes"])

    info = read_cache_info(first["cache_path"])
    assert not {"test/cat/resized.jpg", "valid/dog/recompressed.jpg"} & set(info.images.relpath)
    assert {"test/dog/twin.jpg", "train/cat/cat_1.jpg"} <= set(info.images.relpath)
    assert sorted(path for path, _ in info.failures) == sorted(dropped)

    again = _extract(cli, planted, cache_dir, "--drop-cross-split-duplicates")
    assert (again["extracted"], again["wrote_cache"]) == (0, False)
    assert again["near_duplicates_dropped"] == first["near_duplicates_dropped"]
    assert read_cache_info(again["cache_path"]).updated == info.updated


def test_a_first_run_keeps_dropped_rows_and_audit_finds_no_cross_split_pair_hashing_unchanged_files(
        planted, tmp_path, cli):
    first = _extract(cli, planted, tmp_path / "cache", "--drop-cross-split-duplicates")
    assert first["extracted"] == 25 and len(first["near_duplicates_dropped"]) == 2
    with h5py.File(first["cache_path"], "r") as handle:
        assert len(handle["features"]) == 25  # the dropped images' rows stay for the next run
    edited = planted / "test/dog/dog_0.jpg"  # touched since extraction: audit compares it by features only
    os.utime(edited, ns=(edited.stat().st_atime_ns, edited.stat().st_mtime_ns + 10**9))
    audit, _ = cli.json(["audit", first["cache_path"], "--no-map"])
    assert [pair for pair in audit["near_duplicates"] if pair["splits"][0] != pair["splits"][1]] == []
    assert audit["leaked_test"] == []
    assert (audit["images"], audit["hashed"]) == (23, 22)
    twins = [pair for pair in audit["near_duplicates"] if "test/dog/twin.jpg" in (pair["a"], pair["b"])]
    assert [pair["hash_distance"] for pair in twins] == [None]
    text = cli(["extract", planted, "--cache-dir", tmp_path / "cache", *TINY_CLI_ARGS, "--drop-cross-split-duplicates"])
    assert "near-duplicate of train/cat/cat_1.jpg in train" in text.stdout
    assert "Features   0 extracted, 25 reused" in text.stdout


def test_a_run_killed_in_the_pass_leaves_the_cache_as_it_was_and_the_next_run_computes_nothing(
        planted, tmp_path, cli, monkeypatch, tiny_options):
    import pipeline.extract.run as run_module

    def killed(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(run_module, "find_near_drops", killed)
    with pytest.raises(KeyboardInterrupt):
        run_module.run_extract(planted, tmp_path / "cache", replace(tiny_options, drop_cross_split_duplicates=True))
    assert list((tmp_path / "cache").glob("*.h5")) == []  # nothing half-dropped: no cache yet
    monkeypatch.undo()
    resumed = _extract(cli, planted, tmp_path / "cache", "--drop-cross-split-duplicates")
    assert resumed["extracted"] == 0 and len(resumed["near_duplicates_dropped"]) == 2


def _rows_file(path, rows):
    with h5py.File(path, "w") as handle:
        handle.create_dataset("features", data=np.asarray(rows, np.float32))
    return path


def test_the_later_split_of_each_cross_split_pair_is_dropped_whatever_the_order(tmp_path):
    rng = np.random.default_rng(0)
    base = rng.normal(size=(6, 16))
    copy_of_a = base[0] + 0.01 * rng.normal(size=16)
    rows = np.vstack([base, copy_of_a, copy_of_a + 0.01, base[3] + 0.01])
    # a (train) ~ t1 (test) ~ v1 (valid); t2, t3 test-test twins of nothing earlier; b (train) and b2 (train)
    layout = [("train/a", "train"), ("train/b", "train"), ("valid/c", "valid"), ("test/d", "test"),
              ("test/e", "test"), ("valid/f", "valid"), ("test/t1", "test"), ("valid/v1", "valid"),
              ("test/d2", "test")]
    path = _rows_file(tmp_path / "rows.h5", rows)
    records = [ImageRecord(relpath, 0, split, sha256=f"{i:064x}") for i, (relpath, split) in enumerate(layout)]
    sources = {record.sha256: RowSource(path, i) for i, record in enumerate(records)}
    drops = find_near_drops(records, sources, [None] * len(records))  # no files: features only
    assert [(d.path, d.near, d.near_split) for d in drops] == [("test/t1", "train/a", "train"),
                                                               ("valid/v1", "train/a", "train")]
    backwards = find_near_drops(records[::-1], sources, [None] * len(records))
    assert sorted(d.path for d in backwards) == ["test/t1", "valid/v1"]  # test/d2 ~ test/d stays: same split


def test_a_shard_drops_identical_files_only_and_says_why(planted, tmp_path, cli):
    shard = _extract(cli, planted, tmp_path / "cache", "--drop-cross-split-duplicates", "--shard", "1/2")
    assert shard["near_duplicates_dropped"] == []
    assert any("not dropped in a shard cache" in note for note in shard["notes"])
