"""A 64-bit perceptual hash (pHash) of an image's pixels, and of its mirror image; numpy only.

The image is decoded as extraction decodes it (`images.open_rgb`: orientation, colour conversions;
JPEGs decoded at reduced size, `DRAFT_SIDE`), turned grey, resized to `HASH_SIDE` x `HASH_SIDE`,
and the 8 x 8 lowest frequencies of its 2-D DCT-II are compared with their median: 64 bits. A
mirrored image has the same low frequencies with the odd horizontal ones negated, so the mirror's
hash comes from the same transform. Heavy resizing and re-compression barely move these bits while
the CNN features of such copies drift (docs/audit.md has the measurements); crops move them a lot.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image

from pipeline.data.images import ImageDecodeError, open_rgb

HASH_SIDE = 32
#: Lowest DCT frequencies kept per axis: LOW_FREQUENCIES ** 2 = 64 bits.
LOW_FREQUENCIES = 8
HASH_BITS = LOW_FREQUENCIES ** 2
#: JPEGs are decoded at a power-of-two reduction with both sides at least this large (far faster, same hash
#: within a bit or two: the hash only sees 32 x 32 grey pixels).
DRAFT_SIDE = 4 * HASH_SIDE


def _dct_matrix(n: int) -> np.ndarray:
    k, i = np.arange(n)[:, None], np.arange(n)[None, :]
    return np.cos(np.pi * (2 * i + 1) * k / (2 * n))


_DCT = _dct_matrix(HASH_SIDE)
_MIRROR_SIGNS = np.where(np.arange(LOW_FREQUENCIES) % 2, -1.0, 1.0)[None, :]


@dataclass(frozen=True)
class PixelHashes:
    """Per image: `bits` (n, 64) bool, `mirrored` (n, 64) bool, `ok` (n,) bool (False: not hashed, e.g. the
    file is gone or changed since extraction; its bits are meaningless and never match)."""

    bits: np.ndarray
    mirrored: np.ndarray
    ok: np.ndarray

    @property
    def hashed(self) -> int:
        return int(self.ok.sum())


def image_hash(image: Image.Image) -> tuple[np.ndarray, np.ndarray]:
    """(hash, hash of the mirrored image) of an RGB image: 64 booleans each."""
    grey = np.asarray(image.convert("L").resize((HASH_SIDE, HASH_SIDE), Image.BILINEAR), dtype=np.float64)
    low = (_DCT @ grey @ _DCT.T)[:LOW_FREQUENCIES, :LOW_FREQUENCIES]
    mirrored = low * _MIRROR_SIGNS
    return (low > np.median(low)).ravel(), (mirrored > np.median(mirrored)).ravel()


def hash_files(paths: Sequence[Path | None], workers: int | None = None) -> PixelHashes:
    """The hashes of the image files at `paths`, decoded on `workers` threads (default: CPU cores); a None
    path, or a file that no longer decodes, is not hashed."""
    bits = np.zeros((len(paths), HASH_BITS), bool)
    mirrored = np.zeros((len(paths), HASH_BITS), bool)
    ok = np.zeros(len(paths), bool)
    with ThreadPoolExecutor(max_workers=workers or os.cpu_count() or 1) as pool:
        for i, hashed in enumerate(pool.map(_file_hash, paths)):
            if hashed is not None:
                (bits[i], mirrored[i]), ok[i] = hashed, True
    return PixelHashes(bits, mirrored, ok)


def _file_hash(path: Path | None) -> tuple[np.ndarray, np.ndarray] | None:
    if path is None:
        return None
    try:
        return image_hash(open_rgb(path, draft_size=(DRAFT_SIDE, DRAFT_SIDE)))
    except (ImageDecodeError, OSError):
        return None
