"""Hostile and careless inputs found by hand (issue: every file the tool reads is untrusted).

Each test names one case that used to end in exit 70 ("a bug in this tool") or in a memory bomb,
and checks the contract instead: exit 1 with a message saying what was given and what is expected
(2 for a bad option), and decoding memory bounded. The generated counterparts are the
tests/test_fuzz_*.py suites; docs/reliability.md lists every case.
"""

from __future__ import annotations

import io
import json
import re
import shutil
import struct
import tracemalloc
import zipfile
import zlib
from pathlib import Path

import h5py
import numpy as np
import pytest
import scipy.io
from conftest import CLASS_COLOURS, TINY_BACKBONE, make_dataset, write_image
from PIL import Image

from pipeline.data.images import DECODE_BYTES_PER_PIXEL, ImageDecodeError, ResizeSpec, decode_bytes, decode_image
from pipeline.data.layouts import discover
from pipeline.errors import DatasetError

SIDE = 2000  # a 16-bit image of 4 M pixels: 8 MB decoded, 32 MB as float64


def test_wide_images_decode_without_float64_copies(tmp_path):
    values = np.zeros((SIDE, SIDE), dtype=np.uint16)
    values[::7, ::5] = 65535
    path = tmp_path / "wide.png"
    Image.fromarray(values).save(path)
    tracemalloc.start()
    pixels = decode_image(path, ResizeSpec(32, 32))
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    assert pixels.shape == (32, 32, 3) and pixels.max() > 0
    # Before: float64 copies (at least 16 bytes a pixel, 64 MB); now the uint16 array (and Pillow's
    # bytes of it while it is made), the uint8 result and a 2 MB block: about 4 bytes a pixel.
    assert peak < 6 * SIDE * SIDE, f"decoding used {peak / 1e6:.0f} MB of Python/numpy memory"


@pytest.mark.parametrize("mode", ["F", "I"])
def test_float_and_32_bit_images_keep_their_scale(tmp_path, mode):
    values = np.array([[0, 128, 255, 300 * 0]], dtype=np.float32 if mode == "F" else np.int32)
    path = tmp_path / "deep.tif"
    Image.fromarray(values, mode=mode).save(path)
    assert decode_image(path, ResizeSpec(1, 4))[0, :, 0].tolist() == [0, 128, 255, 0]


def test_nan_in_a_float_image_becomes_black(tmp_path):
    values = np.array([[np.nan, 100.0, np.inf, -np.inf]], dtype=np.float32)
    path = tmp_path / "nan.tif"
    Image.fromarray(values, mode="F").save(path)
    assert decode_image(path, ResizeSpec(1, 4))[0, :, 0].tolist() == [0, 100, 255, 0]


def test_decoded_bytes_are_bounded_not_only_pixels(tmp_path):
    """An RGBA image under the pixel limit is refused when compositing it would cost too much memory."""
    max_pixels = 10_000
    side = 90  # 8,100 pixels: under the pixel limit
    Image.new("RGBA", (side, side), (10, 20, 30, 128)).save(tmp_path / "alpha.png")
    Image.new("RGB", (side, side), (10, 20, 30)).save(tmp_path / "plain.png")
    assert decode_bytes("RGBA", side, side) > max_pixels * DECODE_BYTES_PER_PIXEL
    with pytest.raises(ImageDecodeError, match=r"MB to decode.*decompression bomb.*--allow-large-images"):
        decode_image(tmp_path / "alpha.png", ResizeSpec(8, 8), max_pixels=max_pixels)
    assert decode_image(tmp_path / "plain.png", ResizeSpec(8, 8), max_pixels=max_pixels).shape == (8, 8, 3)
    assert decode_image(tmp_path / "alpha.png", ResizeSpec(8, 8), max_pixels=None).shape == (8, 8, 3)


# ----------------------------------------------------------------------------------------------
# Stanford Dogs lists: anything but MATLAB 5 cell arrays of text and whole-number labels


def _stanford_with_list(root: Path, file_list, labels) -> Path:
    folder = root / "Images" / "n02085620-Chihuahua"
    write_image(folder / "n02085620_1.jpg", CLASS_COLOURS["cat"], 1)
    good = np.empty((1, 1), dtype=object)
    good[0, 0] = np.array(["n02085620-Chihuahua/n02085620_1.jpg"])
    (root / "lists").mkdir(parents=True)
    scipy.io.savemat(root / "lists" / "train_list.mat", {"file_list": good, "labels": np.array([[1]])})
    scipy.io.savemat(root / "lists" / "test_list.mat", {"file_list": file_list, "labels": labels})
    return root


def _cells(*values) -> np.ndarray:
    cells = np.empty((len(values), 1), dtype=object)
    for index, value in enumerate(values):
        cells[index, 0] = value
    return cells


_TEXT = np.array(["n02085620-Chihuahua/n02085620_1.jpg"])


@pytest.mark.parametrize(("file_list", "labels", "message"), [
    (_cells(np.array([[3.0]])), np.array([[1]]), "file_list holds 3.0 where a list holds text"),
    (_cells({"a": 1}), np.array([[1]]), "file_list holds a struct where a list holds text"),
    (_cells(np.array([])), np.array([[1]]), "file_list holds an empty cell"),
    (np.array([[1.0, 2.0]]), np.array([[1, 2]]), "file_list holds 1.0 where"),
    (_cells(_TEXT), np.array([[np.nan]]), "labels holds nan where a list holds whole numbers"),
    (_cells(_TEXT), np.array([[1.5]]), "labels holds 1.5 where"),
    (_cells(_TEXT), np.array(["a"]), "labels holds 'a' where"),
    (_cells(_TEXT), {"a": 1}, "labels holds a struct where"),
], ids=["numeric-cell", "struct-cell", "empty-cell", "numeric-list", "nan-label", "fraction-label", "text-label",
        "struct-labels"])
def test_stanford_lists_with_odd_cells_are_refused(tmp_path, file_list, labels, message):
    root = _stanford_with_list(tmp_path / "dogs", file_list, labels)
    with pytest.raises(DatasetError, match=re.escape(message)):
        discover(root)


def test_stanford_lists_saved_as_matlab_v73_are_refused(tmp_path, cli):
    root = _stanford_with_list(tmp_path / "dogs", _cells(_TEXT), np.array([[1]]))
    path = root / "lists" / "test_list.mat"
    with h5py.File(path, "w", userblock_size=512) as file:  # what save(..., '-v7.3') writes
        file["labels"] = np.array([1.0])
    with path.open("r+b") as file:
        file.write(b"MATLAB 7.3 MAT-file, Platform: GLNXA64, HDF5 schema 1.00 .".ljust(124) + b"\x00\x02IM")
    result = cli(["inspect", str(root)])
    assert result.exit_code == 1, result.output
    assert "is a MATLAB v7.3 (HDF5) file" in result.output and "save(..., '-v7')" in result.output


def test_stanford_lists_declaring_huge_variables_are_refused_unread(tmp_path, monkeypatch):
    from pipeline.data.layouts import stanford_dogs

    monkeypatch.setattr(stanford_dogs, "MAX_LIST_ENTRIES", 2)
    root = _stanford_with_list(tmp_path / "dogs", _cells(_TEXT, _TEXT, _TEXT), np.array([[1], [1], [1]]))
    with pytest.raises(DatasetError, match=r"declares file_list of shape \(3, 1\), more than the 2 entries"):
        discover(root)


def test_a_csv_row_naming_a_300_character_file_is_skipped_with_the_reason(tmp_path):
    write_image(tmp_path / "imgs" / "a.jpg", CLASS_COLOURS["cat"], 1)
    long_name = "x" * 300 + ".jpg"
    (tmp_path / "labels.csv").write_text(f"path,label\nimgs/a.jpg,cat\nimgs/{long_name},dog\n")
    index = discover(tmp_path / "labels.csv")
    assert [record.relpath for record in index.records] == ["imgs/a.jpg"]
    [skipped] = index.skipped
    assert skipped.relpath == f"imgs/{long_name}"
    assert "name is too long for the file system (304 bytes" in skipped.reason and "line 3" in skipped.reason


# ----------------------------------------------------------------------------------------------
# import-npz: declared shapes checked against the file and bounds before anything is read


def _npy(shape, dtype, data: bytes = b"") -> bytes:
    header = io.BytesIO()
    np.lib.format.write_array_header_1_0(header, {"descr": np.dtype(dtype).str, "fortran_order": False,
                                                 "shape": tuple(shape)})
    return header.getvalue() + data


def _crafted_npz(path: Path, members: dict[str, bytes], compression=zipfile.ZIP_STORED) -> Path:
    with zipfile.ZipFile(path, "w", compression=compression) as archive:
        for name, content in members.items():
            archive.writestr(name + ".npy", content)
    return path


def _small_split(rows: int) -> dict[str, bytes]:
    return {"valid": _npy((rows, 7, 7, 512), "<f4", bytes(rows * 7 * 7 * 512 * 4)),
            "test": _npy((rows, 7, 7, 512), "<f4", bytes(rows * 7 * 7 * 512 * 4)),
            "valid_paths": _npy((rows,), "<U8", "a/b.jpg\0".encode("utf-32-le") * rows),
            "test_paths": _npy((rows,), "<U8", "a/c.jpg\0".encode("utf-32-le") * rows)}


def test_import_npz_claiming_a_trillion_rows_is_refused_unread(tmp_path, cli):
    npz = _crafted_npz(tmp_path / "claims.npz", {
        "train": _npy((10**12, 7, 7, 512), "<f4"), "train_paths": _npy((10**12,), "<U20"), **_small_split(1)},
        zipfile.ZIP_DEFLATED)
    assert npz.stat().st_size < 2_000
    result = cli(["import-npz", str(npz), "--labels", str(tmp_path), "--cache-dir", str(tmp_path / "cache")])
    assert result.exit_code == 1, result.output
    assert "declares shape (1000000000000, 7, 7, 512)" in result.output and "the header lies" in result.output


def test_import_npz_with_a_deflated_giant_text_array_is_refused_unread(tmp_path, cli):
    chars = 5_000_000
    npz = _crafted_npz(tmp_path / "bomb.npz", {
        "train": _npy((1, 7, 7, 512), "<f4", bytes(7 * 7 * 512 * 4)),
        "train_paths": _npy((1,), f"<U{chars}", bytes(4 * chars)), **_small_split(1)}, zipfile.ZIP_DEFLATED)
    assert npz.stat().st_size < 100_000
    tracemalloc.start()
    result = cli(["import-npz", str(npz), "--labels", str(tmp_path), "--cache-dir", str(tmp_path / "cache")])
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    assert result.exit_code == 1, result.output
    assert f"elements of {chars:,} characters, more than the 4,096" in result.output
    assert peak < 4 * chars  # the 20 MB array was never decompressed


@pytest.mark.parametrize(("members", "message"), [
    ({"x": b"not an npy header at all"}, "has no valid .npy header"),
    ({"x": _npy((3,), "|O", b"\x80\x04N.")}, "holds Python objects"),
    ({"x": _npy((-1, 4), "<f4")}, "is not a shape"),
])
def test_check_npz_refuses_damaged_or_pickled_members(tmp_path, members, message):
    from pipeline.npz_safety import NpzRefusal, check_npz

    with pytest.raises(NpzRefusal, match=re.escape(message)):
        check_npz(_crafted_npz(tmp_path / "odd.npz", members))


def test_check_npz_refuses_a_deflate_bomb_and_accepts_ordinary_files(tmp_path, monkeypatch):
    from pipeline import npz_safety

    np.savez_compressed(tmp_path / "ok.npz", coef=np.ones((3, 8), np.float32), names=np.array(["a", "bb"]))
    declared = npz_safety.check_npz(tmp_path / "ok.npz")
    assert {name: array.shape for name, array in declared.items()} == {"coef": (3, 8), "names": (2,)}
    monkeypatch.setattr(npz_safety, "EXPANSION_FLOOR_BYTES", 1_000)
    np.savez_compressed(tmp_path / "zeros.npz", x=np.zeros(100_000, np.float32))
    with pytest.raises(npz_safety.NpzRefusal, match="a decompression bomb"):
        npz_safety.check_npz(tmp_path / "zeros.npz")


# ----------------------------------------------------------------------------------------------
# Head folders: sidecars, model files and files that are not heads at all


@pytest.fixture(scope="module")
def heads(tmp_path_factory):
    """A tiny cache with a logreg, a knn and a gap-dense head: (cache path, {kind: sidecar path}, an image)."""
    from pipeline.extract.options import ExtractOptions
    from pipeline.extract.run import run_extract
    from pipeline.heads.fitting import fit_head

    root = tmp_path_factory.mktemp("hostile-heads")
    data = make_dataset(root / "pets")
    summary = run_extract(data, root / "cache", ExtractOptions(**TINY_BACKBONE, batch_size=8, valid_fraction=0.3))
    cache = Path(summary.cache_path)
    sidecars = {kind: Path(fit_head(cache, kind, None).sidecar_path) for kind in ("logreg", "knn", "gap-dense")}
    return cache, sidecars, next((data / "test" / "cat").iterdir())


def _copy_head(sidecar_path: Path, folder: Path) -> Path:
    sidecar = json.loads(sidecar_path.read_text())
    for name in (sidecar_path.name, sidecar["model_file"]):
        shutil.copy(sidecar_path.with_name(name), folder / name)
    return folder / sidecar_path.name


def _edit_sidecar(path: Path, **changes) -> Path:
    sidecar = json.loads(path.read_text())
    for key, value in changes.items():
        if value is _DROP:
            sidecar.pop(key)
        else:
            sidecar[key] = value
    path.write_text(json.dumps(sidecar))
    return path


_DROP = object()


@pytest.mark.parametrize(("changes", "message"), [
    ({"class_names": _DROP}, "has no class_names"),
    ({"feature_key": _DROP}, "has no feature_key"),
    ({"model_file": _DROP}, "has no model_file"),
    ({"feature_spec": _DROP}, "has no feature_spec"),
    ({"kind": 7}, "kind should be text, got 7"),
    ({"class_names": "cat,dog"}, "class_names should be a list of text"),
    ({"class_names": [1, 2]}, "class_names should be a list of distinct class names"),
    ({"class_names": ["cat", "cat"]}, "class_names should be a list of distinct class names"),
    ({"feature_spec": {"backbone": "vgg16"}}, "feature_spec cannot be read"),
    ({"hyperparameters": [1]}, "hyperparameters should be an object"),
    ({"format_version": "2"}, "format_version should be a whole number"),
    ({"views": True}, "views should be text"),
], ids=lambda value: str(value)[:30] if isinstance(value, str) else None)
def test_damaged_sidecars_are_head_errors(heads, tmp_path, changes, message):
    from pipeline.errors import HeadError
    from pipeline.heads.store import load_head

    sidecar = _edit_sidecar(_copy_head(heads[1]["logreg"], tmp_path), **changes)
    with pytest.raises(HeadError, match=re.escape(message)):
        load_head(sidecar)


def test_a_sidecar_without_class_names_is_exit_1_in_predict(heads, tmp_path, cli):
    sidecar = _edit_sidecar(_copy_head(heads[1]["logreg"], tmp_path), class_names=_DROP)
    result = cli(["predict", heads[2], "--head", sidecar, "--cache-dir", tmp_path])
    assert result.exit_code == 1, result.output
    assert "has no class_names; the sidecar was edited or damaged" in result.output


def _rewrite_npz(path: Path, **changes) -> None:
    with np.load(path) as arrays:
        content = {name: arrays[name] for name in arrays.files}
    content.update(changes)
    for name in [name for name, value in changes.items() if value is _DROP]:
        content.pop(name)
    np.savez(path, **content)


@pytest.mark.parametrize(("kind", "changes", "message"), [
    ("logreg", {"coef": np.zeros((512, 3))}, "inconsistent shapes: coef (512, 3) (expected (512, 2))"),
    ("logreg", {"intercept": _DROP}, "has no array 'intercept'"),
    ("logreg", {"temperature": np.float64("nan")}, "NaN or infinite weights"),
    ("logreg", {"coef": np.zeros(5)}, "'coef' is (5,) float64, expected a 2-D numeric array"),
    ("logreg", {"mean": np.array(["a", "b"])}, "expected a 1-D numeric array"),
    ("knn", {"labels": np.full(12, 5)}, "labels outside 0..1"),
    ("knn", {"k": np.int64(10_000)}, "has k=10000"),
])
def test_model_arrays_are_checked_against_each_other_and_the_classes(heads, tmp_path, kind, changes, message):
    from pipeline.errors import HeadError
    from pipeline.heads.store import load_head

    sidecar = _copy_head(heads[1][kind], tmp_path)
    _rewrite_npz(sidecar.with_name(json.loads(sidecar.read_text())["model_file"]), **changes)
    with pytest.raises(HeadError, match=re.escape(message)):
        load_head(sidecar)


def _rewrite_keras_config(path: Path, edit) -> None:
    with zipfile.ZipFile(path) as archive:
        files = {name: archive.read(name) for name in archive.namelist()}
    config = json.loads(files["config.json"])
    edit(config)
    files["config.json"] = json.dumps(config).encode()
    with zipfile.ZipFile(path, "w") as archive:
        for name, data in files.items():
            archive.writestr(name, data)


def _last_layer(config) -> dict:
    return config["config"]["layers"][-1]["config"]


@pytest.mark.parametrize(("edit", "message"), [
    (lambda c: _last_layer(c).update(activation={"module": "os", "class_name": "function", "config": "system",
                                                   "registered_name": "system"}),
     "names a Python function (a function 'system' of module 'os')"),
    (lambda c: _last_layer(c).update(activation={"module": "subprocess", "class_name": "Popen", "config": {}}),
     "names the module 'subprocess'"),
    (lambda c: _last_layer(c).update(units=10**9), "declares a size of 1,000,000,000"),
], ids=["function", "foreign-module", "huge-units"])
def test_keras_heads_whose_config_names_functions_or_huge_sizes_are_refused(heads, tmp_path, cli, edit, message):
    sidecar = _copy_head(heads[1]["gap-dense"], tmp_path)
    _rewrite_keras_config(sidecar.with_name(json.loads(sidecar.read_text())["model_file"]), edit)
    result = cli(["predict", heads[2], "--head", sidecar, "--cache-dir", tmp_path])
    assert result.exit_code == 1, result.output
    assert message in result.output and "never runs code from a file" in result.output


def test_a_keras_head_with_the_wrong_number_of_outputs_is_refused(heads, tmp_path):
    from pipeline.errors import HeadError
    from pipeline.heads.store import load_head

    sidecar = _edit_sidecar(_copy_head(heads[1]["gap-dense"], tmp_path), class_names=["a", "b", "c"])
    with pytest.raises(HeadError, match="outputs 2 values, but the head names 3 classes"):
        load_head(sidecar)


def test_predict_names_the_kind_of_file_given_as_head(heads, tmp_path, cli):
    cache, sidecars, image = heads
    np.savez(tmp_path / "arrays.npz", x=np.zeros(3))
    (tmp_path / "result.json").write_text(json.dumps({"command": "visualize", "outcome": {}}))
    shutil.copy(sidecars["gap-dense"].with_suffix(".keras"), tmp_path / "model.keras")  # no sidecar beside it
    expected = {
        cache: "is a feature cache made by `extract` (vgg16 block5_pool, 24 images); fit a head on it with `fit-head",
        image: "is an image (JPEG 48x40); images are arguments of `predict`",
        tmp_path / "arrays.npz": "is an .npz array file",
        tmp_path / "model.keras": "is a Keras .keras model",
        tmp_path / "result.json": "is the result.json of `visualize` (an explain result)",
    }
    for given, message in expected.items():
        result = cli(["predict", image, "--head", given, "--cache-dir", tmp_path])
        assert result.exit_code == 1, result.output
        assert message in result.output
        assert "not a head. A head is the .json sidecar `fit-head` printed" in result.output


# ----------------------------------------------------------------------------------------------
# Weights files given with --weights PATH


def _weights_file(path: Path, build) -> Path:
    with h5py.File(path, "w") as handle:
        build(handle)
    return path


def _scalar_layer_names(handle):
    handle.attrs["layer_names"] = np.bytes_("block1_conv1")


def _scalar_weight_names(handle):
    handle.attrs["layer_names"] = [b"block1_conv1"]
    handle.create_group("block1_conv1").attrs["weight_names"] = np.bytes_("kernel")


def _missing_dataset(handle):
    handle.attrs["layer_names"] = [b"block1_conv1"]
    handle.create_group("block1_conv1").attrs["weight_names"] = [b"kernel:0"]


def _external_storage(handle):
    handle.attrs["layer_names"] = [b"block1_conv1"]
    group = handle.create_group("block1_conv1")
    group.attrs["weight_names"] = [b"kernel"]
    group.create_dataset("kernel", shape=(4,), dtype="u1", external=[("/etc/hostname", 0, 4)])


@pytest.mark.parametrize(("build", "message"), [
    (_scalar_layer_names, "its layer_names attribute is not a list of layer names"),
    (_scalar_weight_names, "layer 'block1_conv1' has no list of weight_names"),
    (_missing_dataset, "layer 'block1_conv1' names weights that are not datasets: ['kernel:0']"),
    (_external_storage, "dataset 'block1_conv1/kernel' is stored outside the file"),
], ids=["scalar-layer_names", "scalar-weight_names", "missing-dataset", "external-storage"])
def test_malformed_keras_weights_files_are_weights_errors(tmp_path, cli, build, message):
    weights = _weights_file(tmp_path / "weights.h5", build)
    data = make_dataset(tmp_path / "pets", per_class=1)
    result = cli(["extract", data, "--weights", weights, "--input-size", "32", "--cache-dir", tmp_path / "cache"])
    assert result.exit_code == 1, result.output
    assert f"could not load {weights} into vgg16: {message}" in result.output


# ----------------------------------------------------------------------------------------------
# features / visualize --start: one image the user names


def _png_header_only(width: int, height: int) -> bytes:
    """A tiny PNG that claims `width` x `height` pixels (what a decompression bomb looks like)."""
    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    body = chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(b"\0" * 16)) + chunk(b"IEND", b"")
    return b"\x89PNG\r\n\x1a\n" + body


@pytest.fixture
def bad_images(tmp_path) -> dict[str, tuple[Path, str]]:
    (tmp_path / "notes.jpg").write_text("not an image")
    (tmp_path / "huge.png").write_bytes(_png_header_only(20_000, 20_000))
    return {"unreadable": (tmp_path / "notes.jpg", "not a recognised image format"),
            "oversized": (tmp_path / "huge.png", "20000x20000 pixels is over the 89,478,485-pixel limit")}


@pytest.mark.parametrize("case", ["unreadable", "oversized"])
def test_features_refuses_an_unreadable_or_oversized_image(tmp_path, cli, bad_images, case):
    image, reason = bad_images[case]
    result = cli(["features", image, "--backbone", "vgg16", "--weights", "none", "--input-size", "32",
                  "--out", tmp_path / "out", "--cache-dir", tmp_path / "cache"])
    assert result.exit_code == 1, result.output
    assert f"cannot use {image} as the image: {reason}" in result.output
    assert "--allow-large-images" not in result.output or "only `extract --allow-large-images`" in result.output


@pytest.mark.parametrize("case", ["unreadable", "oversized"])
def test_visualize_start_refuses_an_unreadable_or_oversized_image(heads, tmp_path, cli, bad_images, case):
    image, reason = bad_images[case]
    result = cli(["visualize", heads[1]["logreg"], "--class", "cat", "--steps", "1", "--start", image,
                  "--out", tmp_path / "out", "--cache-dir", tmp_path / "cache"])
    assert result.exit_code == 1, result.output
    assert f"cannot use {image} as --start: {reason}" in result.output
    assert "pass --allow-large-images" not in result.output


# ----------------------------------------------------------------------------------------------
# Numeric options: every one has a range, and a value outside is exit 2 naming it


def _numeric_options():
    import click

    from cli import main

    for name, command in main.commands.items():
        commands = command.commands.items() if isinstance(command, click.Group) else [(None, command)]
        for sub, leaf in commands:
            for param in leaf.params:
                if isinstance(param.type, (click.types.IntParamType, click.types.FloatParamType)):
                    yield f"{name} {sub or ''}".strip(), param


def test_every_numeric_option_has_a_lower_and_an_upper_bound():
    import click

    unbounded = [f"{command} {param.opts[0]}" for command, param in _numeric_options()
                 if not isinstance(param.type, (click.IntRange, click.FloatRange))
                 or param.type.min is None or param.type.max is None]
    assert unbounded == []
    assert len(list(_numeric_options())) > 30


@pytest.mark.parametrize(("args", "message"), [
    (["--views", "100000000"], "'--views': 100000000 is not in the range 0<=x<=100"),
    (["--input-size", "200000"], "'--input-size': 200000 is not in the range 1<=x<=1024"),
    (["--batch-size", "10000000"], "'--batch-size': 10000000 is not in the range 1<=x<=1024"),
    (["--split-seed", "-1"], "'--split-seed': -1 is not in the range 0<=x<=4294967295"),
])
def test_out_of_range_options_are_usage_errors(tiny_dataset, tmp_path, cli, args, message):
    result = cli(["extract", tiny_dataset, *args, "--cache-dir", tmp_path / "cache"])
    assert result.exit_code == 2, result.output
    assert message in result.output
    assert not (tmp_path / "cache").exists()
