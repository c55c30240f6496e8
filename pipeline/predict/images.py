"""The user's photos for prediction: decoded and resized like a dataset, in batches, failures kept.

Results are one dict per image, in the order the paths were given: {"path", "predictions"} or,
for a file that cannot be decoded, {"path", "error"}. When no image at all could be read,
`in_given_order` raises `DatasetError` listing why.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from pathlib import Path

import numpy as np

from pipeline.data.images import ImageDecodeError, ResizeSpec, decode_image
from pipeline.errors import DatasetError

PREDICT_BATCH_SIZE = 16
DEFAULT_TOP_K = 5
_UNREADABLE_LISTED = 10  # unreadable images named in the error when none could be read


def decoded_batches(paths: Sequence[Path], resize: ResizeSpec, results: list[dict],
                    batch_size: int = PREDICT_BATCH_SIZE) -> Iterator[tuple[list[Path], np.ndarray]]:
    """Yield (decoded paths, uint8 pixels) batches; undecodable files are appended to `results` as errors."""
    for start in range(0, len(paths), batch_size):
        decoded, pixels = [], []
        for path in paths[start:start + batch_size]:
            try:
                pixels.append(decode_image(path, resize))
                decoded.append(Path(path))
            except ImageDecodeError as error:
                results.append({"path": str(path), "error": error.reason})
        if decoded:
            yield decoded, np.stack(pixels)


def in_given_order(results: list[dict], paths: Sequence[Path]) -> list[dict]:
    """`results` sorted as `paths` were given; `DatasetError` when every image failed to decode."""
    if all("error" in result for result in results):
        listed = "\n  ".join(f"{r['path']}: {r['error']}" for r in results[:_UNREADABLE_LISTED])
        raise DatasetError(f"none of the {len(results)} images could be read, so nothing was classified:\n  {listed}\n"
                           "Pass image files (JPEG, PNG, GIF, BMP, WebP, TIFF)")
    order = {str(p): i for i, p in enumerate(paths)}
    return sorted(results, key=lambda r: order[r["path"]])
