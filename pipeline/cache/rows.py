"""Reading feature rows from a cache: streamed in blocks, optionally pooled, digest-checked.

Memory holds only the (pooled) result, whatever the cache size: rows are read `READ_BLOCK_ROWS`
at a time. `row_digest` is the blake2b-64 of a row's stored bytes, recorded per row at write time
and checked by `pipeline.cache.verify`.

Row addresses: a row is addressed by the sha256 of the image it was computed from and, in a cache
with views (`extract --views K`), its view index. Files store the sha256 in `row_sha256` and the
view index in `row_view`, a column that exists only in files holding rows of views 1..K; in
memory the pair is one text (`pipeline.data.views.view_address`, the bare sha256 for view 0).
"""

from __future__ import annotations

import hashlib
from pathlib import Path

import h5py
import numpy as np

from pipeline.cache.format import FIX_DAMAGED, first_line, open_cache_file
from pipeline.data.views import parse_view_address, view_address
from pipeline.errors import CacheError, UsageError

#: Rows read per block when streaming features; bounds memory whatever the dataset size.
READ_BLOCK_ROWS = 512
_DIGEST_BYTES = 8
#: The column holding row view indexes (files with views only).
ROW_VIEW = "row_view"


def row_digest(row: np.ndarray) -> int:
    """blake2b-64 of a feature row's bytes, as an unsigned integer."""
    digest = hashlib.blake2b(np.ascontiguousarray(row).tobytes(), digest_size=_DIGEST_BYTES).digest()
    return int.from_bytes(digest, "little")


def non_finite_rows(block: np.ndarray) -> np.ndarray:
    """Indexes of the rows of `block` holding a NaN or an infinity."""
    block = np.asarray(block)
    return np.flatnonzero(~np.isfinite(block.reshape(len(block), -1)).all(axis=1))


#: Spatial poolings of (n, h, w, c) maps as rows are read for a head (or the audit): average, maximum, and both
#: side by side (2c channels). Not to be confused with `cache.key.EXTRACT_POOLINGS`, applied before rows are stored.
HEAD_POOLINGS = ("avg", "max", "avgmax")
def read_row_addresses(handle: h5py.File) -> list[str]:
    """The address of every row of an open cache or segment file, in row order."""
    shas = handle["row_sha256"][()]
    if ROW_VIEW not in handle:
        return [sha.decode() for sha in shas]
    return [view_address(sha.decode(), int(view)) for sha, view in zip(shas, handle[ROW_VIEW][()])]


def address_columns(addresses) -> tuple[np.ndarray, np.ndarray | None]:
    """(row_sha256, row_view) columns for `addresses`; row_view is None when every row is a view 0."""
    pairs = [parse_view_address(address) for address in addresses]
    shas = np.array([sha for sha, _ in pairs], dtype="S64")
    views = np.array([view for _, view in pairs], dtype=np.int32)
    return shas, (views if views.any() else None)


def pool_rows(block: np.ndarray, pooling: str) -> np.ndarray:
    """Pool (n, h, w, c) blocks over the spatial axes with one of `HEAD_POOLINGS`; 2-D blocks pass through."""
    block = block.astype(np.float32, copy=False)
    if block.ndim <= 2:
        return block
    axes = tuple(range(1, block.ndim - 1))
    if pooling == "avg":
        return block.mean(axis=axes)
    if pooling == "max":
        return block.max(axis=axes)
    if pooling == "avgmax":
        return np.concatenate([block.mean(axis=axes), block.max(axis=axes)], axis=-1)
    raise UsageError(f"unknown pooling {pooling!r}; choose one of: {', '.join(HEAD_POOLINGS)}")


def load_rows(path: Path, rows: np.ndarray, pooling: str | None = "avg") -> np.ndarray:
    """Features of `rows` (in that order) as float32, spatially pooled unless `pooling` is None.

    Streams the file in blocks of `READ_BLOCK_ROWS`, so memory holds only the (pooled) result.
    """
    rows = np.asarray(rows, dtype=np.int64)
    with open_cache_file(path) as handle:
        try:
            return read_open_rows(handle, rows, pooling)
        except (KeyError, OSError, RuntimeError) as error:
            raise CacheError(f"cannot read features from cache file {path} ({first_line(error)}); the file is "
                             f"damaged: {FIX_DAMAGED}") from error


class RowReader:
    """Random access to the feature rows of one cache, kept open: batches of rows in any order.

    For streaming training batches (`pipeline.finetune.batches`): each `read` touches only the
    rows asked for, so memory holds one batch whatever the cache size. Use it from one thread.
    """

    def __init__(self, path: Path):
        self.path = Path(path)
        self._handle = open_cache_file(self.path)
        self._features = self._handle["features"]

    def read(self, rows: np.ndarray) -> np.ndarray:
        """float32 features of `rows` (any order, repeats allowed), unpooled."""
        rows = np.asarray(rows, dtype=np.int64)
        wanted, back = np.unique(rows, return_inverse=True)
        try:
            block = self._features[wanted]
        except (KeyError, OSError, RuntimeError) as error:
            raise CacheError(f"cannot read features from cache file {self.path} ({first_line(error)}); the file is "
                             f"damaged: {FIX_DAMAGED}") from error
        return block.astype(np.float32, copy=False)[back]

    def close(self) -> None:
        self._handle.close()

    def __enter__(self) -> RowReader:
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def read_open_rows(handle: h5py.File, rows: np.ndarray, pooling: str | None) -> np.ndarray:
    """Features of `rows` of an open cache or committed segment file, as `load_rows` returns them."""
    features = handle["features"]
    wanted = np.unique(rows)
    shape = features.shape[1:]
    if pooling is not None:
        shape = pool_rows(np.zeros((1, *shape), np.float32), pooling).shape[1:]
    out = np.empty((len(wanted),) + tuple(shape), dtype=np.float32)
    for start in range(0, len(wanted), READ_BLOCK_ROWS):
        chunk = wanted[start:start + READ_BLOCK_ROWS]
        span = chunk[-1] - chunk[0] + 1
        # Contiguous reads are fast; fall back to point selection when the rows are sparse.
        block = features[chunk[0]:chunk[-1] + 1][chunk - chunk[0]] if span <= 2 * len(chunk) else features[chunk]
        out[start:start + len(chunk)] = block if pooling is None else pool_rows(block, pooling)
    return out[np.searchsorted(wanted, rows)]


