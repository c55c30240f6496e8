"""Each famous layout in miniature (generated images) and on the real samples in ../shared/data."""

import shutil
from pathlib import Path

import pytest
from conftest import write_image
from samples import (
    COLOUR,
    STANFORD_FOLDERS,
    dogimages_sample,
    kaggle_sample,
    manifest_sample,
    oxford_sample,
    petimages_sample,
    sample_images,
    save_stanford_list,
    stanford_sample,
)

from pipeline.data.layouts import LAYOUTS, discover, layout_names
from pipeline.errors import DatasetError


def _by_path(index):
    return {r.relpath: r for r in index.records}


def _labels(index):
    return {r.relpath: index.class_names[r.label] for r in index.records}


# --------------------------------------------------------------------------------------------
# registry


def test_registry_lists_specific_layouts_first_and_generic_last():
    names = layout_names()
    assert names[-1] == "generic"
    assert set(names) == {"oxford-pets", "stanford-dogs", "petimages", "kaggle-dogs-vs-cats", "dogimages", "csv",
                          "generic"}
    for module in LAYOUTS.values():
        assert all(hasattr(module, attr) for attr in ("NAME", "DESCRIPTION", "detect", "load"))


def test_extract_and_inspect_offer_every_layout(cli):
    for command in ("extract", "inspect"):
        text = cli([command, "--help"]).output
        for name in layout_names():
            assert name in text, (command, name)


def test_unknown_layout_and_unrecognised_file_are_refused(tmp_path):
    with pytest.raises(DatasetError, match="unknown layout 'nope'"):
        discover(tmp_path, "nope")
    loose = tmp_path / "photo.jpg"
    write_image(loose, COLOUR, 1)
    with pytest.raises(DatasetError, match=r"could not recognise the layout.*--layout NAME"):
        discover(loose)


# --------------------------------------------------------------------------------------------
# Udacity dogImages


def test_dogimages_is_detected_with_bare_breed_names_in_prefix_order(tmp_path):
    index = discover(dogimages_sample(tmp_path / "dogImages"))
    assert index.layout == "dogimages"
    assert index.class_names == ("Affenpinscher", "Afghan_hound", "Airedale_terrier")
    assert index.split_counts() == {"train": 9, "valid": 3, "test": 6}
    labels = _labels(index)
    assert labels["train/002.Afghan_hound/Afghan_hound_00003.jpg"] == "Afghan_hound"
    assert all(path.split("/")[1].endswith(name) for path, name in labels.items())
    assert all(r.split == r.relpath.split("/")[0] for r in index.records)


def test_dogimages_refuses_one_number_for_two_breeds(tmp_path):
    root = dogimages_sample(tmp_path / "dogImages")
    sample_images(root / "valid" / "002.Beagle", ["Beagle_1.jpg"])
    with pytest.raises(DatasetError, match=r"class number 2 .* names 2 breeds"):
        discover(root)


def test_dogimages_notes_a_split_without_some_class(tmp_path):
    root = dogimages_sample(tmp_path / "dogImages")
    shutil.rmtree(root / "test" / "003.Airedale_terrier")
    index = discover(root)
    assert any("test/ has no folder for 1 class: 003.Airedale_terrier" in note for note in index.notes)


@pytest.mark.realdata
def test_dogimages_real_sample(shared_data):
    index = discover(shared_data / "dogimages-mini")
    assert index.layout == "dogimages"
    assert index.class_names == ("German_shepherd", "golden_retriever", "Maltese_dog", "Saint_Bernard")
    assert index.split_counts() == {"train": 48, "valid": 12, "test": 12}
    assert index.class_counts()["valid"] == dict.fromkeys(index.class_names, 3)


# --------------------------------------------------------------------------------------------
# Oxford-IIIT Pet

def test_oxford_pets_labels_by_breed_with_species_and_official_split(tmp_path):
    index = discover(oxford_sample(tmp_path / "oxford"))
    assert index.layout == "oxford-pets"
    assert index.class_names == ("Abyssinian", "american_bulldog", "Bengal")  # CLASS-ID order 1, 2, 6
    assert dict(index.extra_targets) == {"species": ("cat", "dog")}
    records = _by_path(index)
    assert set(records) == {f"images/{n}.jpg" for n in ("Abyssinian_1", "Abyssinian_2", "Abyssinian_5", "Abyssinian_34",
                                                        "american_bulldog_10", "american_bulldog_11", "Bengal_3")}
    bulldog = records["images/american_bulldog_11.jpg"]
    assert (index.class_names[bulldog.label], bulldog.split, bulldog.extra_labels) == ("american_bulldog", "test", (1,))
    bengal = records["images/Bengal_3.jpg"]
    assert (index.class_names[bengal.label], bengal.split, bengal.extra_labels) == ("Bengal", "train", (0,))
    assert index.split_counts() == {"train": 5, "test": 2}
    assert [(s.relpath, s.reason) for s in index.skipped] == [
        ("images/Bengal_4.jpg", "listed in list.txt line 11 but missing from images/")]
    notes = " | ".join(index.notes)
    assert "left out 1 image of images/ that no annotation file lists" in notes and "Bengal_77" in notes
    assert "images/Abyssinian_100.mat" in notes


def test_oxford_pets_extracts_with_species_stored_as_an_extra_target(tmp_path, tiny_options):
    from pipeline.cache.format import read_cache_info
    from pipeline.extract.run import run_extract

    summary = run_extract(oxford_sample(tmp_path / "oxford"), tmp_path / "cache", tiny_options)
    info = read_cache_info(summary.cache_path)
    assert info.class_names == ("Abyssinian", "american_bulldog", "Bengal") and info.dataset.layout == "oxford-pets"
    species_names, species = info.extra_targets["species"]
    by_path = dict(zip(info.images.relpath, species))
    assert species_names == ("cat", "dog")
    assert by_path["images/american_bulldog_10.jpg"] == 1 and by_path["images/Abyssinian_1.jpg"] == 0
    assert ("images/Bengal_4.jpg", "listed in list.txt line 11 but missing from images/") in info.failures
    assert info.split_sizes()["test"] == 2


def test_oxford_pets_refuses_disagreeing_annotations(tmp_path):
    root = oxford_sample(tmp_path / "oxford")
    (root / "annotations" / "test.txt").write_text("Abyssinian_2 2 1 1\n")
    with pytest.raises(DatasetError, match=r"test\.txt line 1 gives Abyssinian_2 class 2 .* line 5 says class 1"):
        discover(root)


def test_oxford_pets_refuses_an_image_in_both_splits(tmp_path):
    root = oxford_sample(tmp_path / "oxford")
    (root / "annotations" / "test.txt").write_text("Abyssinian_1 1 1 1\n")
    with pytest.raises(DatasetError, match=r"Abyssinian_1 is listed in both trainval\.txt and test\.txt"):
        discover(root)


def test_oxford_pets_refuses_a_class_id_shared_by_two_breeds(tmp_path):
    root = oxford_sample(tmp_path / "oxford")
    for listing in (root / "annotations").iterdir():
        listing.write_text(listing.read_text().replace("Bengal_3 6 1 3", "Bengal_3 1 1 3"))
    with pytest.raises(DatasetError, match="CLASS-ID 1 is given to images of 2 breeds"):
        discover(root)


def test_oxford_pets_without_split_files_carves_every_split(tmp_path):
    root = oxford_sample(tmp_path / "oxford")
    (root / "annotations" / "trainval.txt").unlink()
    (root / "annotations" / "test.txt").unlink()
    index = discover(root)
    assert index.split_counts() == {"unassigned": 7}
    assert sum("trainval.txt not found" in note for note in index.notes) == 1


@pytest.mark.realdata
def test_oxford_pets_real_sample(shared_data):
    index = discover(shared_data / "oxford-pets-mini")
    assert index.layout == "oxford-pets"
    assert len(index.class_names) == 37 and index.class_names[:2] == ("Abyssinian", "american_bulldog")
    assert index.split_counts() == {"train": 185, "test": 30}
    species = [index.extra_targets["species"][r.extra_labels[0]] for r in index.records]
    cat_breeds = {index.class_names[r.label] for r, s in zip(index.records, species) if s == "cat"}
    assert len(cat_breeds) == 12 and all(name[0].isupper() for name in cat_breeds)  # cats are capitalised
    assert index.skipped == ()


# --------------------------------------------------------------------------------------------
# Stanford Dogs

def test_stanford_dogs_uses_the_official_lists(tmp_path):
    index = discover(stanford_sample(tmp_path / "stanford"))
    assert index.layout == "stanford-dogs"
    assert index.root == (tmp_path / "stanford" / "Images").resolve()
    assert index.class_names == ("Chihuahua", "Japanese_spaniel", "Shih-Tzu")  # after the first "-" only
    assert index.split_counts() == {"train": 6, "test": 3}
    labels = _labels(index)
    assert labels["n02086240-Shih-Tzu/n02086240_0.jpg"] == "Shih-Tzu"
    assert _by_path(index)["n02085782-Japanese_spaniel/n02085782_2.jpg"].split == "test"
    assert [s.relpath for s in index.skipped] == ["n02085620-Chihuahua/gone.jpg"]
    assert "test_list.mat" in index.skipped[0].reason
    notes = " | ".join(index.notes)
    assert "left out 3 images that neither list names" in notes
    assert "lists/train_list.mat (6 train)" in notes and "lists/test_list.mat (4 test)" in notes


def test_stanford_dogs_finds_lists_unpacked_next_to_images(tmp_path):
    index = discover(stanford_sample(tmp_path / "stanford", lists_folder=None))
    assert index.split_counts() == {"train": 6, "test": 3}


def test_stanford_dogs_without_lists_carves_every_split(tmp_path):
    root = stanford_sample(tmp_path / "stanford")
    shutil.rmtree(root / "lists")
    index = discover(root / "Images")  # the Images folder itself is accepted too
    assert index.layout == "stanford-dogs" and index.split_counts() == {"unassigned": 12}
    assert any("no official split lists" in note for note in index.notes)


def test_stanford_dogs_kaggle_copy_with_nested_images_folder(tmp_path):
    root = stanford_sample(tmp_path / "stanford-dogs-dataset")
    shutil.rmtree(root / "lists")
    (root / "images").mkdir()
    (root / "Images").rename(root / "images" / "Images")
    (root / "annotations" / "Annotation").mkdir(parents=True)
    index = discover(root)
    assert index.layout == "stanford-dogs" and len(index.records) == 12
    assert index.root == (root / "images" / "Images").resolve()


def test_stanford_dogs_refuses_a_list_label_naming_two_folders(tmp_path):
    root = stanford_sample(tmp_path / "stanford")
    save_stanford_list(root / "lists" / "test_list.mat", [(f"{STANFORD_FOLDERS[1]}/n02085782_2.jpg", 1)])
    with pytest.raises(DatasetError, match="label 1 to both n02085620-Chihuahua/ and n02085782-Japanese_spaniel/"):
        discover(root)


def test_stanford_dogs_refuses_list_paths_that_escape_images(tmp_path):
    root = stanford_sample(tmp_path / "stanford")
    save_stanford_list(root / "lists" / "test_list.mat", [("../../etc/passwd", 1)])
    with pytest.raises(DatasetError, match="escapes the dataset root"):
        discover(root)


# --------------------------------------------------------------------------------------------
# Microsoft PetImages


@pytest.mark.parametrize("inner", ["", "PetImages"])
def test_petimages_reads_cat_and_dog_and_names_thumbs_db(tmp_path, inner):
    root = petimages_sample(tmp_path / "kagglecatsanddogs")
    index = discover(root / inner if inner else root)
    assert index.layout == "petimages" and index.class_names == ("Cat", "Dog")
    assert index.split_counts() == {"unassigned": 6}  # the zero-byte file is kept for the decoder to report
    assert "Cat/666.jpg" in _by_path(index)
    assert any("Cat/Thumbs.db" in note for note in index.notes)


@pytest.mark.realdata
def test_petimages_real_sample(shared_data):
    index = discover(shared_data / "petimages-mini")
    assert index.layout == "petimages" and index.class_names == ("Cat", "Dog")
    assert len(index.records) == 164
    assert {"Cat/666.jpg", "Dog/11702.jpg"} <= set(_by_path(index))
    assert any("Thumbs.db" in note for note in index.notes)


# --------------------------------------------------------------------------------------------
# Kaggle dogs-vs-cats


def test_kaggle_dogs_vs_cats_labels_by_prefix_and_leaves_test1_out(tmp_path):
    index = discover(kaggle_sample(tmp_path / "dogs-vs-cats"))
    assert index.layout == "kaggle-dogs-vs-cats" and index.class_names == ("cat", "dog")
    assert _labels(index) == {"cat.0.jpg": "cat", "cat.1.jpg": "cat", "cat.12.jpg": "cat", "dog.0.jpg": "dog",
                              "dog.7.jpg": "dog"}
    assert index.split_counts() == {"unassigned": 5}
    assert any("test1/ holds 3 unlabelled images" in note and "not used" in note for note in index.notes)


def test_kaggle_train_folder_itself_is_accepted(tmp_path):
    index = discover(kaggle_sample(tmp_path / "dogs-vs-cats") / "train")
    assert index.layout == "kaggle-dogs-vs-cats" and len(index.records) == 5
    assert any("test1/ holds 3 unlabelled images" in note for note in index.notes)


def test_kaggle_names_without_a_label_are_skipped_not_guessed(tmp_path):
    root = kaggle_sample(tmp_path / "dogs-vs-cats")
    sample_images(root / "train", [f"cat.{n}.jpg" for n in range(100, 110)], seed=60)
    sample_images(root / "train", ["IMG_0001.jpg"], seed=90)
    index = discover(root)  # one stray name in 16 does not hide the layout
    assert index.layout == "kaggle-dogs-vs-cats" and len(index.records) == 15
    assert [(s.relpath, "does not start with a label" in s.reason) for s in index.skipped] == [("IMG_0001.jpg", True)]


def test_a_folder_of_camera_photos_is_not_kaggle(tmp_path):
    sample_images(tmp_path / "photos" / "train", ["cat.1.jpg", "dog.1.jpg", "IMG_1.jpg", "IMG_2.jpg"])
    assert not LAYOUTS["kaggle-dogs-vs-cats"].detect(tmp_path / "photos")


@pytest.mark.realdata
def test_kaggle_real_sample(shared_data):
    index = discover(shared_data / "kaggle-dogs-vs-cats-mini")
    assert index.layout == "kaggle-dogs-vs-cats" and index.class_names == ("cat", "dog")
    assert len(index.records) == 138
    assert all(Path(path).name.split(".")[0] == label for path, label in _labels(index).items())


# --------------------------------------------------------------------------------------------
# CSV manifest


def test_csv_manifest_with_header_split_and_extra_label_column(tmp_path):
    manifest = manifest_sample(tmp_path / "data", "\ufeffPath,Label,Split,species\n"
                         "photos/rex.jpg,terrier,train,dog\n"
                         "photos/tom.png,persian,test,cat\n"
                         '"photos/felix, the cat.jpg",persian,,cat\n'
                         "photos/gone.jpg,terrier,train,dog\n"
                         "photos/rex.jpg,terrier,train,dog\n")
    index = discover(manifest)
    assert index.layout == "csv" and index.root == manifest.parent.resolve()
    assert index.class_names == ("persian", "terrier")
    assert dict(index.extra_targets) == {"species": ("cat", "dog")}
    records = _by_path(index)
    assert set(records) == {"photos/rex.jpg", "photos/tom.png", "photos/felix, the cat.jpg"}
    assert (records["photos/tom.png"].split, records["photos/tom.png"].extra_labels) == ("test", (0,))
    assert records["photos/felix, the cat.jpg"].split is None
    rex = records["photos/rex.jpg"]
    assert (index.class_names[rex.label], rex.extra_labels) == ("terrier", (1,))
    assert [(s.relpath, s.reason) for s in index.skipped] == [
        ("photos/gone.jpg", "listed on labels.csv line 5 but the file does not exist")]
    assert any("1 row repeating an earlier row used once: labels.csv line 6" in note for note in index.notes)


def test_extract_accepts_the_csv_file_as_data_dir(tmp_path, cli):
    from conftest import TINY_CLI_ARGS

    from pipeline.cache.format import read_cache_info

    manifest = manifest_sample(tmp_path / "data", "path,label,split,species\nphotos/rex.jpg,terrier,train,dog\n"
                         "photos/fido.jpg,terrier,test,dog\nphotos/tom.png,persian,train,cat\n")
    payload, _ = cli.json(["extract", manifest, "--cache-dir", tmp_path / "cache", *TINY_CLI_ARGS])
    assert payload["layout"] == "csv" and payload["images"] == 3
    assert Path(payload["cache_path"]).name.startswith("labels-vgg16-")
    info = read_cache_info(payload["cache_path"])
    assert info.extra_targets["species"][0] == ("cat", "dog")
    assert info.data_root == manifest.parent.resolve()


def test_csv_manifest_without_header_is_path_label_split(tmp_path):
    manifest = manifest_sample(tmp_path / "data",
                               "photos/rex.jpg,dog,valid\nphotos/fido.jpg,dog\nphotos/tom.png,cat,test\n")
    index = discover(manifest)
    assert [(r.relpath, index.class_names[r.label], r.split) for r in index.records] == [
        ("photos/fido.jpg", "dog", None), ("photos/rex.jpg", "dog", "valid"), ("photos/tom.png", "cat", "test")]


def test_a_folder_with_one_manifest_is_detected_and_two_are_ambiguous(tmp_path):
    root = tmp_path / "data"
    manifest_sample(root, "path,label\nphotos/rex.jpg,dog\nphotos/tom.png,cat\n")
    index = discover(root)
    assert index.layout == "csv" and len(index.records) == 2
    (root / "other.csv").write_text("path,label\nphotos/rex.jpg,cat\n")
    assert discover(root).layout == "generic"  # two CSVs: not a manifest folder; photos/ reads as a class folder
    with pytest.raises(DatasetError, match=r"holds 2 CSV files .*pass the manifest CSV file itself"):
        discover(root, "csv")


@pytest.mark.parametrize("text, message", [
    ("path,label\n../outside.jpg,dog\n", "escapes the dataset root"),
    ("path,label\n/etc/passwd,dog\n", "outside the dataset root"),
    ("path,label\nphotos/rex.jpg,dog\nphotos/rex.jpg,cat\n", "on labels.csv line 2 and on .* line 3 with different"),
    ("path,label,split\nphotos/rex.jpg,dog,holdout\n", "split 'holdout' is not one of"),
    ("path,label\nphotos/rex.jpg,\n", "line 2 has an empty path or label"),
    ("photos/rex.jpg,dog,train,extra\n", "no header and 4 columns"),
    ("path,label\nphotos/felix, the cat.jpg,cat\n", "line 2 has 3 columns but the manifest has 2; put paths .* quotes"),
    ("path,label,species\nphotos/rex.jpg,dog,\n", "no value in column 'species'"),
])
def test_csv_manifest_refuses_what_it_cannot_read_safely(tmp_path, text, message):
    manifest = manifest_sample(tmp_path / "data", text)
    with pytest.raises(DatasetError, match=message):
        discover(manifest, "csv")


# --------------------------------------------------------------------------------------------
# generic stays the fallback


def test_plain_class_folders_are_still_generic(tmp_path):
    root = tmp_path / "plain"
    sample_images(root / "train" / "cat", ["a.jpg"])
    sample_images(root / "train" / "dog", ["b.jpg", "notes.txt"], seed=5)
    index = discover(root)
    assert index.layout == "generic" and index.class_names == ("cat", "dog")
    assert any("ignored 1 file not named like an image: train/dog/notes.txt" in note for note in index.notes)


def test_unrecognised_folders_say_what_is_missing(tmp_path):
    from pipeline.data.layouts import discover
    from pipeline.errors import DatasetError

    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(DatasetError, match="is empty"):
        discover(empty)
    loose = tmp_path / "loose"
    loose.mkdir()
    (loose / "a.jpg").write_bytes(b"x")
    (loose / "b.jpg").write_bytes(b"y")
    with pytest.raises(DatasetError, match="holds 2 files but no class folders"):
        discover(loose)
