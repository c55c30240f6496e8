"""A small procedural image dataset: shapes on textured backgrounds, for demos, tests and benchmarks.

Each class is a shape - circle, square, triangle, star, ring, cross - drawn in a random colour,
size, position and rotation on a random two-colour gradient with pixel noise, then saved as JPEG.
The dataset is fully determined by its seed, needs no download, and is easy enough that genuine
ImageNet features separate it almost perfectly while random-weight features do clearly worse.

Layout written: `<root>/<class>/<class>_<n>.jpg` (the generic layout; splits are carved by hash).
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw

from pipeline.errors import UsageError

SHAPES = ("circle", "square", "triangle", "star", "ring", "cross")
DEFAULT_IMAGE_SIZE = 160
JPEG_QUALITY = 90
_NOISE_STD = 12.0
_MIN_SHAPE_FRACTION, _MAX_SHAPE_FRACTION = 0.25, 0.6


def write_shapes_dataset(root: Path, classes: int = 4, per_class: int = 30, size: int = DEFAULT_IMAGE_SIZE,
                         seed: int = 0) -> Path:
    """Write `per_class` JPEGs for each of the first `classes` shapes under `root`; returns `root`."""
    if not 2 <= classes <= len(SHAPES):
        raise UsageError(f"classes must be between 2 and {len(SHAPES)}, got {classes}")
    rng = np.random.default_rng(seed)
    root = Path(root)
    for shape in SHAPES[:classes]:
        folder = root / shape
        folder.mkdir(parents=True, exist_ok=True)
        for index in range(per_class):
            render_shape(shape, size, rng).save(folder / f"{shape}_{index:04d}.jpg", quality=JPEG_QUALITY)
    return root


def render_shape(shape: str, size: int, rng: np.random.Generator) -> Image.Image:
    """One RGB image of `shape` on a noisy gradient background."""
    start, end = rng.integers(0, 256, 3), rng.integers(0, 256, 3)
    ramp = np.linspace(0.0, 1.0, size)[:, None, None]
    background = start * (1 - ramp) + end * ramp
    background = np.broadcast_to(background, (size, size, 3)) + rng.normal(0, _NOISE_STD, (size, size, 3))
    image = Image.fromarray(np.clip(background, 0, 255).astype(np.uint8))
    draw = ImageDraw.Draw(image)
    radius = size * rng.uniform(_MIN_SHAPE_FRACTION, _MAX_SHAPE_FRACTION) / 2
    cx, cy = rng.uniform(radius, size - radius, 2)
    angle = rng.uniform(0, 2 * math.pi)
    colour = tuple(int(c) for c in rng.integers(0, 256, 3))
    width = max(2, int(radius / 4))
    if shape == "circle":
        draw.ellipse((cx - radius, cy - radius, cx + radius, cy + radius), fill=colour)
    elif shape == "ring":
        draw.ellipse((cx - radius, cy - radius, cx + radius, cy + radius), outline=colour, width=width)
    elif shape == "square":
        draw.polygon(_polygon(cx, cy, radius, 4, angle), fill=colour)
    elif shape == "triangle":
        draw.polygon(_polygon(cx, cy, radius, 3, angle), fill=colour)
    elif shape == "star":
        outer = _polygon(cx, cy, radius, 5, angle)
        inner = _polygon(cx, cy, radius * 0.4, 5, angle + math.pi / 5)
        draw.polygon([p for pair in zip(outer, inner) for p in pair], fill=colour)
    elif shape == "cross":
        for theta in (angle, angle + math.pi / 2):
            dx, dy = radius * math.cos(theta), radius * math.sin(theta)
            draw.line((cx - dx, cy - dy, cx + dx, cy + dy), fill=colour, width=width * 2)
    else:
        raise UsageError(f"unknown shape {shape!r}; choose one of {', '.join(SHAPES)}")
    return image


def _polygon(cx: float, cy: float, radius: float, corners: int, angle: float) -> list[tuple[float, float]]:
    return [(cx + radius * math.cos(angle + 2 * math.pi * k / corners),
             cy + radius * math.sin(angle + 2 * math.pi * k / corners)) for k in range(corners)]
