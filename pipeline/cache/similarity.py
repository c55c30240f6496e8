"""Exact cosine similarity over many rows in bounded memory: blocked matrix products.

Rows are compared as unit vectors after subtracting a reference mean (`unit_rows`): ReLU features
are all non-negative, so raw cosines of unrelated photos sit high (about 0.5 for VGG16 pooled
features) and centring spreads them out. Every function below is exact; memory is bounded by
`BLOCK_BYTES` for the similarity block held at once, whatever the number of rows.
"""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np

#: Bytes of one block of the similarity matrix (float32) held in memory at once.
BLOCK_BYTES = 64 * 2 ** 20
_FLOAT_BYTES = 4
_TINY_NORM = 1e-12


def unit_rows(x: np.ndarray, mean: np.ndarray | None = None) -> np.ndarray:
    """float32 rows of `x` minus `mean` (default: the rows' own mean), scaled to unit length (zero rows stay 0)."""
    x = np.asarray(x, dtype=np.float32)
    centred = x - (x.mean(axis=0) if mean is None else np.asarray(mean, dtype=np.float32))
    norms = np.linalg.norm(centred, axis=1, keepdims=True)
    return centred / np.maximum(norms, _TINY_NORM)


def block_size(columns: int, block_bytes: int = BLOCK_BYTES) -> int:
    """Query rows per block so that a (rows, columns) float32 block fits in `block_bytes`."""
    return max(1, block_bytes // (_FLOAT_BYTES * max(1, columns)))


def _blocks(queries: np.ndarray, rows: np.ndarray, block_bytes: int) -> Iterator[tuple[int, np.ndarray]]:
    step = block_size(len(rows), block_bytes)
    for start in range(0, len(queries), step):
        yield start, queries[start:start + step] @ rows.T


def pairs_above(units: np.ndarray, threshold: float, block_bytes: int = BLOCK_BYTES, others: np.ndarray | None = None):
    """Every pair i < j of unit rows with cosine >= `threshold`: (i, j, similarity) arrays, exact.

    With `others` (rows aligned with `units`, e.g. the mirror images' hashes), a pair's similarity is
    the larger of units_i . units_j and units_i . others_j (two blocks are then held at once).
    """
    found_i, found_j, found_s = [], [], []
    blocks = _blocks(units, units, block_bytes)
    if others is not None:
        blocks = ((start, np.maximum(block, other)) for (start, block), (_, other)
                  in zip(blocks, _blocks(units, others, block_bytes)))
    for start, block in blocks:
        rows, columns = np.nonzero(block >= threshold)
        keep = columns > rows + start
        found_i.append(rows[keep] + start)
        found_j.append(columns[keep])
        found_s.append(block[rows[keep], columns[keep]])
    if not found_i:
        return np.zeros(0, np.int64), np.zeros(0, np.int64), np.zeros(0, np.float32)
    return np.concatenate(found_i), np.concatenate(found_j), np.concatenate(found_s)


def top_k(queries: np.ndarray, units: np.ndarray, k: int, exclude_self: bool = False,
          block_bytes: int = BLOCK_BYTES) -> tuple[np.ndarray, np.ndarray]:
    """The `k` most similar rows of `units` to each query, best first: (indices (n, k), cosines (n, k)).

    With `exclude_self`, `queries` are `units` themselves and row i never counts as its own neighbour.
    """
    k = min(k, len(units) - (1 if exclude_self else 0))
    indices = np.zeros((len(queries), max(k, 0)), np.int64)
    cosines = np.zeros((len(queries), max(k, 0)), np.float32)
    if k <= 0:
        return indices, cosines
    for start, block in _blocks(queries, units, block_bytes):
        if exclude_self:
            own = np.arange(start, start + len(block))
            block[own - start, own] = -np.inf
        best = np.argpartition(-block, k - 1, axis=1)[:, :k]
        values = np.take_along_axis(block, best, axis=1)
        order = np.argsort(-values, axis=1, kind="stable")
        indices[start:start + len(block)] = np.take_along_axis(best, order, axis=1)
        cosines[start:start + len(block)] = np.take_along_axis(values, order, axis=1)
    return indices, cosines
