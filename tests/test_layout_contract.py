"""Every registered dataset layout keeps the layout contract (`pipeline.data.layouts`).

A new layout cannot escape: `SAMPLES` must hold a miniature of every layout in `LAYOUTS`, and each
is held to the same rules - detected as itself, never raising from `detect`, and read into a
`DatasetIndex` whose records are safe, labelled, splittable and exist on disk.
"""

from __future__ import annotations

import os

import pytest
from conftest import make_dataset
from samples import dogimages_sample, kaggle_sample, manifest_sample, oxford_sample, petimages_sample, stanford_sample

from pipeline.data.dataset import SPLITS, safe_relpath
from pipeline.data.indexing import index_dataset
from pipeline.data.layouts import LAYOUTS, discover
from pipeline.errors import DatasetError

SAMPLES = {
    "oxford-pets": lambda root: oxford_sample(root),
    "stanford-dogs": lambda root: stanford_sample(root),
    "petimages": lambda root: petimages_sample(root),
    "kaggle-dogs-vs-cats": lambda root: kaggle_sample(root),
    "dogimages": lambda root: dogimages_sample(root),
    "csv": lambda root: manifest_sample(root, "path,label,split,species\nphotos/rex.jpg,terrier,train,dog\n"
                                        "photos/tom.png,persian,test,cat\nphotos/fido.jpg,terrier,,dog\n"),
    "generic": lambda root: make_dataset(root, per_class=2),
}


def test_every_registered_layout_has_a_sample():
    assert set(SAMPLES) == set(LAYOUTS), "add a miniature of the new layout to SAMPLES"


@pytest.mark.parametrize("name", sorted(LAYOUTS))
def test_layout_is_detected_as_itself_and_reads_a_sound_index(name, tmp_path):
    root = SAMPLES[name](tmp_path / "data")
    module = LAYOUTS[name]
    assert module.NAME == name and module.DESCRIPTION
    assert module.detect(root) is True
    for other in LAYOUTS.values():  # detection never raises, whatever it is shown
        assert other.detect(root) in (True, False)
    index = discover(root)
    assert index.layout == name
    names = index.class_names
    assert names and len(set(names)) == len(names) and all(isinstance(n, str) and n for n in names)
    relpaths = [r.relpath for r in index.records]
    assert len(set(relpaths)) == len(relpaths)
    assert not set(relpaths) & {s.relpath for s in index.skipped}
    for record in index.records:
        assert safe_relpath(record.relpath) == record.relpath
        assert (index.root / os.fsdecode(record.relpath)).is_file()
        assert 0 <= record.label < len(names) and record.split in SPLITS + (None,)
        assert len(record.extra_labels) == len(index.extra_targets)
        for position, classes in enumerate(index.extra_targets.values()):
            assert 0 <= record.extra_labels[position] < len(classes)
    hashed = index_dataset(root, valid_fraction=0.3)
    assert all(record.split in SPLITS for record in hashed.records), "every image gets a split"


@pytest.mark.parametrize("name", sorted(LAYOUTS))
def test_layout_declines_what_is_not_its_own(name, tmp_path):
    module = LAYOUTS[name]
    empty = tmp_path / "empty"
    empty.mkdir()
    stray = tmp_path / "notes.txt"
    stray.write_text("not a dataset")
    assert module.detect(empty) is False and module.detect(stray) is False
    with pytest.raises(DatasetError):
        module.load(empty)
