"""Fuzz: MATLAB lists, npz files and weights files, read in-process.

Contract (tests/fuzz_support.py): Stanford Dogs discovery returns an index or raises
`DatasetError`; `check_npz` returns the declared arrays or raises `NpzRefusal`, and what it
accepts `numpy.load` reads within the declared size; `keras_h5_problem` names a problem or
accepts, and what it accepts the layer-weights readers read without an exception.
"""

from __future__ import annotations

import io
import shutil
import zipfile
from pathlib import Path

import h5py
import numpy as np
import pytest
import scipy.io
from fuzz_support import FUZZ_SETTINGS, contract, make_canary
from hypothesis import given
from hypothesis import strategies as st
from PIL import Image

from pipeline.backbones.layer_weights import keras_h5_problem, read_keras_h5_layer_weights
from pipeline.data.layouts import discover
from pipeline.npz_safety import check_npz

FOLDER = "n02085620-Chihuahua"
GOOD_PATH = f"{FOLDER}/n02085620_1.jpg"

# ----------------------------------------------------------------------------------------------
# MATLAB lists

def _cell_array(values) -> np.ndarray:
    cells = np.empty((len(values), 1), dtype=object)
    for index, value in enumerate(values):
        cells[index, 0] = value
    return cells


_SCALARS = st.one_of(st.integers(-5, 10**6), st.floats(allow_nan=True, allow_infinity=True), st.booleans(),
                     st.text(max_size=12), st.just(GOOD_PATH), st.just("../../outside/secret.txt"))
_CELLS = st.recursive(
    st.one_of(_SCALARS.map(lambda v: np.array([v])), st.just(np.array([])), st.just(np.array([GOOD_PATH])),
              st.dictionaries(st.sampled_from(["a", "b"]), _SCALARS, max_size=2)),
    lambda inner: st.lists(inner, max_size=3).map(_cell_array), max_leaves=6)


@FUZZ_SETTINGS
@given(file_list=st.one_of(_CELLS, st.lists(_CELLS, max_size=4).map(_cell_array)),
       labels=st.one_of(st.lists(_SCALARS, max_size=4).map(lambda v: np.array(v, dtype=object)), _CELLS),
       garbage=st.one_of(st.none(), st.binary(max_size=200)))
def test_any_stanford_list_is_an_index_or_a_dataset_error(tmp_path_factory, file_list, labels, garbage):
    root = tmp_path_factory.mktemp("stanford")
    canary = make_canary(root / "outside")
    dogs = root / "dogs"
    (dogs / "Images" / FOLDER).mkdir(parents=True)
    Image.new("RGB", (4, 4)).save(dogs / "Images" / GOOD_PATH)
    (dogs / "lists").mkdir()
    scipy.io.savemat(dogs / "lists" / "train_list.mat", {"file_list": _cell_array([np.array([GOOD_PATH])]),
                                                         "labels": np.array([[1]])})
    test_list = dogs / "lists" / "test_list.mat"
    if garbage is not None:
        test_list.write_bytes(b"MATLAB 5.0 MAT-file" + garbage)
    else:
        try:
            scipy.io.savemat(test_list, {"file_list": file_list, "labels": labels})
        except (ValueError, TypeError):  # scipy cannot write this combination; nothing to read then
            return
    with contract(canary):
        discover(dogs)


# ----------------------------------------------------------------------------------------------
# npz files

_DTYPES = st.sampled_from(["<f4", "<f8", "<i8", "|u1", "<U8", "<U5000", "|S4", "|b1", "<c8", "|O", "<M8[s]"])
_SHAPES = st.lists(st.one_of(st.integers(0, 6), st.integers(10**6, 10**13), st.integers(-3, -1)), max_size=4)


def _npy(shape, dtype, payload: bytes) -> bytes:
    header = io.BytesIO()
    np.lib.format.write_array_header_1_0(header, {"descr": dtype, "fortran_order": False, "shape": tuple(shape)})
    return header.getvalue() + payload


@st.composite
def npz_files(draw) -> bytes:
    """A zip of `.npy` members with declared shapes that may lie, odd dtypes, damaged headers."""
    buffer = io.BytesIO()
    compression = draw(st.sampled_from([zipfile.ZIP_STORED, zipfile.ZIP_DEFLATED]))
    with zipfile.ZipFile(buffer, "w", compression=compression) as archive:
        for name in draw(st.lists(st.sampled_from(["train", "valid", "coef", "mean", "x", "paths"]), max_size=4,
                                  unique=True)):
            kind = draw(st.sampled_from(["declared", "real", "garbage"]))
            if kind == "declared":
                content = _npy(draw(_SHAPES), draw(_DTYPES), draw(st.binary(max_size=256)))
            elif kind == "real":
                dtype = draw(_DTYPES).replace("|O", "<f4")
                array = np.zeros(draw(st.lists(st.integers(0, 5), max_size=3)), dtype=dtype)
                member = io.BytesIO()
                np.save(member, array)
                content = member.getvalue()
            else:
                content = draw(st.binary(max_size=128))
            archive.writestr(name + ".npy", content)
    data = bytearray(buffer.getvalue())
    if draw(st.booleans()) and data:
        data[draw(st.integers(0, len(data) - 1))] ^= draw(st.integers(1, 255))
    return bytes(data)


@FUZZ_SETTINGS
@given(data=npz_files())
def test_any_npz_is_checked_before_numpy_allocates_anything(tmp_path_factory, data):
    path = tmp_path_factory.mktemp("npz") / "file.npz"
    path.write_bytes(data)
    declared = None
    with contract():
        declared = check_npz(path)
    if declared is None:
        return
    with contract(), np.load(path, allow_pickle=False) as arrays:  # what was accepted loads within bounds
        for name, array in declared.items():
            try:
                loaded = arrays[name]
            except (ValueError, zipfile.BadZipFile, EOFError, OSError):  # damaged data, refused by numpy itself
                continue
            assert loaded.nbytes <= array.nbytes


# ----------------------------------------------------------------------------------------------
# weights files (--weights PATH)

_ATTRIBUTE = st.one_of(st.just(np.bytes_("block1_conv1")), st.just([b"block1_conv1"]), st.just([b"missing"]),
                       st.just(np.array([], dtype=np.float64)), st.just(np.array([3, 4])), st.just([b""]),
                       st.just([b"block1_conv1", b"block1_conv1"]), st.integers(-3, 3))
_WEIGHT_NAMES = st.one_of(st.just(np.bytes_("kernel")), st.just([b"kernel"]), st.just([b"kernel", b"bias"]),
                          st.just([b"nope"]), st.just(np.array([], dtype=np.float64)), st.integers(0, 2))


@FUZZ_SETTINGS
@given(layer_names=_ATTRIBUTE, weight_names=st.one_of(st.none(), _WEIGHT_NAMES),
       nested=st.booleans(), kernel=st.sampled_from(["dataset", "group", "external", "link", "none"]))
def test_any_keras_weights_file_is_accepted_or_named_a_problem(tmp_path_factory, layer_names, weight_names, nested,
                                                                kernel):
    root = tmp_path_factory.mktemp("weights")
    canary = make_canary(root / "outside")
    path = root / "weights.h5"
    with h5py.File(path, "w") as handle:
        group = handle.create_group("model_weights") if nested else handle
        group.attrs["layer_names"] = layer_names
        layer = group.create_group("block1_conv1")
        if weight_names is not None:
            layer.attrs["weight_names"] = weight_names
        if kernel == "dataset":
            layer.create_dataset("kernel", data=np.ones((3, 3), np.float32))
        elif kernel == "group":
            layer.create_group("kernel")
        elif kernel == "external":
            layer.create_dataset("kernel", shape=(len(b"canary"),), dtype="u1", external=[(str(canary), 0, 6)])
        elif kernel == "link":
            layer["kernel"] = h5py.ExternalLink(str(canary), "/x")
    problem = None
    with contract(canary):
        problem = keras_h5_problem(path)
    if problem is None:
        with contract(canary):
            weights = read_keras_h5_layer_weights(path)
        assert all(b"canary" not in np.asarray(array).tobytes() for arrays in weights.values() for array in arrays)
    else:
        assert isinstance(problem, str) and problem


# ----------------------------------------------------------------------------------------------
# feature caches (HDF5): attributes and datasets replaced


_H5_TEXT = st.text(alphabet=st.characters(blacklist_categories=("Cs",), blacklist_characters="\x00"), max_size=30)
_H5_VALUES = st.one_of(st.integers(-2**40, 2**40), st.floats(), _H5_TEXT, st.just("{not json"),
                       st.just(np.array([np.nan, np.inf])), st.just(np.array(["a", "b"], dtype="S")),
                       st.just(np.zeros((2, 2, 2), np.float32)), st.just(np.array([], dtype=np.int64)))


@pytest.fixture(scope="module")
def tiny_cache(tmp_path_factory) -> Path:
    from conftest import TINY_BACKBONE, make_dataset

    from pipeline.extract.options import ExtractOptions
    from pipeline.extract.run import run_extract

    root = tmp_path_factory.mktemp("fuzz-cache")
    options = ExtractOptions(**TINY_BACKBONE, batch_size=8, valid_fraction=0.3, pool="avg")
    return Path(run_extract(make_dataset(root / "pets", per_class=3), root / "cache", options).cache_path)


def _h5_items(handle: h5py.File) -> list[str]:
    names = []
    handle.visit(names.append)
    return names


@FUZZ_SETTINGS
@given(data=st.data())
def test_any_edited_cache_attribute_is_read_or_a_cache_error(tiny_cache, tmp_path_factory, data):
    from pipeline.cache.format import read_cache_info

    path = tmp_path_factory.mktemp("cache") / tiny_cache.name
    shutil.copy(tiny_cache, path)
    with h5py.File(path, "r+") as handle:
        attribute = data.draw(st.sampled_from(sorted(handle.attrs)))
        if data.draw(st.booleans()):
            del handle.attrs[attribute]
        else:
            handle.attrs[attribute] = data.draw(_H5_VALUES)
    with contract():
        read_cache_info(path)


@FUZZ_SETTINGS
@given(data=st.data())
def test_any_edited_cache_dataset_is_read_or_a_cache_error(tiny_cache, tmp_path_factory, data):
    from pipeline.cache.format import read_cache_info
    from pipeline.heads.features import load_feature_set

    path = tmp_path_factory.mktemp("cache") / tiny_cache.name
    shutil.copy(tiny_cache, path)
    with h5py.File(path, "r+") as handle:
        name = data.draw(st.sampled_from([n for n in _h5_items(handle) if isinstance(handle[n], h5py.Dataset)]))
        original = handle[name]
        del handle[name]
        choice = data.draw(st.sampled_from(["group", "strings", "nan", "shape", "out-of-range"]))
        if choice == "group":
            handle.create_group(name)
        elif choice == "strings":
            handle[name] = np.array([b"x"] * max(1, original.shape[0] if original.shape else 1))
        elif choice == "nan" and original.dtype.kind == "f":
            handle[name] = np.full(original.shape, np.nan, original.dtype)
        elif choice == "out-of-range" and original.dtype.kind in "iu":
            handle[name] = np.full(original.shape, 10**6, np.int64)
        else:
            handle[name] = np.zeros((original.shape[0] + 1 if original.shape else 3,), np.float32)
    with contract():
        info = read_cache_info(path)
        load_feature_set(path, info)
