"""Random, differentiable changes of the image before every step (transformation robustness).

An image that keeps its class score while it is shifted and rescaled a little cannot rely on
exact pixel positions, so the patterns that grow are larger and more image-like. `Jitter`
describes the draw; `apply_transforms(images, draw, output_size)` resizes a rendered image
(1, h, w, 3) by the drawn scale, rolls it by the drawn shift and crops or pads it to the
classifier's input size; with no jitter and scale 1 it is only the resize to the input size.
The draw happens in NumPy from the run's seeded generator, so a run is reproducible.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from pipeline.backbones.tf_runtime import import_tensorflow
from pipeline.errors import UsageError
from pipeline.explain.regularizers import PIXEL_MID

#: Number of evenly spaced scale factors drawn from (a few distinct shapes keep TensorFlow fast).
SCALE_CHOICES = 5


@dataclass(frozen=True)
class Jitter:
    """Shift by up to `pixels` in each direction and scale by a factor within 1 +- `scale`."""

    pixels: int = 0
    scale: float = 0.0

    def __post_init__(self):
        if self.pixels < 0:
            raise UsageError(f"--jitter must be 0 or more pixels, got {self.pixels}")
        if not 0 <= self.scale < 1:
            raise UsageError(f"--scale-jitter must be in [0, 1), got {self.scale}")

    def draw(self, rng: np.random.Generator) -> tuple[int, int, float]:
        """One (shift down, shift right, scale factor)."""
        dy, dx = (int(v) for v in rng.integers(-self.pixels, self.pixels + 1, 2)) if self.pixels else (0, 0)
        factors = np.linspace(1 - self.scale, 1 + self.scale, SCALE_CHOICES) if self.scale else [1.0]
        return dy, dx, float(rng.choice(factors))


def apply_transforms(images, draw: tuple[int, int, float], output_size: int):
    """`images` (1, h, w, 3) scaled, rolled and cropped or padded to (1, output_size, output_size, 3)."""
    tf = import_tensorflow()
    dy, dx, factor = draw
    scaled = max(1, round(output_size * factor))
    tensor = images if tuple(images.shape[1:3]) == (scaled, scaled) else tf.image.resize(images, [scaled, scaled])
    if not (isinstance(dy, int) and isinstance(dx, int) and dy == dx == 0):  # tensors inside a compiled step
        tensor = tf.roll(tensor, shift=[dy, dx], axis=[1, 2])
    if scaled != output_size:  # pad with mid-grey, not black, when the image shrank
        tensor = tf.image.resize_with_crop_or_pad(tensor - PIXEL_MID, output_size, output_size) + PIXEL_MID
    return tensor
