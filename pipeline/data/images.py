"""Decode image files by their content into fixed-size RGB arrays.

Contract: `decode_image(path, resize)` returns a `uint8` array of shape (height, width, 3), or
raises `ImageDecodeError` whose `reason` is one short sentence for the failure report. File
extensions are only used to find candidate files; the decoder goes by content, so PNG, GIF, BMP,
PSD or CMYK-JPEG data behind a `.jpg` name decodes as what it really is.

Conversions, applied the same way to every image so features stay comparable:
- EXIF orientation is applied (phone photos come out upright);
- animated images use their first frame;
- transparency (RGBA, LA, palette with a transparent colour) is composited onto white;
- 16-bit and 32-bit integer images are scaled to 8 bits; CMYK, grayscale and palette go to RGB;
- images larger than `max_pixels` are refused as possible decompression bombs, and so are images
  whose decoding would need more than `max_pixels * DECODE_BYTES_PER_PIXEL` bytes (wide modes and
  transparency cost more per pixel than plain RGB); both limits are checked from the header,
  before any pixel is decoded, and lifted together (`max_pixels=None`). Wide modes (16/32-bit
  integer, float) are scaled to 8 bits in blocks of rows, with no float64 copy of the image.
"""

from __future__ import annotations

import os
import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from pipeline.errors import DatasetError, UsageError

#: Extensions that mark a file as a candidate image (case-insensitive). Content decides the rest.
IMAGE_EXTENSIONS = frozenset(
    {".jpg", ".jpeg", ".jpe", ".png", ".bmp", ".gif", ".webp", ".tif", ".tiff", ".ppm", ".pgm", ".pbm"}
)
#: Operating-system litter found in image folders; skipped without being reported.
IGNORED_FILE_NAMES = frozenset({"thumbs.db", ".ds_store", "desktop.ini"})
#: Pillow's own decompression-bomb threshold (about 0.25 GiB of 24-bit pixels).
DEFAULT_MAX_PIXELS = 89_478_485
#: Transparent pixels are composited onto white, the colour such images are usually viewed on.
ALPHA_BACKGROUND_RGB = (255, 255, 255)
#: Letterbox padding colour: the ImageNet mean, which caffe-style preprocessing maps to about 0.
PAD_RGB = (124, 116, 104)
#: How images are brought to the backbone's input size.
RESIZE_POLICIES = ("stretch", "crop", "pad")
#: The interpolation every resize uses (Pillow's, with antialiasing when shrinking).
RESIZE_FILTER = "bilinear"
#: Decoding may use this many bytes per pixel of the pixel limit: two buffers of Pillow's 4-byte
#: RGB layout, i.e. what decoding and converting an RGB image at the pixel limit needs (about 716 MB).
DECODE_BYTES_PER_PIXEL = 8
#: Bytes per pixel Pillow stores for each mode (every multi-band mode takes 4 bytes a pixel).
_STORAGE_BYTES = {"1": 1, "L": 1, "P": 1, "I;16": 2, "I;16B": 2, "I;16L": 2, "I;16N": 2}
_MULTI_BAND_BYTES = 4
#: Pillow modes holding more than 8 bits a pixel in one band: scaled to 8 bits (`_wide_to_gray`).
WIDE_MODES = frozenset({"I;16", "I;16B", "I;16L", "I;16N", "I", "F"})
#: Pixels of a wide-mode image converted at a time (whole rows; bounds the float64 block to 2 MB).
_WIDE_BLOCK_PIXELS = 1 << 18
#: The hint shown with an oversized image: the one command that can lift the limit.
LARGE_IMAGES_HINT = "only `extract --allow-large-images` decodes such a file, when it is trusted"
_MAX_8BIT = 255
_MAX_16BIT = 65535

# Pillow's global limit is replaced by the per-call `max_pixels` check below, which the caller
# controls (the CLI's --allow-large-images); changing a global per call would race between threads.
Image.MAX_IMAGE_PIXELS = None


class ImageDecodeError(Exception):
    """An image file could not be turned into pixels; `reason` says why in a few words."""

    def __init__(self, reason: str):
        super().__init__(reason)
        self.reason = reason


@dataclass(frozen=True)
class ResizeSpec:
    """Target input size (height, width) and the policy used to reach it.

    `stretch` resizes to the exact size ignoring aspect ratio (what Keras' `load_img` does);
    `crop` scales the short side to fit and cuts the centre; `pad` scales the long side to fit and
    letterboxes with the ImageNet mean colour. All use bilinear filtering with antialiasing.
    """

    height: int
    width: int
    policy: str = "stretch"

    def __post_init__(self):
        if self.policy not in RESIZE_POLICIES:
            raise UsageError(f"resize policy {self.policy!r} is not one of {', '.join(RESIZE_POLICIES)}")
        if self.height < 1 or self.width < 1:
            raise UsageError(f"input size must be positive, got {self.height}x{self.width}")

    @property
    def filter(self) -> str:
        """The interpolation used (`RESIZE_FILTER`)."""
        return RESIZE_FILTER

    def describe(self) -> str:
        """Readable text for the resizing, e.g. "stretch-bilinear-224x224"."""
        return f"{self.policy}-{self.filter}-{self.height}x{self.width}"


def is_candidate_image(path: Path) -> bool:
    """True when `path` looks like an image file worth trying (extension, not OS litter, not hidden)."""
    name = path.name
    if name.lower() in IGNORED_FILE_NAMES or name.startswith("."):
        return False
    return path.suffix.lower() in IMAGE_EXTENSIONS


def decode_image(path: Path | str, resize: ResizeSpec, max_pixels: int | None = DEFAULT_MAX_PIXELS) -> np.ndarray:
    """Decode `path` by content and return a (height, width, 3) uint8 array sized per `resize`."""
    image = open_rgb(path, max_pixels=max_pixels, draft_size=(resize.width, resize.height))
    return np.asarray(fit_to_size(image, resize), dtype=np.uint8)


def decode_given_image(path: Path | str, resize: ResizeSpec, role: str) -> np.ndarray:
    """`decode_image` for one image a user named for a command (`role`, e.g. "--start"), under the
    default pixel limit; `DatasetError` (exit 1) saying why it cannot be used."""
    try:
        return decode_image(path, resize)
    except ImageDecodeError as error:
        raise DatasetError(f"cannot use {path} as {role}: {error.reason}. Pass an image file (JPEG, PNG, GIF, BMP, "
                           "WebP, TIFF)") from None


def open_rgb(path: Path | str, max_pixels: int | None = DEFAULT_MAX_PIXELS, draft_size=None) -> Image.Image:
    """Open `path`, apply orientation and colour conversions, and return a loaded RGB image.

    `draft_size` (width, height) lets the JPEG decoder downscale by a power of two while keeping
    both sides at least that large, which makes decoding large photos several times faster.
    """
    path = Path(path)
    _check_file(path)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # Pillow warns about odd EXIF/ICC data it then handles.
            image = Image.open(path)
            _check_pixels(image, max_pixels)
            _check_decode_bytes(image, max_pixels)
            # A freshly opened image shows its first frame (GIF, APNG, WebP, TIFF) or, for PSD,
            # the merged composite; seeking would pick a PSD layer (PSD frames are layers 1..n).
            if draft_size is not None and image.format == "JPEG":
                side = max(draft_size)
                image.draft("RGB", (side, side))
            image.load()
            image = ImageOps.exif_transpose(image)
            return _to_rgb(image)
    except ImageDecodeError:
        raise
    except UnidentifiedImageError:
        raise ImageDecodeError(
            "not a recognised image format (the content is not image data Pillow can read)") from None
    except PermissionError:
        raise ImageDecodeError("permission denied while reading the file") from None
    except (OSError, ValueError, SyntaxError, EOFError) as error:
        raise ImageDecodeError(f"corrupt or truncated image data ({_one_line(error)})") from error


def fit_to_size(image: Image.Image, resize: ResizeSpec) -> Image.Image:
    """Resize an RGB image to `resize.width` x `resize.height` following `resize.policy`."""
    target_w, target_h = resize.width, resize.height
    if resize.policy == "stretch":
        return image.resize((target_w, target_h), Image.BILINEAR)
    width, height = image.size
    if resize.policy == "crop":
        scale = max(target_w / width, target_h / height)
    else:  # pad
        scale = min(target_w / width, target_h / height)
    scaled_w = max(1, round(width * scale))
    scaled_h = max(1, round(height * scale))
    scaled = image.resize((scaled_w, scaled_h), Image.BILINEAR)
    if resize.policy == "crop":
        left = (scaled_w - target_w) // 2
        top = (scaled_h - target_h) // 2
        return scaled.crop((left, top, left + target_w, top + target_h))
    canvas = Image.new("RGB", (target_w, target_h), PAD_RGB)
    canvas.paste(scaled, ((target_w - scaled_w) // 2, (target_h - scaled_h) // 2))
    return canvas


def _check_file(path: Path) -> None:
    if path.is_symlink() and not path.exists():
        raise ImageDecodeError("broken symbolic link (its target does not exist)")
    try:
        size = path.stat().st_size
    except FileNotFoundError:
        raise ImageDecodeError("file not found (it was moved or deleted)") from None
    except PermissionError:
        raise ImageDecodeError("permission denied while reading the file") from None
    if size == 0:
        raise ImageDecodeError("empty file (0 bytes)")
    if not os.access(path, os.R_OK):
        raise ImageDecodeError("permission denied while reading the file")


def _check_pixels(image: Image.Image, max_pixels: int | None) -> None:
    width, height = image.size
    if max_pixels is not None and width * height > max_pixels:
        raise ImageDecodeError(
            f"{width}x{height} pixels is over the {max_pixels:,}-pixel limit (a possible decompression "
            f"bomb); {LARGE_IMAGES_HINT}"
        )


def decode_bytes(mode: str, width: int, height: int) -> int:
    """Peak bytes decoding an image of `mode` and size to RGB needs: its own pixels plus the conversions."""
    stored = _STORAGE_BYTES.get(mode, _MULTI_BAND_BYTES)
    if mode == "RGB":
        converted = 0
    elif mode in WIDE_MODES:
        converted = 1 + _MULTI_BAND_BYTES  # the 8-bit gray image, then RGB
    elif mode in ("RGBA", "LA", "PA", "La", "RGBa", "P"):
        converted = 4 * _MULTI_BAND_BYTES  # RGBA copy, white background, composite, RGB
    else:
        converted = _MULTI_BAND_BYTES
    return width * height * (stored + converted)


def _check_decode_bytes(image: Image.Image, max_pixels: int | None) -> None:
    if max_pixels is None:
        return
    width, height = image.size
    needed, limit = decode_bytes(image.mode, width, height), max_pixels * DECODE_BYTES_PER_PIXEL
    if needed > limit:
        raise ImageDecodeError(
            f"{width}x{height} pixels in mode {image.mode} need about {needed / 1e6:,.0f} MB to decode, over the "
            f"{limit / 1e6:,.0f} MB limit (a possible decompression bomb); {LARGE_IMAGES_HINT}"
        )


def _to_rgb(image: Image.Image) -> Image.Image:
    mode = image.mode
    if mode == "RGB":
        return image
    if mode in WIDE_MODES:
        return _wide_to_gray(image).convert("RGB")
    has_alpha = mode in ("RGBA", "LA", "PA", "La", "RGBa") or (mode == "P" and "transparency" in image.info)
    if has_alpha:
        rgba = image.convert("RGBA")
        background = Image.new("RGBA", rgba.size, ALPHA_BACKGROUND_RGB + (_MAX_8BIT,))
        return Image.alpha_composite(background, rgba).convert("RGB")
    return image.convert("RGB")


def _wide_to_gray(image: Image.Image) -> Image.Image:
    """Scale 16/32-bit integer or float grayscale to 8 bits ("L") instead of clipping at 255.

    16-bit modes, and any image whose peak is above 255, are scaled by 255/65535 (rounded half to
    even, then clipped to 0..255); others keep their values; NaN becomes 0. Converted a block of
    rows at a time: the only full-size copy made is the uint8 result.
    """
    values = np.asarray(image)
    rows = max(1, _WIDE_BLOCK_PIXELS // max(1, values.shape[1]))
    blocks = [slice(top, top + rows) for top in range(0, values.shape[0], rows)]
    scale = image.mode.startswith("I;16") or any(_peak(values[block]) > _MAX_8BIT for block in blocks)
    gray = np.empty(values.shape, dtype=np.uint8)
    for block in blocks:
        part = values[block].astype(np.float64)  # at most _WIDE_BLOCK_PIXELS values, changed in place
        if scale:
            part *= _MAX_8BIT / _MAX_16BIT
        np.nan_to_num(part, copy=False, nan=0.0)
        np.rint(part, out=part)
        gray[block] = np.clip(part, 0, _MAX_8BIT, out=part)
    return Image.fromarray(gray)


def _peak(values: np.ndarray) -> float:
    """The largest finite value of a block (0 for an empty or all-NaN block)."""
    if values.dtype.kind == "f":
        values = values[np.isfinite(values)]
    return float(values.max()) if values.size else 0.0


def _one_line(error: BaseException) -> str:
    text = str(error).strip() or type(error).__name__
    return text.splitlines()[0]
