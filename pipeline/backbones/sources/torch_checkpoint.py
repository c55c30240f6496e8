"""Reading PyTorch checkpoints (``.pth`` / ``.pt``) without PyTorch and without executing pickled code.

PyTorch checkpoints are pickles whose tensors are rebuilt by calling a few
well-known functions of the ``torch`` package. This module unpickles them with
a restricted :class:`pickle.Unpickler` that only resolves an explicit
allow-list of globals, each mapped to a small local stand-in; any other global
(``os.system``, ``builtins.eval``, ...) is refused with
:class:`UnsafeCheckpointError` *before* it could be called.

Both on-disk layouts are supported:

* **legacy** (``torch.save(..., _use_new_zipfile_serialization=False)`` and
  every PyTorch < 1.6): five consecutive pickles / blobs in one stream::

      pickle(MAGIC_NUMBER) pickle(PROTOCOL_VERSION) pickle(sys_info)
      pickle(object)  pickle([storage keys])
      for each key: int64 element count, raw little-endian element bytes

* **zip** (PyTorch >= 1.6 default): a zip archive ``<name>/data.pkl`` plus one
  raw file ``<name>/data/<key>`` per storage (and optionally
  ``<name>/byteorder``).

Typical use: ``read_state_dict(path)`` -> ``{"conv.weight": np.ndarray, ...}``.
`tests/test_torch_checkpoint.py` crafts checkpoints in both layouts, malicious ones included.
"""

from __future__ import annotations

import collections
import io
import pickle
import struct
import zipfile
from dataclasses import dataclass
from typing import Any, BinaryIO

import numpy as np

from pipeline.errors import WeightsError

#: First pickle of a legacy checkpoint (``torch.serialization.MAGIC_NUMBER``).
LEGACY_MAGIC_NUMBER = 0x1950A86A20F9469CFC6C
#: Second pickle of a legacy checkpoint (``torch.serialization.PROTOCOL_VERSION``).
LEGACY_PROTOCOL_VERSION = 1001
#: Size of the element-count header in front of each legacy raw storage.
LEGACY_STORAGE_HEADER = struct.Struct("<q")
#: Member (below the archive's top folder) holding a zip checkpoint's pickle.
ZIP_PICKLE_NAME = "data.pkl"
#: Folder (below the archive's top folder) holding a zip checkpoint's storages.
ZIP_DATA_DIR = "data"
#: Optional member recording a zip checkpoint's byte order ("little"/"big").
ZIP_BYTEORDER_NAME = "byteorder"
#: Tag that opens every persistent id that refers to a storage.
PERSISTENT_STORAGE_TAG = "storage"

#: ``torch.<Name>Storage`` type -> numpy dtype (byte order applied later).
STORAGE_DTYPES: dict[str, np.dtype] = {
    "DoubleStorage": np.dtype("f8"),
    "FloatStorage": np.dtype("f4"),
    "HalfStorage": np.dtype("f2"),
    "LongStorage": np.dtype("i8"),
    "IntStorage": np.dtype("i4"),
    "ShortStorage": np.dtype("i2"),
    "CharStorage": np.dtype("i1"),
    "ByteStorage": np.dtype("u1"),
    "BoolStorage": np.dtype("?"),
}


class UnsafeCheckpointError(WeightsError, pickle.UnpicklingError):
    """The checkpoint's pickle asks for a global outside the allow-list."""


class CheckpointFormatError(WeightsError, ValueError):
    """The file is not a checkpoint this reader understands, or is corrupt."""


# ---------------------------------------------------------------------------
# Light-weight stand-ins for the torch objects a checkpoint pickle refers to.
# ---------------------------------------------------------------------------


@dataclass(frozen=True)
class _StorageType:
    """Stand-in for a ``torch.<Name>Storage`` class object."""

    name: str

    @property
    def dtype(self) -> np.dtype:
        return STORAGE_DTYPES[self.name]


@dataclass
class _Storage:
    """A storage referenced by the pickle; ``data`` is filled in on demand."""

    key: str
    dtype: np.dtype
    numel: int
    data: np.ndarray | None = None  # 1-D array of ``numel`` elements


@dataclass
class _TensorStub:
    """A tensor recorded by ``_rebuild_tensor_v2``; materialised after the
    storages are available."""

    storage: _Storage
    offset: int
    shape: tuple[int, ...]
    stride: tuple[int, ...]


def _rebuild_tensor_v2(storage, storage_offset, size, stride, *_ignored):
    """Stand-in for ``torch._utils._rebuild_tensor_v2``; the extra arguments
    (requires_grad, backward_hooks, metadata) carry nothing we need."""
    if not isinstance(storage, _Storage):
        raise CheckpointFormatError(f"tensor built from a non-storage {type(storage).__name__}")
    return _TensorStub(storage, int(storage_offset), tuple(int(s) for s in size),
                       tuple(int(s) for s in stride))


def _rebuild_parameter(data, *_ignored):
    """Stand-in for ``torch._utils._rebuild_parameter``: a Parameter is just
    its tensor here."""
    return data


#: ``(module, name)`` -> stand-in object. Nothing else can be resolved.
_ALLOWED_GLOBALS: dict[tuple[str, str], Any] = {
    ("collections", "OrderedDict"): collections.OrderedDict,
    ("torch._utils", "_rebuild_tensor_v2"): _rebuild_tensor_v2,
    ("torch._utils", "_rebuild_parameter"): _rebuild_parameter,
    **{("torch", name): _StorageType(name) for name in STORAGE_DTYPES},
}


class _RestrictedUnpickler(pickle.Unpickler):
    """Unpickler resolving only :data:`_ALLOWED_GLOBALS`; storage references
    (persistent ids) are turned into :class:`_Storage` records."""

    def __init__(self, file: BinaryIO, byteorder: str):
        super().__init__(file)
        self._byteorder = byteorder
        self.storages: dict[str, _Storage] = {}
        self.admitted: set[str] = set()

    def find_class(self, module: str, name: str):
        if module == "torch" and name.endswith("Storage") and name not in STORAGE_DTYPES:
            raise CheckpointFormatError(f"unsupported storage type torch.{name} (no numpy dtype)")
        try:
            obj = _ALLOWED_GLOBALS[(module, name)]
        except KeyError:
            raise UnsafeCheckpointError(
                f"refusing to load global '{module}.{name}' from checkpoint: "
                "only tensor-rebuilding globals are allowed") from None
        self.admitted.add(f"{module}.{name}")
        if isinstance(obj, _StorageType):
            obj = _StorageType(obj.name)  # fresh: a BUILD opcode can't alter shared state
        return obj

    def persistent_load(self, pid):
        # Legacy: ('storage', type, key, location, numel, view_metadata)
        # Zip:    ('storage', type, key, location, numel)
        if not (isinstance(pid, tuple) and len(pid) in (5, 6) and pid[0] == PERSISTENT_STORAGE_TAG):
            raise CheckpointFormatError(f"unsupported persistent id {pid!r}")
        storage_type, key, _location, numel = pid[1:5]
        view_metadata = pid[5] if len(pid) == 6 else None
        if not isinstance(storage_type, _StorageType):
            raise CheckpointFormatError(f"unsupported storage type {storage_type!r}")
        key = str(key)
        storage = self.storages.get(key)
        if storage is None:
            dtype = storage_type.dtype.newbyteorder("<" if self._byteorder == "little" else ">")
            storage = self.storages[key] = _Storage(key, dtype, int(numel))
        if view_metadata is not None:  # very old files: a view into ``storage``
            view_key, view_offset, view_numel = view_metadata
            return _Storage(str(view_key), storage.dtype, int(view_numel),
                            data=_LazyView(storage, int(view_offset), int(view_numel)))
        return storage


@dataclass
class _LazyView:
    """Slice of a root storage (legacy ``view_metadata``), resolved late."""

    root: _Storage
    offset: int
    numel: int

    def resolve(self) -> np.ndarray:
        if self.offset < 0 or self.offset + self.numel > self.root.numel:
            raise CheckpointFormatError(f"storage view outside storage {self.root.key!r}")
        return self.root.data[self.offset:self.offset + self.numel]


# ---------------------------------------------------------------------------
# Materialisation
# ---------------------------------------------------------------------------


def _storage_array(storage: _Storage) -> np.ndarray:
    data = storage.data
    if isinstance(data, _LazyView):
        data = data.resolve()
    if data is None:
        raise CheckpointFormatError(f"no data found for storage {storage.key!r}")
    return data


def _tensor_to_array(stub: _TensorStub) -> np.ndarray:
    """Copy a strided view of the storage into a fresh contiguous array."""
    flat = _storage_array(stub.storage)
    shape, stride, offset = stub.shape, stub.stride, stub.offset
    if len(shape) != len(stride) or any(s < 0 for s in shape) or any(s < 0 for s in stride):
        raise CheckpointFormatError(f"bad tensor geometry shape={shape} stride={stride}")
    if 0 in shape:
        return np.zeros(shape, dtype=flat.dtype.newbyteorder("="))
    last = offset + sum((n - 1) * s for n, s in zip(shape, stride, strict=True))
    if offset < 0 or last >= flat.size:
        raise CheckpointFormatError(
            f"tensor (offset={offset}, shape={shape}, stride={stride}) exceeds "
            f"storage {stub.storage.key!r} of {flat.size} elements")
    if int(np.prod(shape)) > flat.size:
        # Only expanded (stride-0) views do this; refuse rather than let a
        # crafted file request an enormous copy.
        raise CheckpointFormatError(
            f"tensor of shape {shape} has more elements than its storage {stub.storage.key!r}")
    itemsize = flat.dtype.itemsize
    view = np.lib.stride_tricks.as_strided(
        flat[offset:], shape=shape, strides=tuple(s * itemsize for s in stride), writeable=False)
    # np.array (not ascontiguousarray, which promotes 0-d to 1-d) copies out.
    return np.array(view, dtype=flat.dtype.newbyteorder("="), order="C", copy=True)


def _materialise(obj: Any) -> Any:
    """Replace every :class:`_TensorStub` inside ``obj`` by a numpy array."""
    if isinstance(obj, _TensorStub):
        return _tensor_to_array(obj)
    if isinstance(obj, dict):
        out = type(obj)() if isinstance(obj, collections.OrderedDict) else {}
        for k, v in obj.items():
            out[k] = _materialise(v)
        if isinstance(obj, collections.OrderedDict):
            out.__dict__.update(obj.__dict__)  # e.g. state_dict._metadata (module versions)
        return out
    if isinstance(obj, (list, tuple)):
        return type(obj)(_materialise(v) for v in obj)
    return obj


# ---------------------------------------------------------------------------
# Format readers
# ---------------------------------------------------------------------------


def checkpoint_format(path) -> str:
    """Return ``"zip"`` or ``"legacy"`` for a checkpoint file."""
    if zipfile.is_zipfile(path):
        return "zip"
    with open(path, "rb") as f:
        head = f.read(2)
    if len(head) == 2 and head[0] == pickle.PROTO[0]:
        return "legacy"
    raise CheckpointFormatError(f"{path}: neither a zip nor a legacy PyTorch checkpoint")


def _load_legacy(f: BinaryIO) -> tuple[Any, set[str]]:
    def plain(what: str):
        # The header pickles and the key list hold only ints / dicts / strings;
        # an unpickler that refuses every global reads them safely.
        return _unpickle(_NoGlobalsUnpickler(f), f"legacy {what}")

    magic = plain("magic number")
    if magic != LEGACY_MAGIC_NUMBER:
        raise CheckpointFormatError("not a legacy PyTorch checkpoint (wrong magic number)")
    protocol = plain("protocol version")
    if protocol != LEGACY_PROTOCOL_VERSION:
        raise CheckpointFormatError(f"unsupported legacy protocol version {protocol!r}")
    sys_info = plain("sys_info")
    byteorder = "little" if not isinstance(sys_info, dict) or sys_info.get("little_endian", True) else "big"

    unpickler = _RestrictedUnpickler(f, byteorder)
    obj = _unpickle(unpickler, "checkpoint object")
    keys = plain("storage key list")
    if not isinstance(keys, list):
        raise CheckpointFormatError("legacy storage key list is not a list")
    header = LEGACY_STORAGE_HEADER if byteorder == "little" else struct.Struct(">q")
    for key in keys:
        storage = unpickler.storages.get(str(key))
        if storage is None:
            raise CheckpointFormatError(f"storage {key!r} listed but never referenced")
        raw = f.read(header.size)
        if len(raw) != header.size:
            raise CheckpointFormatError(f"truncated file at storage {key!r}")
        (numel,) = header.unpack(raw)
        nbytes = numel * storage.dtype.itemsize
        buf = f.read(nbytes)
        if numel != storage.numel or len(buf) != nbytes:
            raise CheckpointFormatError(f"storage {key!r}: size mismatch or truncated data")
        storage.data = np.frombuffer(buf, dtype=storage.dtype)
    return _materialise(obj), unpickler.admitted


def _load_zip(path) -> tuple[Any, set[str]]:
    with zipfile.ZipFile(path) as zf:
        names = zf.namelist()
        pkl = [n for n in names if n.split("/")[-1] == ZIP_PICKLE_NAME and n.count("/") == 1]
        if len(pkl) != 1:
            raise CheckpointFormatError(f"zip checkpoint needs exactly one <dir>/{ZIP_PICKLE_NAME}")
        prefix = pkl[0].rsplit("/", 1)[0]
        byteorder = "little"
        if f"{prefix}/{ZIP_BYTEORDER_NAME}" in names:
            byteorder = zf.read(f"{prefix}/{ZIP_BYTEORDER_NAME}").decode().strip()
            if byteorder not in ("little", "big"):
                raise CheckpointFormatError(f"unknown byteorder {byteorder!r}")
        unpickler = _RestrictedUnpickler(io.BytesIO(zf.read(pkl[0])), byteorder)
        obj = _unpickle(unpickler, pkl[0])
        for key, storage in unpickler.storages.items():
            member = f"{prefix}/{ZIP_DATA_DIR}/{key}"
            try:
                buf = zf.read(member)
            except KeyError:
                raise CheckpointFormatError(f"missing storage file {member!r}") from None
            if len(buf) != storage.numel * storage.dtype.itemsize:
                raise CheckpointFormatError(f"storage {key!r}: size mismatch")
            storage.data = np.frombuffer(buf, dtype=storage.dtype)
    return _materialise(obj), unpickler.admitted


def _unpickle(unpickler: pickle.Unpickler, what: str):
    """Run ``unpickler.load()``, turning low-level failures into
    :class:`CheckpointFormatError` (refusals propagate unchanged)."""
    try:
        return unpickler.load()
    except (UnsafeCheckpointError, CheckpointFormatError):
        raise
    except Exception as exc:  # EOFError, UnpicklingError, TypeError from a bad REDUCE, ...
        raise CheckpointFormatError(f"cannot unpickle {what}: {type(exc).__name__}: {exc}") from exc


class _NoGlobalsUnpickler(pickle.Unpickler):
    """Unpickler for plain data: every global is refused."""

    def find_class(self, module, name):
        raise UnsafeCheckpointError(f"refusing to load global '{module}.{name}' from checkpoint header")

    def persistent_load(self, pid):
        raise CheckpointFormatError(f"unexpected persistent id {pid!r} in checkpoint header")


# ---------------------------------------------------------------------------
# Public API
# ---------------------------------------------------------------------------


def load(path, *, return_globals: bool = False):
    """Load a PyTorch checkpoint safely; tensors become numpy arrays.

    Returns the unpickled object (usually an ``OrderedDict``); with
    ``return_globals=True`` returns ``(object, set of admitted globals)``.
    Raises :class:`UnsafeCheckpointError` for a disallowed global and
    :class:`CheckpointFormatError` for anything malformed.
    """
    fmt = checkpoint_format(path)
    if fmt == "zip":
        obj, admitted = _load_zip(path)
    else:
        with open(path, "rb") as f:
            obj, admitted = _load_legacy(f)
    return (obj, admitted) if return_globals else obj


def read_state_dict(path) -> dict[str, np.ndarray]:
    """Read a state_dict checkpoint as ``{name: np.ndarray}`` (file order).

    A checkpoint holding ``{"state_dict": {...}}`` is unwrapped. Raises
    :class:`CheckpointFormatError` if the result is not a mapping of names
    to tensors.
    """
    obj = load(path)
    if isinstance(obj, dict) and "state_dict" in obj and isinstance(obj["state_dict"], dict):
        obj = obj["state_dict"]
    if not isinstance(obj, dict):
        raise CheckpointFormatError(f"checkpoint holds a {type(obj).__name__}, not a state_dict")
    bad = [k for k, v in obj.items() if not isinstance(k, str) or not isinstance(v, np.ndarray)]
    if bad:
        raise CheckpointFormatError(f"non-tensor entries in state_dict: {bad[:5]}")
    return dict(obj)
