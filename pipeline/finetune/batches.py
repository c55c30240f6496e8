"""Training and scoring batches streamed from the boundary cache, read ahead of the model.

An epoch is a fixed function of (seed, epoch number): the training images in a permutation drawn
from `numpy.random.default_rng([seed, epoch])`, each with one of its views drawn from the same
generator (always view 0 without views), cut into batches of `batch_size`. So a resumed run
trains exactly the batches an uninterrupted one would. Scoring batches are a split's images in
cache order, view 0 only.

`prefetched` reads the rows of the coming batches in a background thread (`RowReader` through
`pipeline.data.background.read_ahead`: only the rows asked for, so memory holds `PREFETCH_BATCHES`
batches whatever the dataset size) while the model trains on the current one, and measures how
long the model waited for rows.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from pipeline.cache.rows import RowReader
from pipeline.data.background import read_ahead

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
    """Yield (features float32, labels) per batch, read ahead in a thread; `times` records the waits.

    The cache file is closed when the generator ends or is closed (a consumer that stops early).
    """
    with RowReader(cache_path) as reader:
        def read(batch: Batch) -> np.ndarray:
            tick = time.perf_counter()
            features = reader.read(batch.rows)
            times.reading += time.perf_counter() - tick
            return features

        rows = read_ahead(read, batches, PREFETCH_BATCHES, name="row-reader")
        try:
            for batch in batches:
                tick = time.perf_counter()
                features = next(rows)
                times.waiting_for_rows += time.perf_counter() - tick
                times.rows += len(batch.rows)
                yield features, batch.labels
        finally:
            rows.close()
