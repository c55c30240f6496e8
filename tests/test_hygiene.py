"""Leakage and hygiene: identical images across splits, label conflicts, repeats, imbalance."""

import itertools
import shutil
from pathlib import Path

import pytest
from conftest import TINY_CLI_ARGS, make_dataset
from samples import write_pattern

from pipeline.cache.format import read_cache_info
from pipeline.data.dataset import DatasetIndex, ImageRecord
from pipeline.data.hygiene import apply_hygiene, check_hygiene, class_imbalance, drop_cross_split_duplicates
from pipeline.data.indexing import index_dataset
from pipeline.data.splits import assign_splits


def _index(rows, classes=("cat", "dog")):
    """rows: (relpath, class name, split, sha)."""
    records = tuple(ImageRecord(relpath=p, label=classes.index(c), split=s, sha256=h, size=100) for p, c, s, h in rows)
    return DatasetIndex(root=Path("/data"), layout="generic", class_names=classes, records=records)


LEAKY = [
    ("train/cat/a.jpg", "cat", "train", "A"),
    ("test/cat/a_copy.jpg", "cat", "test", "A"),      # leaked into test
    ("valid/cat/a_again.jpg", "cat", "valid", "A"),   # and into valid
    ("valid/dog/b.jpg", "dog", "valid", "B"),
    ("test/dog/b.jpg", "dog", "test", "B"),           # valid/test leak: valid keeps its copy
    ("train/cat/c.jpg", "cat", "train", "C"),
    ("train/dog/c.jpg", "dog", "train", "C"),         # same bytes, two labels
    ("train/dog/d.jpg", "dog", "train", "D"),
    ("train/dog/d2.jpg", "dog", "train", "D"),        # harmless repeat
    ("train/dog/e.jpg", "dog", "train", "E"),
]


def test_check_hygiene_finds_each_kind_of_duplicate():
    report = check_hygiene(_index(LEAKY))
    assert [g.sha256 for g in report.cross_split] == ["A", "B"]
    assert [c.relpath for c in report.cross_split[0].copies] == ["train/cat/a.jpg", "valid/cat/a_again.jpg",
                                                                  "test/cat/a_copy.jpg"]  # train, valid, test order
    assert [g.sha256 for g in report.conflicts] == ["C"] and report.conflicts[0].labels() == ["cat", "dog"]
    assert [[c.relpath for c in g.copies] for g in report.repeats] == [["train/dog/d.jpg", "train/dog/d2.jpg"]]
    notes = " | ".join(report.notes())
    assert "2 images are in more than one split" in notes and "--drop-cross-split-duplicates" in notes
    assert "1 images have conflicting labels" in notes and "1 files repeat" in notes


def test_dropping_keeps_the_earliest_split_and_lists_what_was_dropped():
    index = _index(LEAKY)
    dropped = drop_cross_split_duplicates(index, check_hygiene(index))
    kept = {r.relpath for r in dropped.records}
    assert "train/cat/a.jpg" in kept and "valid/dog/b.jpg" in kept
    assert {"test/cat/a_copy.jpg", "valid/cat/a_again.jpg", "test/dog/b.jpg"}.isdisjoint(kept)
    reasons = {s.relpath: s.reason for s in dropped.skipped}
    assert reasons["test/dog/b.jpg"] == ("identical to valid/dog/b.jpg in valid; dropped from test by "
                                         "--drop-cross-split-duplicates")
    assert len(reasons) == 3 and len(dropped.records) == len(LEAKY) - 3
    assert check_hygiene(dropped).cross_split == ()


def test_apply_hygiene_notes_without_dropping_unless_asked():
    index = _index(LEAKY)
    reported = apply_hygiene(index)
    assert len(reported.records) == len(LEAKY) and reported.skipped == ()
    assert any("more than one split" in note for note in reported.notes)
    dropped = apply_hygiene(index, drop_cross_split=True)
    assert len(dropped.records) == len(LEAKY) - 3
    assert any("only the copy in the earliest split is kept" in note for note in dropped.notes)
    assert not any("Pass --drop-cross-split-duplicates" in note for note in dropped.notes)


def test_empty_files_are_not_duplicates_of_each_other():
    index = DatasetIndex(root=Path("/data"), layout="generic", class_names=("cat", "dog"), records=(
        ImageRecord("train/cat/666.jpg", 0, "train", sha256="E0", size=0),
        ImageRecord("test/dog/11702.jpg", 1, "test", sha256="E0", size=0),
    ))
    report = check_hygiene(index)
    assert report.cross_split == () and report.conflicts == ()


def test_carved_splits_never_separate_identical_images():
    rows = [(f"cat/{i}.jpg", "cat", None, f"{i // 2:04d}") for i in range(200)]  # 100 pairs of copies
    carved = assign_splits(_index(rows), valid_fraction=0.3, test_fraction=0.3)
    assert check_hygiene(carved).cross_split == ()
    assert {r.split for r in carved.records} == {"train", "valid", "test"}


def test_class_imbalance_per_split():
    rows = [(f"train/cat/{i}.jpg", "cat", "train", f"c{i}") for i in range(9)]
    rows += [(f"train/dog/{i}.jpg", "dog", "train", f"d{i}") for i in range(3)]
    rows += [("test/cat/x.jpg", "cat", "test", "x")]
    imbalance = class_imbalance(_index(rows))
    assert imbalance["train"] == {"largest": {"class": "cat", "count": 9}, "smallest": {"class": "dog", "count": 3},
                                  "ratio": 3.0, "empty_classes": []}
    assert imbalance["test"]["empty_classes"] == ["dog"] and imbalance["test"]["ratio"] == 1.0
    notes = apply_hygiene(_index(rows)).notes
    assert any(note.startswith("class imbalance in train: cat has 9 images, dog 3 (3.0x)") for note in notes)


def _leaky_dataset(root: Path) -> Path:
    make_dataset(root, per_class=4)
    shutil.copy(root / "train" / "cat" / "cat_0.jpg", root / "test" / "cat" / "leaked.jpg")
    shutil.copy(root / "train" / "dog" / "dog_1.jpg", root / "train" / "cat" / "mislabelled.jpg")
    return root


def test_index_dataset_reports_leakage_from_real_files(tmp_path):
    index = index_dataset(_leaky_dataset(tmp_path / "pets"), valid_fraction=0.3)
    report = check_hygiene(index)
    leaked = [[c.relpath for c in g.copies] for g in report.cross_split]
    assert leaked == [["train/cat/cat_0.jpg", "test/cat/leaked.jpg"]]
    assert [g.labels() for g in report.conflicts] == [["cat", "dog"]]
    assert any("1 images are in more than one split" in note for note in index.notes)


def test_extract_drops_leaked_copies_when_asked(tmp_path, cli):
    data = tmp_path / "pets"  # distinct pictures: the option also drops near-duplicates, and there are none here
    for number, (split, name, index) in enumerate(itertools.product(("train", "test"), ("cat", "dog"), range(4))):
        write_pattern(data / split / name / f"{name}_{index}.jpg", number)
    shutil.copy(data / "train" / "cat" / "cat_0.jpg", data / "test" / "cat" / "leaked.jpg")
    shutil.copy(data / "train" / "dog" / "dog_1.jpg", data / "train" / "cat" / "mislabelled.jpg")
    payload, _ = cli.json(["extract", data, "--cache-dir", tmp_path / "cache", *TINY_CLI_ARGS,
                           "--drop-cross-split-duplicates"])
    assert payload["split_counts"]["test"] == 8  # the leaked copy is gone from test
    info = read_cache_info(payload["cache_path"])
    kept_split = info.images.split[info.images.relpath.index("train/cat/cat_0.jpg")]  # train or carved valid
    assert payload["failures"] == [{"path": "test/cat/leaked.jpg", "reason": (
        f"identical to train/cat/cat_0.jpg in {kept_split}; dropped from test by --drop-cross-split-duplicates")}]
    assert any("conflicting labels" in note for note in payload["notes"])
    assert "test/cat/leaked.jpg" not in info.images.relpath
    assert [path for path, _ in info.failures] == ["test/cat/leaked.jpg"]
    assert any("only the copy in the earliest split is kept" in note for note in info.dataset.notes)


@pytest.mark.realdata
def test_real_petimages_zero_byte_files_are_not_reported_as_conflicts(shared_data):
    index = index_dataset(shared_data / "petimages-mini")
    report = check_hygiene(index)
    assert report.conflicts == () and report.cross_split == ()
