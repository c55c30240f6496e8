"""The extraction loop: decode, run the backbone, commit rows - with the backbone kept busy.

Decoding runs ahead in threads (`pipeline.data.feeder`), segment writes run in a background
thread (`BackgroundWriter`), and the loop in between only runs the forward pass, measuring where
its time goes (`LoopTimes`). Batches are slot-stable (`pipeline.cache.slots`), so each image
is computed at the same batch position in every run.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from pipeline.cache import slots
from pipeline.cache.format import partial_dir_of
from pipeline.cache.rows import non_finite_rows
from pipeline.cache.segments import SegmentWriter
from pipeline.data.background import Background
from pipeline.data.feeder import decoded_batches
from pipeline.data.images import ResizeSpec
from pipeline.data.views import ViewSpec, parse_view_address

log = logging.getLogger(__name__)

#: Finished batches handed to the background writer (queued or being written) before the loop waits for it.
WRITER_BATCHES_IN_FLIGHT = 3


@dataclass(frozen=True)
class RowJob:
    """The rows one run computes: `items` [(address, path)] missing from the cache (an address is the
    sha256, or with `views` the row address of one view, `pipeline.data.views`), numbered by
    `ordinals` (the dataset's distinct rows, see `pipeline.cache.slots`), written as segments of
    `cache_path` with feature key `key`."""

    items: Sequence[tuple[str, Path]]
    ordinals: dict
    cache_path: Path
    key: str
    store_dtype: str
    resize: ResizeSpec
    batch_size: int
    workers: int | None
    max_pixels: int | None
    commit_rows: int | None
    views: ViewSpec | None = None


@dataclass
class LoopTimes:
    """Where the extraction loop's time went: the forward pass, and waits that leave the backbone idle."""

    forward: float = 0.0
    waiting_for_images: float = 0.0  # blocked until the decoder had the next batch ready
    waiting_for_writer: float = 0.0  # blocked on the background segment writer (disk)
    startup: float = 0.0  # the Ray engine: until the first rows came back (Ray and the actors' backbones)


class BackgroundWriter:
    """Runs a `SegmentWriter`'s adds in a background thread (`pipeline.data.background`) so disk writes
    overlap the forward pass. A failed write is raised by the next `put` or by `close`, with its own type."""

    def __init__(self, writer: SegmentWriter):
        self.writer = writer
        self.work = Background(WRITER_BATCHES_IN_FLIGHT, name="segment-writer")

    def put(self, shas, block):
        self.work.collect_done()
        if self.work.full():
            self.work.next_result()
        self.work.submit(self.writer.add, shas, block)

    def close(self):
        """Wait for the queued writes and commit what is buffered (also on interruption); after a failed
        write, commit nothing more and raise it."""
        self.work.finish()
        self.writer.flush()


def non_finite_reasons(computed: np.ndarray, stored: np.ndarray) -> dict[int, str]:
    """{row index: why it is unusable} for the rows of `stored` (`computed` cast to the store dtype)
    holding a NaN or an infinity: such rows are recorded as failures, never cached."""
    reasons = {}
    for i in non_finite_rows(stored):
        if np.isfinite(computed[i]).all():
            peak, limit = float(np.abs(computed[i]).max()), float(np.finfo(stored.dtype).max)
            reasons[int(i)] = (f"its features overflow {stored.dtype} storage (largest magnitude {peak:.3g}, more "
                               f"than {limit:g}); extract with --store-dtype float32")
        elif stored.dtype == np.float16:
            reasons[int(i)] = ("its features hold NaN or infinite values (from the backbone, or beyond float16's "
                               "range); extract with --store-dtype float32, and check the weights file if it stays")
        else:
            reasons[int(i)] = ("the backbone computed NaN or infinite features for it; the weights are damaged or "
                               "badly scaled: check the weights file (`weights`)")
    return reasons


def compute_rows(job: RowJob, get_extractor: Callable, decode_failures: dict,
                 progress: Callable[[int, int], None] | None = None) -> LoopTimes:
    """Decode and run the backbone on `job.items`, committing segments. Returns the loop's timings.

    Undecodable images land in `decode_failures` (sha256 -> reason, whichever view failed). The backbone is built
    (`get_extractor()`) only when the first image decodes, so a re-run whose only missing images
    are undecodable never loads TensorFlow. `progress(done, total)` is called after each batch.
    """
    plan = slots.plan_batches(job.items, job.ordinals, job.batch_size)
    in_order = [(sha, path) for batch in plan for _, sha, path in batch.entries]
    decoded = decoded_batches(in_order, job.resize, job.batch_size, job.workers, job.max_pixels, job.views)
    extractor, writer = None, None
    done, times = 0, LoopTimes()
    batches = slots.slot_batches(plan, decoded, job.resize)
    try:
        while True:
            tick = time.perf_counter()
            batch = next(batches, None)
            times.waiting_for_images += time.perf_counter() - tick
            if batch is None:
                break
            decode_failures.update((parse_view_address(address)[0], reason) for address, reason in batch.failures)
            if batch.shas:
                if extractor is None:
                    extractor = get_extractor()
                    writer = BackgroundWriter(SegmentWriter(
                        partial_dir_of(job.cache_path), job.key, extractor.feature_shape, job.store_dtype,
                        max_rows=job.commit_rows))
                tick = time.perf_counter()
                features = extractor(batch.pixels)[batch.slots]
                times.forward += time.perf_counter() - tick
                with np.errstate(over="ignore", invalid="ignore"):  # overflowing rows become failures below
                    rows = features.astype(job.store_dtype)
                bad = non_finite_reasons(features, rows)
                decode_failures.update((parse_view_address(batch.shas[i])[0], reason) for i, reason in bad.items())
                shas = batch.shas
                if bad:  # the usual batch has none: hand it to the writer without a copy
                    keep = [i for i in range(len(shas)) if i not in bad]
                    shas, rows = [shas[i] for i in keep], rows[keep]
                tick = time.perf_counter()
                if shas:
                    writer.put(shas, rows)
                times.waiting_for_writer += time.perf_counter() - tick
            done += len(batch.shas) + len(batch.failures)
            if progress is not None:
                progress(done, len(job.items))
    finally:
        decoded.close()
        if writer is not None:
            tick = time.perf_counter()
            writer.close()
            times.waiting_for_writer += time.perf_counter() - tick
    log.info("ran the backbone on %d images in %.1fs (%.1fs waiting for images, %.1fs for the writer)",
             done - len(decode_failures), times.forward, times.waiting_for_images, times.waiting_for_writer)
    return times
