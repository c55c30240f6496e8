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
- images larger than `max_pixels` are refused as possible decompression bombs.
"""

from __future__ import annotations

import os
import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from pipeline.errors import UsageError

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
            "bomb); pass --allow-large-images if the file is trusted"
        )


def _to_rgb(image: Image.Image) -> Image.Image:
    mode = image.mode
    if mode == "RGB":
        return image
    if mode in ("I;16", "I;16B", "I;16L", "I;16N", "I", "F"):
        return _high_depth_to_rgb(image)
    has_alpha = mode in ("RGBA", "LA", "PA", "La", "RGBa") or (mode == "P" and "transparency" in image.info)
    if has_alpha:
        rgba = image.convert("RGBA")
        background = Image.new("RGBA", rgba.size, ALPHA_BACKGROUND_RGB + (_MAX_8BIT,))
        return Image.alpha_composite(background, rgba).convert("RGB")
    return image.convert("RGB")


def _high_depth_to_rgb(image: Image.Image) -> Image.Image:
    """Scale 16/32-bit integer or float grayscale to 8 bits instead of clipping at 255."""
    values = np.asarray(image, dtype=np.float64)
    peak = values.max() if values.size else 0.0
    if image.mode.startswith("I;16") or peak > _MAX_8BIT:
        values = values * (_MAX_8BIT / _MAX_16BIT)
    gray = np.clip(np.rint(values), 0, _MAX_8BIT).astype(np.uint8)
    return Image.fromarray(gray, mode="L").convert("RGB")


def _one_line(error: BaseException) -> str:
    text = str(error).strip() or type(error).__name__
    return text.splitlines()[0]
