"""Training and scoring batches streamed from the boundary cache, read ahead of the model.

An epoch is a fixed function of (seed, epoch number): the training images in a permutation drawn
from `numpy.random.default_rng([seed, epoch])`, each with one of its views drawn from the same
generator (always view 0 without views), cut into batches of `batch_size`. So a resumed run
trains exactly the batches an uninterrupted one would. Scoring batches are a split's images in
cache order, view 0 only.

`prefetched` reads the rows of the coming batches in a background thread (`RowReader`: only the
rows asked for, so memory holds `PREFETCH_BATCHES` batches whatever the dataset size) while the
model trains on the current one, and measures how long the model waited for rows.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from queue import Queue

import numpy as np

from pipeline.cache.rows import RowReader

#: Batches read ahead of the one the model is training on.
PREFETCH_BATCHES = 3


@dataclass(frozen=True)
class SplitRows:
    """One split of the boundary cache: `rows` (images, views) - column 0 is view 0 - and `labels`."""

    rows: np.ndarray
    labels: np.ndarray

    def __len__(self) -> int:
        return len(self.labels)


@dataclass
class StreamTimes:
    """Where a pass over batches spent its time."""

    waiting_for_rows: float = 0.0
    reading: float = 0.0  # in the reader thread, overlapping the model's work
    rows: int = 0


@dataclass(frozen=True)
class Batch:
    rows: np.ndarray
    labels: np.ndarray


def epoch_batches(split: SplitRows, epoch: int, seed: int, batch_size: int) -> list[Batch]:
    """The training batches of `epoch`: a permutation of the images, one view each (see the module doc)."""
    rng = np.random.default_rng([seed, epoch])
    order = rng.permutation(len(split))
    views = rng.integers(0, split.rows.shape[1], len(split))
    rows = split.rows[order, views]
    labels = split.labels[order]
    return [Batch(rows[i:i + batch_size], labels[i:i + batch_size]) for i in range(0, len(rows), batch_size)]


def scoring_batches(split: SplitRows, batch_size: int) -> list[Batch]:
    """A split's images in order, view 0."""
    rows = split.rows[:, 0]
    return [Batch(rows[i:i + batch_size], split.labels[i:i + batch_size]) for i in range(0, len(rows), batch_size)]


def prefetched(cache_path: Path, batches: list[Batch], times: StreamTimes) -> Iterator[tuple[np.ndarray, np.ndarray]]:
    """Yield (features float32, labels) per batch, read ahead in a thread; `times` records the waits."""
    queue: Queue = Queue(maxsize=PREFETCH_BATCHES)
    stop = threading.Event()
    failure: list[BaseException] = []

    def read_all():
        try:
            with RowReader(cache_path) as reader:
                for batch in batches:
                    if stop.is_set():
                        return
                    tick = time.perf_counter()
                    features = reader.read(batch.rows)
                    times.reading += time.perf_counter() - tick
                    queue.put(features)
        except BaseException as error:  # noqa: BLE001 - re-raised in the consuming thread
            failure.append(error)
        finally:
            queue.put(None)

    thread = threading.Thread(target=read_all, name="row-reader", daemon=True)
    thread.start()
    try:
        for batch in batches:
            tick = time.perf_counter()
            features = queue.get()
            times.waiting_for_rows += time.perf_counter() - tick
            if features is None:
                break
            times.rows += len(batch.rows)
            yield features, batch.labels
        if failure:
            raise failure[0]
    finally:
        stop.set()
        while thread.is_alive():  # unblock a reader waiting on a full queue
            if queue.get() is None:
                break
        thread.join()
