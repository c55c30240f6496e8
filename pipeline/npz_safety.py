"""Check an `.npz` file's declared arrays before anything reads them.

An `.npz` is a zip of `.npy` members; each member's header declares a shape and dtype, and
`numpy.load` allocates that much memory before reading a byte of data. So a 1.4 KB file whose
header claims 10^12 rows ends in MemoryError, and a deflated `<U50000000` array costs gigabytes
from a few megabytes. `check_npz` reads only the zip directory and each member's `.npy` header
(at most `MAX_HEADER_BYTES`) and refuses, with `NpzRefusal` (a `PipelineError`, exit 1):

- a file that is not a zip, a damaged zip, more than `MAX_MEMBERS` members;
- a member header numpy cannot parse, or declaring an object dtype (pickled Python objects);
- declared data that does not fit the member's size recorded in the zip (the header lies);
- members that expand more than `MAX_EXPANSION` times their compressed size beyond
  `EXPANSION_FLOOR_BYTES` (a deflate bomb: real features compress far less);
- text arrays whose elements hold more than `max_text_chars` characters, or more than
  `MAX_TEXT_BYTES` of text in all (paths are read whole, features can be streamed);
- more than `max_total_bytes` declared in all (the caller's bound; none by default).

It returns the declared arrays, so callers can check names and shapes against what they expect
before loading. `numpy.load(..., allow_pickle=False)` then reads only what was checked.
"""

from __future__ import annotations

import math
import zipfile
from dataclasses import dataclass
from io import BytesIO
from pathlib import Path

import numpy as np

from pipeline.errors import PipelineError

#: Members an npz may hold (heads hold about 6, the classic feature npz about 10).
MAX_MEMBERS = 4096
#: The longest `.npy` header read (numpy's own limit for version 1 headers is 64 KiB).
MAX_HEADER_BYTES = 65_536
#: Characters a text element may hold (a path longer than Linux's PATH_MAX is no path).
MAX_TEXT_CHARS = 4096
#: Compressed members may expand this many times beyond `EXPANSION_FLOOR_BYTES`.
MAX_EXPANSION = 200
EXPANSION_FLOOR_BYTES = 64 * 2**20
#: Text (all `U`/`S` arrays together) an npz may declare: a million 256-character paths.
MAX_TEXT_BYTES = 2**30
NPY_SUFFIX = ".npy"


class NpzRefusal(PipelineError):
    """An `.npz` file was refused before reading; the message names the file, the array and the rule."""


@dataclass(frozen=True)
class DeclaredArray:
    """One member's header: its name (without `.npy`), shape, dtype and the bytes it declares."""

    name: str
    shape: tuple[int, ...]
    dtype: np.dtype
    nbytes: int


def check_npz(path: Path | str, max_text_chars: int = MAX_TEXT_CHARS,
              max_total_bytes: int | None = None) -> dict[str, DeclaredArray]:
    """The declared arrays of `path`, name -> `DeclaredArray`; `NpzRefusal` when any rule fails."""
    path = Path(path)
    try:
        with zipfile.ZipFile(path) as archive:
            members = archive.infolist()
            if len(members) > MAX_MEMBERS:
                raise NpzRefusal(f"{path} holds {len(members):,} files, more than the {MAX_MEMBERS:,} an npz may "
                                 "hold; it is not an npz this tool wrote or reads")
            stored = sum(member.compress_size for member in members)
            if stored > path.stat().st_size:
                raise NpzRefusal(f"{path} claims {stored:,} bytes of members in a {path.stat().st_size:,}-byte file; "
                                 "it is truncated or crafted")
            declared = {}
            for member in members:
                if member.filename.endswith(NPY_SUFFIX):
                    array = _declared(archive, member, path)
                    _check_member(array, member, path, max_text_chars)
                    declared[array.name] = array
    except (zipfile.BadZipFile, zipfile.LargeZipFile, EOFError, OSError, NotImplementedError) as error:
        raise NpzRefusal(f"{path} is not a readable .npz file (a zip of .npy arrays): {_one_line(error)}") from None
    text = sum(array.nbytes for array in declared.values() if array.dtype.kind in "US")
    if text > MAX_TEXT_BYTES:
        raise NpzRefusal(f"{path} declares {text / 1e6:,.0f} MB of text arrays, more than the "
                         f"{MAX_TEXT_BYTES / 1e6:,.0f} MB of paths and names this tool reads")
    total = sum(array.nbytes for array in declared.values())
    if max_total_bytes is not None and total > max_total_bytes:
        raise NpzRefusal(f"{path} declares {total / 1e6:,.0f} MB of arrays, more than the {max_total_bytes / 1e6:,.0f} "
                         "MB this file kind may hold")
    return declared


def _declared(archive: zipfile.ZipFile, member: zipfile.ZipInfo, path: Path) -> DeclaredArray:
    name = member.filename[:-len(NPY_SUFFIX)]
    with archive.open(member) as stream:
        head = stream.read(MAX_HEADER_BYTES)
    try:
        buffer = BytesIO(head)
        version = np.lib.format.read_magic(buffer)
        read_header = (np.lib.format.read_array_header_1_0 if version == (1, 0)
                       else np.lib.format.read_array_header_2_0)
        shape, _, dtype = read_header(buffer, max_header_size=MAX_HEADER_BYTES)
        header_bytes = buffer.tell()
    except (ValueError, SyntaxError, TypeError, EOFError) as error:
        raise NpzRefusal(f"{path}: array {name!r} has no valid .npy header ({_one_line(error)}); the file is "
                         "damaged or not an npz") from None
    if any(not isinstance(side, int) or side < 0 for side in shape):
        raise NpzRefusal(f"{path}: array {name!r} declares shape {shape}, which is not a shape")
    if dtype.hasobject:
        raise NpzRefusal(f"{path}: array {name!r} holds Python objects (pickled data), which this tool never "
                         "loads; save plain numeric or text arrays")
    nbytes = math.prod(shape) * dtype.itemsize
    if header_bytes + nbytes > member.file_size:
        raise NpzRefusal(f"{path}: array {name!r} declares shape {shape} of {dtype} ({nbytes:,} bytes), but the "
                         f"file holds {member.file_size - header_bytes:,} bytes for it; the header lies or the file "
                         "is truncated")
    return DeclaredArray(name=name, shape=tuple(shape), dtype=dtype, nbytes=nbytes)


def _check_member(array: DeclaredArray, member: zipfile.ZipInfo, path: Path, max_text_chars: int) -> None:
    if array.dtype.kind in "US":
        chars = array.dtype.itemsize // (4 if array.dtype.kind == "U" else 1)
        if chars > max_text_chars:
            raise NpzRefusal(f"{path}: text array {array.name!r} has elements of {chars:,} characters, more than "
                             f"the {max_text_chars:,} a path or name may hold")
    compressed = max(member.compress_size, 1)
    if member.file_size > EXPANSION_FLOOR_BYTES and member.file_size > MAX_EXPANSION * compressed:
        raise NpzRefusal(f"{path}: array {array.name!r} expands from {compressed:,} to {member.file_size:,} bytes "
                         f"(over {MAX_EXPANSION} times; a decompression bomb?); it is refused unread")


def _one_line(error: BaseException) -> str:
    text = str(error).strip() or type(error).__name__
    return text.splitlines()[0]
