"""Small inline images for the HTML report: data URIs of downscaled JPEGs (or the PNGs as they are).

Only image data is ever embedded: a file is decoded first, and a PNG goes in as it is only when
Pillow reads it as a whole PNG; anything else (a text file named `.png`) gives None. Which files
may be shown at all (confinement to a folder) is `inside`, applied by `pipeline.report.content`.
"""

from __future__ import annotations

import base64
import io
from pathlib import Path

from PIL import Image, UnidentifiedImageError

from pipeline.data.images import ImageDecodeError, open_rgb

#: Longest side of a thumbnail, in pixels, and its JPEG quality.
THUMBNAIL_PIXELS = 160
THUMBNAIL_QUALITY = 80
#: PNGs larger than this are downscaled like photos rather than embedded as they are.
MAX_EMBEDDED_PNG_BYTES = 400_000


def thumbnail_uri(path: Path, pixels: int = THUMBNAIL_PIXELS) -> str | None:
    """A `data:image/jpeg;base64,...` thumbnail of the image at `path`, or None when it cannot be read."""
    try:
        image = open_rgb(path, draft_size=(pixels, pixels))
    except ImageDecodeError:
        return None
    image.thumbnail((pixels, pixels))
    buffer = io.BytesIO()
    image.save(buffer, "JPEG", quality=THUMBNAIL_QUALITY)
    return "data:image/jpeg;base64," + base64.b64encode(buffer.getvalue()).decode("ascii")


def png_uri(path: Path, pixels: int) -> str | None:
    """A PNG the tool made (a visualisation, a plot), inline: as it is when it is a small, whole PNG,
    else as a thumbnail; None when the file is not an image."""
    if not Path(path).is_file():
        return None
    if Path(path).stat().st_size <= MAX_EMBEDDED_PNG_BYTES and _is_whole_png(path):
        return "data:image/png;base64," + base64.b64encode(Path(path).read_bytes()).decode("ascii")
    return thumbnail_uri(path, pixels)


def inside(path: Path, folder: Path) -> bool:
    """True when `path`, symbolic links resolved, lies inside `folder` (also resolved)."""
    try:
        return Path(path).resolve().is_relative_to(Path(folder).resolve())
    except (OSError, RuntimeError):  # a symlink loop
        return False


def _is_whole_png(path: Path) -> bool:
    try:
        with Image.open(path) as image:
            if image.format != "PNG":
                return False
            image.verify()  # checks every chunk's CRC without decoding the pixels
        return True
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError):
        return False
