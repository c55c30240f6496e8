"""`predict` with a head fitted with test-time augmentation: the mean over the views it was scored on.

A head fitted with `fit-head --tta` records its views (`pipeline.heads.tta.head_tta`). Each new
image is hashed (sha256 of its bytes, as a cache identifies it) and those views are rendered exactly
as the cache rendered them (`pipeline.data.views.decode_view`, seeded by the spec's seed, the sha256
and the view index; view 0 is the plain decode `predict` always does); the backbone runs on every
view, the head gives probabilities per view, and the image's probabilities are their mean over the
views it averages (with "mild": view 0 and the crops that kept most of the image), as
`pipeline.heads.tta.average_over_views` does on cached rows.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np

from pipeline.data.hashing import sha256_file
from pipeline.data.images import ImageDecodeError, ResizeSpec
from pipeline.data.views import ViewSpec, decode_view, view_address
from pipeline.errors import HeadError
from pipeline.heads.tta import HeadTTA, average_over_views, image_view_mask


def require_view_spec(views: ViewSpec | None, head_path: Path) -> ViewSpec:
    """The head's cache's view spec; `HeadError` for a head that records TTA views but no view spec."""
    if views is None:
        raise HeadError(f"head {head_path} records test-time augmentation views, but its feature spec has no "
                        "views to render them from (the sidecar was edited?); fit it again with `fit-head --tta`, "
                        "or predict with --no-tta")
    return views


def tta_probabilities(paths: list[Path], resize: ResizeSpec, spec: ViewSpec, tta: HeadTTA,
                      probabilities_of: Callable[[np.ndarray], np.ndarray]) -> tuple[np.ndarray, list[int]]:
    """(images, classes) probabilities and the views each image averaged: per image of `paths` (decodable:
    `predict` decoded their view 0), the mean of `probabilities_of(uint8 pixels (n, h, w, 3))` over its views
    (see the module doc)."""
    pixels, masks = [], []
    for path in paths:
        sha = sha256_file(path)
        try:
            pixels += [decode_view(path, resize, spec, view_address(sha, view)) for view in tta.views]
        except ImageDecodeError as error:  # view 0 decoded, so only a file changed since then gets here
            raise HeadError(f"{path} could not be decoded again for its augmented views ({error.reason}); "
                            "was it changed during the run?") from error
        masks.append(image_view_mask(spec, sha, tta.views, tta.mild))
    shape = pixels[0].shape
    mask = np.array(masks, dtype=bool)
    rows = np.stack(pixels).reshape(len(paths), len(tta.views), -1)
    probabilities = average_over_views(lambda flat: probabilities_of(flat.reshape(-1, *shape)), rows, mask)
    return probabilities, [int(count) for count in mask.sum(axis=1)]
