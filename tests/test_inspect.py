"""`inspect DATA_DIR`: layout, counts, unreadable files, format mismatches, duplicates - no model."""

import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import REPO_ROOT, make_dataset, write_image

from pipeline.data.inspection import inspect_dataset


def _messy_dataset(root: Path) -> Path:
    make_dataset(root, per_class=3)
    broken = root / "train" / "cat"
    (broken / "empty.jpg").write_bytes(b"")
    whole = write_image(broken / "whole.jpg", (90, 90, 90), 77, size=(64, 64)).read_bytes()
    (broken / "truncated.jpg").write_bytes(whole[: len(whole) // 2])
    (broken / "whole.jpg").unlink()
    (broken / "notes.jpg").write_text("not an image at all")
    write_image(root / "train" / "dog" / "really_a.jpg", (60, 60, 200), 78, fmt="PNG")
    shutil.copy(root / "train" / "cat" / "cat_0.jpg", root / "test" / "cat" / "leaked.jpg")
    return root


def test_inspect_json_reports_every_problem(tmp_path, cli):
    data = _messy_dataset(tmp_path / "pets")
    payload, _ = cli.json(["inspect", data])
    assert payload["layout"] == "generic" and payload["classes"] == ["cat", "dog"]
    reasons = {item["path"]: item["reason"] for item in payload["unreadable"]}
    assert reasons["train/cat/empty.jpg"] == "empty file (0 bytes)"
    assert reasons["train/cat/truncated.jpg"].startswith("corrupt or truncated image data")
    assert reasons["train/cat/notes.jpg"].startswith("not a recognised image format")
    assert len(reasons) == 3
    assert payload["format_mismatches"] == [{"path": "train/dog/really_a.jpg", "format": "PNG"}]
    assert payload["images"] == 3 + 4 + 4 + 3  # train cats, train dogs + PNG, test cats + leaked copy, test dogs
    counts = payload["class_counts"]
    assert sum(counts["test"].values()) == 7 and counts["test"]["cat"] == 4
    assert counts["train"]["cat"] + counts.get("valid", {}).get("cat", 0) == 3  # the 3 broken cats are not counted
    assert payload["split_counts"]["test"] == 7
    assert payload["imbalance"]["test"]["ratio"] == pytest.approx(4 / 3, abs=1e-3)
    leaks = payload["duplicates"]["cross_split"]
    assert [[c["path"] for c in group["copies"]] for group in leaks] == [["train/cat/cat_0.jpg", "test/cat/leaked.jpg"]]
    assert payload["duplicates"]["conflicts"] == []


def test_inspect_text_summary(tmp_path, cli):
    result = cli(["inspect", _messy_dataset(tmp_path / "pets")])
    assert result.exit_code == 0, result.output
    text = result.output
    assert "(generic layout)" in text and "Unreadable 3 files:" in text
    assert "train/cat/empty.jpg: empty file (0 bytes)" in text
    assert "Leakage    1 identical images in two splits" in text
    assert "train/dog/really_a.jpg: PNG data" in text
    assert "Conflicts  none" in text


def test_inspect_uses_the_splits_extract_would_use(tmp_path):
    data = make_dataset(tmp_path / "flat", per_class=20, splits=())
    first = inspect_dataset(data, valid_fraction=0.25, test_fraction=0.25, split_seed=3)
    again = inspect_dataset(data, valid_fraction=0.25, test_fraction=0.25, split_seed=3)
    other = inspect_dataset(data, valid_fraction=0.25, test_fraction=0.25, split_seed=4)
    assert first.class_counts == again.class_counts != other.class_counts
    assert set(first.split_counts) == {"train", "valid", "test"} and first.images == 40


def test_inspect_empty_folder_is_a_clean_error(tmp_path, cli):
    (tmp_path / "empty").mkdir()
    payload, result = cli.json(["inspect", tmp_path / "empty"], expect_ok=False)
    assert result.exit_code == 1
    assert "is empty" in payload["error"] and "one folder of images per class" in payload["error"]


@pytest.mark.parametrize("command", ["inspect", "extract"])
def test_a_missing_data_folder_is_a_problem_with_files(tmp_path, cli, command):
    args = [command, tmp_path / "absent"] + (["--cache-dir", tmp_path / "cache"] if command == "extract" else [])
    payload, result = cli.json(args, expect_ok=False)
    assert result.exit_code == 1 and "does not exist" in payload["error"]  # the README: 1 for your data or files
    text = cli(args)
    assert text.exit_code == 1 and text.stderr.startswith("Error: dataset path") and "Traceback" not in text.output


def test_inspect_never_loads_a_model(tmp_path):
    data = make_dataset(tmp_path / "pets", per_class=2)
    code = ("import sys; from pipeline.data.inspection import inspect_dataset; "
            f"report = inspect_dataset({str(data)!r}); "
            "assert report.images == 8, report; "
            "assert 'tensorflow' not in sys.modules and 'keras' not in sys.modules, 'a model library was imported'")
    subprocess.run([sys.executable, "-c", code], cwd=REPO_ROOT, check=True, timeout=120)


# --------------------------------------------------------------------------------------------
# real broken files


@pytest.mark.realdata
def test_inspect_real_corrupt_files(shared_data, tmp_path):
    corrupt = shared_data / "corrupt"
    root = tmp_path / "mixed"
    for name in ("petimages_cat_10125_GIF_as.jpg", "oxford_Abyssinian_5_PNG_RGBA_as.jpg",
                 "petimages_cat_10404_PSD_as.jpg", "PetImages_Cat_Thumbs.db"):
        (root / "cat").mkdir(parents=True, exist_ok=True)
        shutil.copy(corrupt / name, root / "cat" / name)
    shutil.copy(corrupt / "PetImages_Cat_Thumbs.db", root / "cat" / "Thumbs.db")
    for name in ("petimages_dog_10173_BMP_as.jpg", "petimages_dog_1789_CMYK.jpg"):
        (root / "dog").mkdir(exist_ok=True)
        shutil.copy(corrupt / name, root / "dog" / name)
    shutil.copy(corrupt / "PetImages_Icon_CR_zero_bytes", root / "dog" / "11702.jpg")

    report = inspect_dataset(root)
    reasons = {item["path"]: item["reason"] for item in report.unreadable}
    assert set(reasons) == {"dog/11702.jpg"}
    assert reasons["dog/11702.jpg"] == "empty file (0 bytes)"
    assert {(m["path"], m["format"]) for m in report.format_mismatches} == {
        ("cat/petimages_cat_10125_GIF_as.jpg", "GIF"), ("cat/oxford_Abyssinian_5_PNG_RGBA_as.jpg", "PNG"),
        ("cat/petimages_cat_10404_PSD_as.jpg", "PSD"), ("dog/petimages_dog_10173_BMP_as.jpg", "BMP")}
    assert report.images == 5  # GIF, PNG, PSD, BMP and CMYK JPEG all decode by content
    assert any("cat/PetImages_Cat_Thumbs.db" in note and "cat/Thumbs.db" in note for note in report.notes)


@pytest.mark.realdata
def test_inspect_oxford_pets_with_the_release_broken_files(shared_data, tmp_path):
    root = tmp_path / "oxford"
    shutil.copytree(shared_data / "oxford-pets-mini", root)
    listing = root / "annotations" / "list.txt"
    trainval = root / "annotations" / "trainval.txt"
    rows = "Abyssinian_5 1 1 1\nAbyssinian_34 1 1 1\nbeagle_116 5 2 4\n"
    listing.write_text(listing.read_text() + rows)
    trainval.write_text(trainval.read_text() + rows)
    shutil.copy(shared_data / "corrupt" / "oxford_Abyssinian_5_PNG_RGBA_as.jpg", root / "images" / "Abyssinian_5.jpg")
    shutil.copy(shared_data / "corrupt" / "oxford_Abyssinian_34_GIF_as.jpg", root / "images" / "Abyssinian_34.jpg")
    (root / "images" / "beagle_116.jpg").write_bytes(b"\xff\xd8\xff\xe0" + bytes(200))  # a JPEG that stops short

    report = inspect_dataset(root)
    assert report.layout == "oxford-pets" and len(report.classes) == 37
    assert [item["path"] for item in report.unreadable] == ["images/beagle_116.jpg"]
    assert {(m["path"], m["format"]) for m in report.format_mismatches} == {
        ("images/Abyssinian_5.jpg", "PNG"), ("images/Abyssinian_34.jpg", "GIF")}
    assert report.images == 217
    assert report.extra_targets == {"species": ["cat", "dog"]}


@pytest.mark.realdata
def test_inspect_real_petimages(shared_data, cli):
    payload, _ = cli.json(["inspect", shared_data / "petimages-mini"])
    assert payload["layout"] == "petimages" and payload["classes"] == ["Cat", "Dog"]
    assert {(u["path"], u["reason"]) for u in payload["unreadable"]} == {
        ("Cat/666.jpg", "empty file (0 bytes)"), ("Dog/11702.jpg", "empty file (0 bytes)")}
    assert payload["images"] == 162
    assert payload["duplicates"]["conflicts"] == []
    assert any("Thumbs.db" in note for note in payload["notes"])


def test_imbalance_never_names_one_class_twice(tmp_path, cli):
    from conftest import make_dataset

    from pipeline.data.inspection import imbalance_text

    item = {"largest": {"class": "cat", "count": 150}, "smallest": {"class": "cat", "count": 150}, "ratio": 1.0,
            "empty_classes": []}
    assert imbalance_text(item, 2) == "1.00 (every class 150)"
    assert imbalance_text({**item, "empty_classes": ["dog"]}, 2) == "1.00 (only cat, 150); no images of 1 classes"
    uneven = {**item, "smallest": {"class": "dog", "count": 100}, "ratio": 1.5}
    assert imbalance_text(uneven, 2) == "1.50 (cat 150, dog 100)"
    data = make_dataset(tmp_path / "even", per_class=4)
    text = cli(["inspect", data, "--valid-fraction", "0"]).stdout
    assert "Imbalance  train: largest/smallest class 1.00 (every class 4)" in text, text
