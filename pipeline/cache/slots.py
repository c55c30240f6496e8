"""Slot-stable batches: a resumed extraction computes bitwise the same rows as an uninterrupted one.

Why: on CPU the convolution kernels (oneDNN / Eigen) tile the (batch x height x width) rows of
each layer, so an image's features can differ in the last bits with its position in the batch
and with the batch size (measured for VGG16 in float32: up to 7e-7 absolute, 6e-7 relative),
though never with the other images in the batch. A resumed run extracts only what is missing;
packed naively, those images land at other positions whenever they are not a batch-aligned tail
of the previous run (a file repaired after it failed to decode, a lost segment).

So every image owns a fixed place: with N distinct contents (numbered in record order) and batch
size B, the images of the first N - N mod B ordinals sit at slot `ordinal % B` of a batch of B,
and the N mod B images of the tail at slot `ordinal - (N - N mod B)` of a batch of N mod B (the
batch a plain run ends with). Slots without an image to compute (already extracted, or
undecodable) hold zeros. Whichever subset a run extracts, each image meets the same arithmetic, so
an interrupted and resumed extraction ends with the same bytes as a clean one (same machine,
libraries and `--batch-size`; `tests/test_reliability_kill.py` and
`tests/test_reliability_crashpoints.py` check it). A fresh run computes exactly the batches a plain
run would. Changing `--batch-size` between runs changes rows only by that rounding, which is why
it is not part of the cache key.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from pipeline.data.feeder import DecodedBatch
from pipeline.data.images import ResizeSpec


@dataclass(frozen=True)
class PlannedBatch:
    """A forward batch of `size` rows; `entries` are (slot, sha256, path), slots ascending."""

    size: int
    entries: list[tuple[int, str, Path]]


@dataclass(frozen=True)
class SlotBatch:
    """A decoded forward batch: `shas[i]` decoded into `pixels[slots[i]]`; other rows are zeros."""

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


def place_of(ordinal: int, distinct: int, batch_size: int) -> tuple[int, int]:
    """(forward batch size, slot) of the image numbered `ordinal` among `distinct` contents."""
    full = distinct - distinct % batch_size
    return (batch_size, ordinal % batch_size) if ordinal < full else (distinct - full, ordinal - full)


def plan_batches(items: Sequence[tuple[str, Path]], ordinals: dict[str, int], batch_size: int) -> list[PlannedBatch]:
    """Pack `items` [(sha256, path)] into forward batches in which each image has its own place.

    A contiguous run of ordinals (a fresh extraction, or the tail an interruption left) packs into
    as few batches as plain chunking; scattered images may need a few more.
    """
    places: dict[int, dict[int, list[tuple[str, Path]]]] = defaultdict(lambda: defaultdict(list))
    for sha, path in items:
        size, slot = place_of(ordinals[sha], len(ordinals), batch_size)
        places[size][slot].append((sha, path))
    batches = []
    for size in sorted(places, reverse=True):  # full batches first, the dataset's tail last
        by_slot = places[size]
        for level in range(max(len(group) for group in by_slot.values())):
            entries = [(slot, *by_slot[slot][level]) for slot in sorted(by_slot) if level < len(by_slot[slot])]
            batches.append(PlannedBatch(size, entries))
    return batches


def slot_batches(plan: list[PlannedBatch], decoded: Iterable[DecodedBatch], resize: ResizeSpec) -> Iterator[SlotBatch]:
    """Regroup `decoded` (decoding the plan's items in order, in any chunking) into the planned batches."""
    pixels_of: dict[str, np.ndarray] = {}
    reason_of: dict[str, str] = {}
    planned = iter(plan)
    batch = next(planned, None)
    for decoded_batch in decoded:
        pixels_of.update(zip(decoded_batch.shas, decoded_batch.pixels))
        reason_of.update(decoded_batch.failures)
        while batch is not None and all(sha in pixels_of or sha in reason_of for _, sha, _ in batch.entries):
            yield _assemble(batch, pixels_of, reason_of, resize)
            batch = next(planned, None)


def _assemble(batch: PlannedBatch, pixels_of: dict, reason_of: dict, resize: ResizeSpec) -> SlotBatch:
    pixels = np.zeros((batch.size, resize.height, resize.width, 3), dtype=np.uint8)
    slots, shas, failures = [], [], []
    for slot, sha, _ in batch.entries:
        if sha in reason_of:
            failures.append((sha, reason_of.pop(sha)))
            continue
        pixels[slot] = pixels_of.pop(sha)
        slots.append(slot)
        shas.append(sha)
    return SlotBatch(pixels, slots, shas, failures)
