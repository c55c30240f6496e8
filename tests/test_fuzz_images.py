"""Fuzz: image decoding (every mode and format Pillow writes, then damaged) and CSV manifests.

Contract (tests/fuzz_support.py): `decode_image` returns uint8 pixels of the asked size or raises
`ImageDecodeError`; dataset discovery returns an index or raises `DatasetError`; neither opens a
file outside the dataset, and memory stays bounded even for wide modes and lying headers.
"""

from __future__ import annotations

import io
import struct
import zlib

import numpy as np
from fuzz_support import FUZZ_SETTINGS, contract, make_canary
from hypothesis import given
from hypothesis import strategies as st
from PIL import Image

from pipeline.data.images import ImageDecodeError, ResizeSpec, decode_image
from pipeline.data.layouts import discover

#: Small limits, so that "over the limit" is reachable by generated headers.
MAX_PIXELS = 250_000
RESIZE = ResizeSpec(12, 10, "pad")
#: Mode -> formats Pillow can write it in.
MODES = {
    "1": ("PNG", "BMP", "TIFF"), "L": ("PNG", "JPEG", "BMP", "GIF", "TIFF", "WEBP"), "P": ("PNG", "GIF", "BMP"),
    "RGB": ("PNG", "JPEG", "BMP", "TIFF", "WEBP", "PPM"), "RGBA": ("PNG", "TIFF", "WEBP"), "LA": ("PNG",),
    "CMYK": ("JPEG", "TIFF"), "I;16": ("PNG", "TIFF"), "I": ("TIFF", "PPM"), "F": ("TIFF",),
}


@st.composite
def image_files(draw) -> bytes:
    """A small image of any mode and format, sometimes damaged (bytes flipped, cut, or appended)."""
    mode = draw(st.sampled_from(sorted(MODES)))
    fmt = draw(st.sampled_from(MODES[mode]))
    width, height = draw(st.integers(1, 64)), draw(st.integers(1, 64))
    seed = draw(st.integers(0, 2**16))
    rng = np.random.default_rng(seed)
    if mode in ("I;16", "I", "F"):
        dtype = {"I;16": np.uint16, "I": np.int32, "F": np.float32}[mode]
        high = draw(st.sampled_from([1, 255, 65535, 2**31 - 1]))
        values = rng.integers(-high if mode != "I;16" else 0, high, (height, width), endpoint=True).astype(dtype)
        if mode == "F" and draw(st.booleans()):
            values.flat[rng.integers(0, values.size)] = draw(st.sampled_from([np.nan, np.inf, -np.inf]))
        image = Image.fromarray(values)  # uint16 -> I;16, int32 -> I, float32 -> F
    else:
        image = Image.fromarray(rng.integers(0, 256, (height, width, 4), dtype=np.uint8), "RGBA").convert(mode)
    buffer = io.BytesIO()
    image.save(buffer, fmt)
    data = bytearray(buffer.getvalue())
    damage = draw(st.sampled_from(["none", "flip", "cut", "append"]))
    if damage == "flip" and data:
        for position in draw(st.lists(st.integers(0, len(data) - 1), min_size=1, max_size=8)):
            data[position] ^= draw(st.integers(1, 255))
    elif damage == "cut":
        data = data[:draw(st.integers(0, len(data)))]
    elif damage == "append":
        data += draw(st.binary(max_size=64))
    return bytes(data)


def _png_claiming(width: int, height: int, bit_depth: int, colour: int) -> bytes:
    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    header = struct.pack(">IIBBBBB", width, height, bit_depth, colour, 0, 0, 0)
    body = chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(b"\0" * 64)) + chunk(b"IEND", b"")
    return b"\x89PNG\r\n\x1a\n" + body


def _check_decoded(path) -> None:
    try:
        pixels = decode_image(path, RESIZE, max_pixels=MAX_PIXELS)
    except ImageDecodeError as error:
        assert error.reason.strip()
        return
    assert pixels.dtype == np.uint8 and pixels.shape == (12, 10, 3)


@FUZZ_SETTINGS
@given(data=image_files())
def test_any_image_file_decodes_or_gets_a_reason(tmp_path_factory, data):
    path = tmp_path_factory.mktemp("image") / "photo.jpg"
    path.write_bytes(data)
    with contract():
        _check_decoded(path)


@FUZZ_SETTINGS
@given(side=st.tuples(st.integers(1, 2**20), st.integers(1, 2**20)),
       depth=st.sampled_from([(8, 0), (16, 0), (8, 2), (16, 2), (8, 6), (16, 6), (8, 4), (16, 4)]),
       data=st.binary(max_size=32))
def test_lying_or_huge_png_headers_never_allocate_what_they_claim(tmp_path_factory, side, depth, data):
    path = tmp_path_factory.mktemp("header") / "claims.png"
    path.write_bytes(_png_claiming(*side, *depth) + data)
    with contract(max_bytes=16 * 2**20):
        _check_decoded(path)


@FUZZ_SETTINGS
@given(data=st.binary(max_size=512))
def test_arbitrary_bytes_are_a_decode_reason(tmp_path_factory, data):
    path = tmp_path_factory.mktemp("bytes") / "noise.png"
    path.write_bytes(data)
    with contract():
        _check_decoded(path)


_CELL = st.text(alphabet=st.characters(blacklist_categories=("Cs",), blacklist_characters="\x00"), max_size=40)
_PATHS = st.one_of(
    st.sampled_from(["imgs/a.jpg", "imgs/b.png", "./imgs/a.jpg", "imgs//a.jpg", "../outside/secret.txt",
                     "/etc/hostname", "imgs\\a.jpg", "imgs/" + "x" * 300 + ".jpg", "imgs/a.jpg/", "", " ", "~/a.jpg"]),
    _CELL,
)


@FUZZ_SETTINGS
@given(rows=st.lists(st.tuples(_PATHS, _CELL, st.sampled_from(["", "train", "valid", "test", "dev", "x"])),
                     max_size=12),
       header=st.sampled_from(["path,label,split", "file,class", "", "image,target,subset,species"]),
       encoding=st.sampled_from(["utf-8", "utf-16", "latin-1"]))
def test_any_csv_manifest_is_an_index_or_a_dataset_error(tmp_path_factory, rows, header, encoding):
    root = tmp_path_factory.mktemp("csv")
    canary = make_canary(root / "outside")
    data = root / "data"
    (data / "imgs").mkdir(parents=True)
    Image.new("RGB", (4, 4), (9, 9, 9)).save(data / "imgs" / "a.jpg")
    Image.new("RGB", (4, 4), (90, 9, 9)).save(data / "imgs" / "b.png")
    text = "\n".join([header] + [",".join(cells) for cells in rows]) + "\n"
    (data / "labels.csv").write_bytes(text.encode(encoding, "replace"))
    index = None
    with contract(canary):
        index = discover(data / "labels.csv")
    if index is not None:
        assert all(not record.relpath.startswith(("/", "..")) for record in index.records)
