"""Reading PyTorch checkpoints without PyTorch and without running pickled code.

Checkpoints are crafted here byte by byte, in both on-disk layouts (legacy stream and zip), so the
tests need neither PyTorch nor the real file; a malicious pickle must be refused before its call
runs (the marker file proves it never did).
"""

from __future__ import annotations

import pickle
import struct
import zipfile
from pathlib import Path

import numpy as np
import pytest

from pipeline.backbones.sources.torch_checkpoint import (
    LEGACY_MAGIC_NUMBER,
    LEGACY_PROTOCOL_VERSION,
    LEGACY_STORAGE_HEADER,
    CheckpointFormatError,
    UnsafeCheckpointError,
    checkpoint_format,
    load,
    read_state_dict,
)
from pipeline.errors import WeightsError

BASE = np.arange(20, dtype="<f4")
COUNT = np.array([7], dtype="<i8")
#: The float tensor of the crafted state dict: storage "0", offset 2, shape (4, 3), stride (1, 4).
EXPECTED_W = BASE[2:14].reshape(3, 4).T


def _glob(module: str, name: str) -> bytes:
    return pickle.GLOBAL + f"{module}\n{name}\n".encode()


def _text(value: str) -> bytes:
    raw = value.encode()
    return pickle.BINUNICODE + struct.pack("<I", len(raw)) + raw


def _small_ints(*values: int) -> bytes:
    return b"".join(pickle.BININT1 + bytes([v]) for v in values)


def _state_dict_pickle(legacy: bool) -> bytes:
    """A protocol-2 pickle shaped like `torch.save` output: OrderedDict(w=<float32 view>, n=<int64 scalar>)."""
    empty_dict = _glob("collections", "OrderedDict") + pickle.EMPTY_TUPLE + pickle.REDUCE

    def tensor(storage_type, key, numel, offset, size, stride) -> bytes:
        pid = (pickle.MARK + _text("storage") + _glob("torch", storage_type) + _text(key) + _text("cpu")
               + _small_ints(numel) + (pickle.NONE if legacy else b"") + pickle.TUPLE + pickle.BINPERSID)
        args = (pickle.MARK + pid + _small_ints(offset) + pickle.MARK + _small_ints(*size) + pickle.TUPLE
                + pickle.MARK + _small_ints(*stride) + pickle.TUPLE + pickle.NEWFALSE + empty_dict + pickle.TUPLE)
        return _glob("torch._utils", "_rebuild_tensor_v2") + args + pickle.REDUCE

    return (pickle.PROTO + b"\x02" + empty_dict + pickle.MARK
            + _text("w") + tensor("FloatStorage", "0", 20, 2, (4, 3), (1, 4))
            + _text("n") + tensor("LongStorage", "1", 1, 0, (), ())
            + pickle.SETITEMS + pickle.STOP)


def _legacy_file(path: Path, state_pickle: bytes) -> Path:
    sys_info = {"protocol_version": LEGACY_PROTOCOL_VERSION, "little_endian": True,
                "type_sizes": {"short": 2, "int": 4, "long": 4}}
    head = b"".join(pickle.dumps(o, protocol=2) for o in (LEGACY_MAGIC_NUMBER, LEGACY_PROTOCOL_VERSION, sys_info))
    tail = pickle.dumps(["0", "1"], protocol=2)
    for array in (BASE, COUNT):
        tail += LEGACY_STORAGE_HEADER.pack(array.size) + array.tobytes()
    path.write_bytes(head + state_pickle + tail)
    return path


def _zip_file(path: Path, state_pickle: bytes) -> Path:
    with zipfile.ZipFile(path, "w") as archive:
        archive.writestr("archive/data.pkl", state_pickle)
        archive.writestr("archive/data/0", BASE.tobytes())
        archive.writestr("archive/data/1", COUNT.tobytes())
    return path


@pytest.mark.parametrize("layout", ["legacy", "zip"])
def test_tensors_are_rebuilt_with_offsets_strides_and_scalars(layout, tmp_path):
    write = _legacy_file if layout == "legacy" else _zip_file
    path = write(tmp_path / "model.pth", _state_dict_pickle(legacy=layout == "legacy"))
    assert checkpoint_format(path) == layout
    _, admitted = load(path, return_globals=True)
    assert admitted == {"collections.OrderedDict", "torch._utils._rebuild_tensor_v2", "torch.FloatStorage",
                        "torch.LongStorage"}
    arrays = read_state_dict(path)
    assert list(arrays) == ["w", "n"]
    np.testing.assert_array_equal(arrays["w"], EXPECTED_W)
    assert arrays["w"].flags.c_contiguous and arrays["n"].shape == () and int(arrays["n"]) == 7


@pytest.mark.parametrize("layout", ["legacy", "zip"])
def test_a_pickle_that_calls_code_is_refused_before_the_call(layout, tmp_path):
    marker = tmp_path / "pwned"
    evil = f"cos\nsystem\n(S'touch {marker}'\ntR.".encode()  # protocol 0: os.system("touch ...")
    write = _legacy_file if layout == "legacy" else _zip_file
    path = write(tmp_path / "evil.pth", evil)
    with pytest.raises(UnsafeCheckpointError, match=r"refusing to load global 'os\.system'"):
        load(path)
    assert not marker.exists(), "the pickled call must never run"
    assert issubclass(UnsafeCheckpointError, WeightsError), "the CLI reports it as a broken weights file"


def test_a_truncated_or_foreign_file_is_a_format_error(tmp_path):
    whole = _legacy_file(tmp_path / "whole.pth", _state_dict_pickle(legacy=True)).read_bytes()
    (tmp_path / "cut.pth").write_bytes(whole[:-8])
    with pytest.raises(CheckpointFormatError, match="storage '1'"):
        load(tmp_path / "cut.pth")
    (tmp_path / "notes.pth").write_text("not a checkpoint")
    with pytest.raises(CheckpointFormatError, match="neither a zip nor a legacy"):
        load(tmp_path / "notes.pth")
