"""Slot-stable batches: a resumed extraction computes bitwise the same rows as an uninterrupted one.

Why: on CPU the convolution kernels (oneDNN / Eigen) tile the (batch x height x width) rows of
each layer, so an image's features can differ in the last bits with its position in the batch
and with the batch size (measured for VGG16 in float32: up to 7e-7 absolute, 6e-7 relative),
though never with the other images in the batch. A resumed run extracts a different subset of
the images, and packing that subset into batches naively would move images to other positions.

So every image owns a slot: its ordinal among the dataset's distinct contents (in record order)
modulo the batch size. Forward batches always have the same size, each image sits in its own
slot, and slots without an image (already extracted, undecodable, or past the end) hold zeros.
Whichever subset a run extracts, each image meets the same arithmetic, so an interrupted and
resumed extraction ends with the same bytes as a clean one (same machine, libraries and
`--batch-size`; `tests/test_reliability_kill.py` checks it). Changing `--batch-size` between
runs changes rows only by that rounding, which is why it is not part of the cache key.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable, Iterator, Sequence

import numpy as np

from pipeline.feeder import DecodedBatch
from pipeline.images import ResizeSpec

#: A planned forward batch: (slot, sha256, path) for each image, slots ascending.
PlannedBatch = list[tuple[int, str, Path]]


@dataclass(frozen=True)
class SlotBatch:
    """One forward batch: `pixels` has `batch_size` rows; `shas[i]` decoded into `pixels[slots[i]]`."""

    pixels: np.ndarray
    slots: list[int]
    shas: list[str]
    failures: list[tuple[str, str]]


def content_ordinals(shas: Iterable[str]) -> dict[str, int]:
    """Position of each distinct sha256 in first-seen order (pass the dataset's records in order)."""
    ordinals: dict[str, int] = {}
    for sha in shas:
        ordinals.setdefault(sha, len(ordinals))
    return ordinals


def forward_batch_size(batch_size: int, distinct_images: int) -> int:
    """The fixed batch size of a dataset's forward passes: `batch_size`, or less for a smaller dataset."""
    return max(1, min(batch_size, distinct_images))


def plan_batches(items: Sequence[tuple[str, Path]], ordinals: dict[str, int], batch_size: int) -> list[PlannedBatch]:
    """Pack `items` [(sha256, path)] into batches in which each image is in slot `ordinal % batch_size`.

    A contiguous run of ordinals (a fresh extraction, or the tail an interruption left) packs into
    as few batches as plain chunking would; scattered new images may need a few more.
    """
    by_slot: dict[int, list[tuple[str, Path]]] = defaultdict(list)
    for sha, path in items:
        by_slot[ordinals[sha] % batch_size].append((sha, path))
    depth = max((len(group) for group in by_slot.values()), default=0)
    return [
        [(slot, *by_slot[slot][level]) for slot in sorted(by_slot) if level < len(by_slot[slot])]
        for level in range(depth)
    ]


def slot_batches(plan: list[PlannedBatch], decoded: Iterable[DecodedBatch], batch_size: int,
                 resize: ResizeSpec) -> Iterator[SlotBatch]:
    """Regroup `decoded` (decoding the plan's items in order, in any chunking) into the planned batches."""
    pixels_of: dict[str, np.ndarray] = {}
    reason_of: dict[str, str] = {}
    planned = iter(plan)
    group = next(planned, None)
    for batch in decoded:
        pixels_of.update(zip(batch.shas, batch.pixels))
        reason_of.update(batch.failures)
        while group is not None and all(sha in pixels_of or sha in reason_of for _, sha, _ in group):
            yield _assemble(group, pixels_of, reason_of, batch_size, resize)
            group = next(planned, None)


def _assemble(group: PlannedBatch, pixels_of: dict, reason_of: dict, batch_size: int, resize: ResizeSpec) -> SlotBatch:
    pixels = np.zeros((batch_size, resize.height, resize.width, 3), dtype=np.uint8)
    slots, shas, failures = [], [], []
    for slot, sha, _ in group:
        if sha in reason_of:
            failures.append((sha, reason_of.pop(sha)))
            continue
        pixels[slot] = pixels_of.pop(sha)
        slots.append(slot)
        shas.append(sha)
    return SlotBatch(pixels, slots, shas, failures)
