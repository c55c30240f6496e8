"""Parallel image decoding for extraction: files in, fixed-size uint8 batches out.

Decoding and resizing run in a thread pool (`pipeline.data.background.read_ahead`; Pillow releases
the GIL while it works) and stay a few batches ahead of the consumer, so the backbone never waits
on disk or JPEG decoding. Results come out in input order. Files that cannot be decoded are
reported per batch, never raised. With `views` (`extract --views K`), each item names one view of
an image by its row address (`pipeline.data.views.view_address`) and is rendered by
`pipeline.data.views.decode_view`.
"""

from __future__ import annotations

import os
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from itertools import islice
from pathlib import Path

import numpy as np

from pipeline.data.background import read_ahead
from pipeline.data.images import DEFAULT_MAX_PIXELS, ImageDecodeError, ResizeSpec
from pipeline.data.views import ViewSpec, decode_view
from pipeline.errors import UsageError

#: Batches decoded ahead of the one being consumed.
PREFETCH_BATCHES = 2


@dataclass(frozen=True)
class DecodedBatch:
    """Pixels for the images that decoded (`shas[i]` ↔ `pixels[i]`) and (sha, reason) for the rest
    (`shas` are the items' keys: sha256s, or row addresses with views)."""

    shas: list[str]
    pixels: np.ndarray
    failures: list[tuple[str, str]]


def default_workers() -> int:
    """Decoding threads: one per CPU core."""
    return max(1, os.cpu_count() or 1)


def decoded_batches(
    items: Sequence[tuple[str, Path]],
    resize: ResizeSpec,
    batch_size: int,
    workers: int | None = None,
    max_pixels: int | None = DEFAULT_MAX_PIXELS,
    views: ViewSpec | None = None,
) -> Iterator[DecodedBatch]:
    """Yield batches of decoded `(sha256, path)` items (`(row address, path)` with `views`), decoding
    ahead in `workers` threads.

    Consumers that may stop early must close the generator (`contextlib.closing`), so its
    threads are shut down at once rather than by the garbage collector at an arbitrary moment
    (which can deadlock inside another thread's start-up).
    """
    if batch_size < 1:
        raise UsageError(f"batch size must be at least 1, got {batch_size}")

    def decode(item):
        sha, path = item
        try:
            return sha, decode_view(path, resize, views, sha, max_pixels=max_pixels), None
        except ImageDecodeError as error:
            return sha, None, error.reason

    decoded = read_ahead(decode, items, depth=batch_size * (PREFETCH_BATCHES + 1), workers=workers or default_workers(),
                         name="decode")
    try:
        while chunk := list(islice(decoded, batch_size)):
            shas = [sha for sha, _, reason in chunk if reason is None]
            arrays = [pixels for _, pixels, reason in chunk if reason is None]
            failures = [(sha, reason) for sha, _, reason in chunk if reason is not None]
            empty = np.zeros((0, resize.height, resize.width, 3), dtype=np.uint8)
            yield DecodedBatch(shas, np.stack(arrays) if arrays else empty, failures)
    finally:
        # Runs when the consumer stops early (an interrupt, an error) and closes the generator:
        # queued decodes are dropped instead of being finished for nobody.
        decoded.close()
