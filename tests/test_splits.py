import hashlib
from pathlib import Path

import pytest

from pipeline.data.dataset import DatasetIndex, ImageRecord
from pipeline.data.splits import assign_splits, split_draw, validate_fractions


def _index(count, split=None, classes=("a", "b"), start=0):
    records = [
        ImageRecord(relpath=f"{i}.jpg", label=i % len(classes), split=split,
                    sha256=hashlib.sha256(str(i).encode()).hexdigest())
        for i in range(start, start + count)
    ]
    return DatasetIndex(root=Path("/data"), layout="generic", class_names=classes, records=tuple(records))


def _splits(index):
    return {r.relpath: r.split for r in index.records}


def test_draw_depends_only_on_hash_and_seed():
    sha = "ab" * 32
    assert split_draw(sha, 0) == split_draw(sha, 0)
    assert split_draw(sha, 0) != split_draw(sha, 1)
    assert 0.0 <= split_draw(sha, 0) < 1.0


def test_fractions_are_respected_per_class():
    result = assign_splits(_index(4000), valid_fraction=0.2, test_fraction=0.1)
    for label in (0, 1):
        members = [r for r in result.records if r.label == label]
        share = {s: sum(r.split == s for r in members) / len(members) for s in ("train", "valid", "test")}
        assert share["valid"] == pytest.approx(0.2, abs=0.03)
        assert share["test"] == pytest.approx(0.1, abs=0.03)


def test_adding_images_never_moves_existing_ones():
    before = _splits(assign_splits(_index(300)))
    grown = DatasetIndex(root=Path("/data"), layout="generic", class_names=("a", "b"),
                         records=_index(300).records + _index(60, start=300).records)
    after = _splits(assign_splits(grown))
    assert all(after[path] == split for path, split in before.items())


def test_only_missing_splits_are_carved_from_train():
    records = _index(200, split="train").records + _index(20, split="test", start=200).records
    index = DatasetIndex(root=Path("/data"), layout="generic", class_names=("a", "b"), records=records)
    result = assign_splits(index, valid_fraction=0.25, test_fraction=0.25)
    by_path = _splits(result)
    assert sum(split == "test" for split in by_path.values()) == 20  # official test untouched
    assert all(by_path[f"{i}.jpg"] == "test" for i in range(200, 220))
    carved = sum(by_path[f"{i}.jpg"] == "valid" for i in range(200))
    assert 30 <= carved <= 70
    assert any("carved valid 25%" in note for note in result.notes)


def test_complete_official_splits_are_untouched():
    records = (_index(10, split="train").records + _index(5, split="valid", start=10).records
               + _index(5, split="test", start=15).records)
    index = DatasetIndex(root=Path("/data"), layout="generic", class_names=("a", "b"), records=records)
    assert assign_splits(index) is index


def test_classes_without_validation_images_are_named():
    index = _index(2, classes=("a", "b"))
    result = assign_splits(index, valid_fraction=0.01, test_fraction=0.01)
    assert any("have no valid images" in note for note in result.notes)


@pytest.mark.parametrize("valid,test", [(-0.1, 0.1), (0.6, 0.5), (1.0, 0.0)])
def test_bad_fractions_are_refused(valid, test):
    with pytest.raises(ValueError):
        validate_fractions(valid, test)
