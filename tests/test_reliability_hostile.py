"""Hostile and careless inputs found by hand (issue: every file the tool reads is untrusted).

Each test names one case that used to end in exit 70 ("a bug in this tool") or in a memory bomb,
and checks the contract instead: exit 1 with a message saying what was given and what is expected
(2 for a bad option), and decoding memory bounded. The generated counterparts are the
tests/test_fuzz_*.py suites; docs/reliability.md lists every case.
"""

from __future__ import annotations

import tracemalloc

import numpy as np
import pytest
from PIL import Image

from pipeline.data.images import DECODE_BYTES_PER_PIXEL, ImageDecodeError, ResizeSpec, decode_bytes, decode_image

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
