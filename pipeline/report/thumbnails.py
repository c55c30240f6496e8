"""Small inline images for the HTML report: data URIs of downscaled JPEGs (or the PNGs as they are)."""

from __future__ import annotations

import base64
import io
from pathlib import Path

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
    """A PNG the tool made (a visualisation, a plot), inline: as it is when small, else as a thumbnail."""
    if not Path(path).is_file():
        return None
    if Path(path).stat().st_size <= MAX_EMBEDDED_PNG_BYTES:
        return "data:image/png;base64," + base64.b64encode(Path(path).read_bytes()).decode("ascii")
    return thumbnail_uri(path, pixels)
