"""Augmented views of an image: seeded flips, random resized crops and small colour jitter.

`extract --views K` caches K augmented views of every image next to its plain rendering, so
augmentation no longer means dropping the cache. View 0 is always the plain image, decoded and
resized exactly as a cache without views does it; views 1..K are drawn by `render_view` from a
random generator seeded by (`ViewSpec.seed`, the image's sha256, the view index) alone, so a
view's pixels never depend on which images or views a run computes, in which order or in which
thread: a resumed or incremental extraction renders every view exactly as a clean one.

A view, in this order:
1. a random resized crop: a box of `crop_area` of the image's area (uniform) whose aspect ratio
   is the image's own times a factor drawn log-uniformly from `crop_aspect`, placed uniformly;
   factors that do not fit are clipped to the image; the box is then brought to the input size
   by the cache's resize policy (`pipeline.data.images.fit_to_size`);
2. a horizontal flip with probability `flip_probability`;
3. brightness, contrast and saturation, each scaled by a factor uniform in [1 - j, 1 + j]
   (`brightness`, `contrast`, `saturation`; Pillow's `ImageEnhance`, in that order).

Rows of a cache are addressed by (image sha256, view index): `view_address` writes the pair as
one text, which is the bare sha256 for view 0 - so a cache without views addresses its rows
exactly as before. Every parameter, and `VIEWS_VERSION` (bumped whenever this rendering changes),
is recorded in the cache and is part of its key (`pipeline.cache.key.FeatureSpec.views`).
"""

from __future__ import annotations

import hashlib
import math
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
from PIL import Image, ImageEnhance

from pipeline.data.images import DEFAULT_MAX_PIXELS, ResizeSpec, decode_image, fit_to_size, open_rgb
from pipeline.errors import UsageError

#: Version of the view rendering; part of the key, so changing `render_view` misses old views.
VIEWS_VERSION = 1
#: Separates the sha256 from the view index in a row address ("<sha256>#<view>"); never in a sha256.
VIEW_MARK = "#"
DEFAULT_VIEW_SEED = 0
_SEED_BYTES = 8


@dataclass(frozen=True)
class ViewSpec:
    """K = `count` augmented views per image on top of view 0 (the plain image), and how they are drawn."""

    count: int
    seed: int = DEFAULT_VIEW_SEED
    flip_probability: float = 0.5
    crop_area: tuple[float, float] = (0.5, 1.0)
    crop_aspect: tuple[float, float] = (3 / 4, 4 / 3)
    brightness: float = 0.2
    contrast: float = 0.2
    saturation: float = 0.2
    version: int = VIEWS_VERSION

    def __post_init__(self):
        if self.count < 1:
            raise UsageError(f"--views needs at least 1 augmented view, got {self.count} (0 means no views)")
        low, high = self.crop_area
        if not 0 < low <= high <= 1:
            raise UsageError(f"crop area must satisfy 0 < low <= high <= 1, got {self.crop_area}")
        if not 0 < self.crop_aspect[0] <= self.crop_aspect[1]:
            raise UsageError(f"crop aspect must satisfy 0 < low <= high, got {self.crop_aspect}")
        for name in ("brightness", "contrast", "saturation"):
            if not 0 <= getattr(self, name) < 1:
                raise UsageError(f"{name} jitter must be in [0, 1), got {getattr(self, name)}")

    @property
    def per_image(self) -> int:
        """Rows per image: view 0 plus the `count` augmented views."""
        return self.count + 1

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, fields: dict) -> ViewSpec:
        values = dict(fields)
        for name in ("crop_area", "crop_aspect"):
            values[name] = tuple(values[name])
        return cls(**values)

    def describe(self) -> str:
        """One line for summaries and reports."""
        return (f"{self.count} augmented views per image + the plain image (seed {self.seed}: flip p="
                f"{self.flip_probability:g}, crop {self.crop_area[0]:g}-{self.crop_area[1]:g} of the area, "
                f"jitter brightness/contrast/saturation +-{self.brightness:g}/{self.contrast:g}/{self.saturation:g})")


def view_address(sha256: str, view: int) -> str:
    """The row address of `view` of the image with `sha256` (the bare sha256 for view 0)."""
    return sha256 if view == 0 else f"{sha256}{VIEW_MARK}{view}"


def parse_view_address(address: str) -> tuple[str, int]:
    """(sha256, view index) of a row address."""
    sha, mark, view = address.partition(VIEW_MARK)
    return sha, int(view) if mark else 0


def addresses_of(sha256: str, views: ViewSpec | None) -> list[str]:
    """Every row address of one image: view 0, then its augmented views."""
    return [view_address(sha256, view) for view in range(views.per_image if views else 1)]


def view_generator(views: ViewSpec, sha256: str, view: int) -> np.random.Generator:
    """The random generator of one view: a function of (seed, sha256, view) only."""
    digest = hashlib.blake2b(f"{views.seed}|{sha256}|{view}".encode(), digest_size=_SEED_BYTES).digest()
    return np.random.default_rng(int.from_bytes(digest, "little"))


def decode_view(path: Path | str, resize: ResizeSpec, views: ViewSpec | None, address: str,
                max_pixels: int | None = DEFAULT_MAX_PIXELS) -> np.ndarray:
    """(height, width, 3) uint8 pixels of the view `address` names (view 0: exactly `decode_image`)."""
    sha, view = parse_view_address(address)
    if view == 0 or views is None:
        return decode_image(path, resize, max_pixels=max_pixels)
    # The smallest crop must still be decoded at the input size or more.
    enlarge = 1 / math.sqrt(views.crop_area[0])
    draft = (math.ceil(resize.width * enlarge), math.ceil(resize.height * enlarge))
    image = open_rgb(path, max_pixels=max_pixels, draft_size=draft)
    return np.asarray(render_view(image, resize, views, view_generator(views, sha, view)), dtype=np.uint8)


def render_view(image: Image.Image, resize: ResizeSpec, views: ViewSpec, rng: np.random.Generator) -> Image.Image:
    """One augmented view of an RGB image (see the module doc for the steps)."""
    width, height = image.size
    area = rng.uniform(*views.crop_area)
    aspect = math.exp(rng.uniform(math.log(views.crop_aspect[0]), math.log(views.crop_aspect[1])))
    crop_w = min(width, max(1, round(width * math.sqrt(area * aspect))))
    crop_h = min(height, max(1, round(height * math.sqrt(area / aspect))))
    left = int(rng.integers(0, width - crop_w + 1))
    top = int(rng.integers(0, height - crop_h + 1))
    flip = rng.uniform() < views.flip_probability
    factors = [rng.uniform(1 - jitter, 1 + jitter) for jitter in (views.brightness, views.contrast, views.saturation)]
    out = fit_to_size(image.crop((left, top, left + crop_w, top + crop_h)), resize)
    if flip:
        out = out.transpose(Image.Transpose.FLIP_LEFT_RIGHT)
    for enhancer, factor in zip((ImageEnhance.Brightness, ImageEnhance.Contrast, ImageEnhance.Color), factors):
        out = enhancer(out).enhance(factor)
    return out
