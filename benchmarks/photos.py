"""Photo-sized JPEG datasets for the benchmark.

Decoding cost matters for the input pipeline, so the images have the size and JPEG weight of the
photos in the classic datasets (500x375, like most Kaggle cats-vs-dogs and dogImages photos, at
quality 90: 50-80 KB each). Content: the procedural shapes of `pipeline.data.synthetic`, stretched to
photo size, plus fine sensor-like noise so the JPEG is as costly to decode as a real photo.

Each image is fully determined by (seed, index), so datasets are reproducible and can be written
by several processes at once.
"""

from __future__ import annotations

import functools
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import numpy as np
from PIL import Image

from pipeline.data.synthetic import SHAPES, render_shape

PHOTO_SIZE = (500, 375)  # width, height
JPEG_QUALITY = 90
#: The shape is drawn at this size, then stretched to photo size (drawing at full size is 10x slower).
_DRAW_SIZE = 160
_NOISE_STD = 6.0
#: Noise comes from windows of one pre-drawn tile (drawing fresh Gaussian noise per photo costs more
#: than everything else together); the tile is larger than a photo so windows differ.
_NOISE_TILE = 1024


def photo_path(root: Path, index: int, classes: int) -> Path:
    """Where image `index` of a dataset with `classes` classes lives: `<root>/<shape>/<shape>_<index>.jpg`."""
    shape = SHAPES[index % classes]
    return Path(root) / shape / f"{shape}_{index:05d}.jpg"


def render_photo(index: int, classes: int, seed: int, size=PHOTO_SIZE) -> Image.Image:
    """Image `index` of the dataset `seed`: a shape of class `index % classes` at photo size."""
    rng = np.random.default_rng([seed, index])
    small = render_shape(SHAPES[index % classes], _DRAW_SIZE, rng)
    width, height = size
    pixels = np.asarray(small.resize((width, height), Image.BILINEAR), dtype=np.int16)
    top, left = rng.integers(0, _NOISE_TILE - height), rng.integers(0, _NOISE_TILE - width)
    pixels = pixels + _noise_tile(seed)[top:top + height, left:left + width]
    return Image.fromarray(np.clip(pixels, 0, 255).astype(np.uint8))


@functools.lru_cache(maxsize=1)
def _noise_tile(seed: int) -> np.ndarray:
    noise = np.random.default_rng(seed).normal(0.0, _NOISE_STD, (_NOISE_TILE, _NOISE_TILE, 3))
    return np.rint(noise).astype(np.int16)


def _write_one(job) -> int:
    root, index, classes, seed, size = job
    path = photo_path(root, index, classes)
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        temp = path.with_name(path.name + ".tmp")
        render_photo(index, classes, seed, size).save(temp, "JPEG", quality=JPEG_QUALITY)
        temp.rename(path)
    return index


def write_photos(root: Path, indexes: range, classes: int, seed: int = 0, size=PHOTO_SIZE,
                 workers: int | None = None) -> list[Path]:
    """Write images `indexes` under `root` (files that exist are kept) and return their paths."""
    if not 2 <= classes <= len(SHAPES):
        raise ValueError(f"classes must be between 2 and {len(SHAPES)}, got {classes}")
    jobs = [(Path(root), index, classes, seed, tuple(size)) for index in indexes]
    with ProcessPoolExecutor(max_workers=workers) as pool:
        list(pool.map(_write_one, jobs, chunksize=64))
    return [photo_path(root, index, classes) for index in indexes]


def link_photos(paths: list[Path], source_root: Path, dest_root: Path) -> None:
    """Hard-link `paths` (inside `source_root`) into `dest_root` with the same relative layout."""
    for path in paths:
        target = Path(dest_root) / Path(path).relative_to(source_root)
        target.parent.mkdir(parents=True, exist_ok=True)
        if not target.exists():
            target.hardlink_to(path)
