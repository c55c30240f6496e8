"""What the optimiser changes: the pixels themselves, or a decorrelated Fourier spectrum of them.

Every parameterisation is an image of one size (h, w) with `render()` -> a tensor (1, h, w, 3) of
float pixels in [0, 255] that is differentiable in `variables`, `after_step()` (keeps the
variables valid), `pixels()` -> the current image as a NumPy (h, w, 3) float array, and two ways
to start: `from_noise(size, rng)` and `from_pixels(pixels)` (a given image, exactly). Starting
from pixels is also how multi-scale optimisation moves to the next, larger size.

- `pixels`: the variable is the image; it is clipped to [0, 255] after every step.
- `fft`: the variable is the 2-D Fourier spectrum of each channel in a decorrelated colour space,
  scaled by 1 / frequency so that every frequency starts with an equal share of the change (the
  approach of Olah et al., "Feature Visualization", Distill 2017); a sigmoid maps it to [0, 255],
  so no clipping is needed. It suppresses the high-frequency patterns a pixel parameterisation
  grows first, which is what makes ideal images of deeper and smaller networks readable.
"""

from __future__ import annotations

import numpy as np

from pipeline.backbones.tf_runtime import import_keras, import_tensorflow
from pipeline.errors import UsageError
from pipeline.explain.regularizers import PIXEL_MAX, PIXEL_MID

PARAMETERIZATIONS = ("pixels", "fft")
#: Half-width of the uniform noise a pixel image starts from, around mid-grey (pixel units).
PIXEL_NOISE_AMPLITUDE = 20.0
#: Standard deviation of the random spectrum a Fourier image starts from (a smooth, near-grey image).
FOURIER_NOISE_STD = 0.01
#: Spectrum amplitudes are divided by frequency ** this (1: the 1/f falloff of natural images).
FOURIER_DECAY_POWER = 1.0
#: Divides the inverse transform so that a unit spectrum gives values of a sigmoid's working range.
FOURIER_SCALE_DOWN = 4.0
#: The square root of ImageNet's RGB colour covariance (the decorrelated colour basis of Lucid).
COLOUR_CORRELATION_SQRT = np.array([[0.26, 0.09, 0.02], [0.27, 0.00, -0.05], [0.27, -0.09, 0.03]])
#: Keeps `from_pixels` finite at pure black or white (the sigmoid reaches 0 and 1 only in the limit).
SIGMOID_MARGIN = 1e-3


class PixelImage:
    """The pixels as the variable (see the module doc)."""

    def __init__(self, pixels: np.ndarray):
        self.size = tuple(np.shape(pixels)[:2])
        self.image = import_keras().Variable(np.asarray(pixels, dtype=np.float32)[None], name="pixels")
        self.variables = [self.image]

    @classmethod
    def from_noise(cls, size: tuple[int, int], rng: np.random.Generator) -> PixelImage:
        """Mid-grey plus uniform noise of `PIXEL_NOISE_AMPLITUDE`."""
        return cls(PIXEL_MID + rng.uniform(-PIXEL_NOISE_AMPLITUDE, PIXEL_NOISE_AMPLITUDE, (*size, 3)))

    @classmethod
    def from_pixels(cls, pixels: np.ndarray) -> PixelImage:
        """Exactly `pixels` (h, w, 3) in [0, 255]."""
        return cls(np.clip(pixels, 0, PIXEL_MAX))

    def render(self):
        """(1, h, w, 3) float32 pixels in [0, 255]."""
        return self.image

    def after_step(self) -> None:
        """Clip back into [0, 255]."""
        tf = import_tensorflow()
        self.image.assign(tf.clip_by_value(self.image, 0.0, PIXEL_MAX))

    def pixels(self) -> np.ndarray:
        """The image (h, w, 3) as float64."""
        return np.asarray(self.render()[0], dtype=np.float64)


class FourierImage:
    """A decorrelated, 1/f-scaled Fourier spectrum as the variable (see the module doc)."""

    def __init__(self, spectrum: np.ndarray, size: tuple[int, int]):
        self.size = tuple(size)
        self.scale = _frequency_scale(self.size).astype(np.float32)
        # (2, 3, h, w//2+1): real and imaginary parts of each colour channel's spectrum
        self.spectrum = import_keras().Variable(np.asarray(spectrum, dtype=np.float32), name="spectrum")
        self.variables = [self.spectrum]

    @classmethod
    def from_noise(cls, size: tuple[int, int], rng: np.random.Generator) -> FourierImage:
        """A random spectrum of `FOURIER_NOISE_STD`: a smooth image close to mid-grey."""
        height, width = size
        return cls(rng.normal(0.0, FOURIER_NOISE_STD, (2, 3, height, width // 2 + 1)), size)

    @classmethod
    def from_pixels(cls, pixels: np.ndarray) -> FourierImage:
        """The spectrum whose rendering is `pixels` (h, w, 3), up to `SIGMOID_MARGIN` at the range's ends."""
        height, width = np.shape(pixels)[:2]
        unit = np.clip(np.asarray(pixels, dtype=np.float64) / PIXEL_MAX, SIGMOID_MARGIN, 1 - SIGMOID_MARGIN)
        logits = np.log(unit / (1 - unit)).reshape(-1, 3)
        decorrelated = (logits @ np.linalg.inv(_colour_matrix().T)).reshape(height, width, 3).transpose(2, 0, 1)
        spectrum = np.fft.rfft2(decorrelated * FOURIER_SCALE_DOWN, norm="ortho") / _frequency_scale((height, width))
        return cls(np.stack([spectrum.real, spectrum.imag]), (height, width))

    def render(self):
        """(1, h, w, 3) float32 pixels in (0, 255)."""
        tf = import_tensorflow()
        height, width = self.size
        spectrum = tf.complex(self.spectrum[0] * self.scale, self.spectrum[1] * self.scale)
        # irfft2d divides by h * w; the orthonormal transform (unit spectrum -> unit pixels) divides by sqrt(h * w)
        channels = tf.signal.irfft2d(spectrum, fft_length=[height, width]) * (_orthonormal(self.size)
                                                                              / FOURIER_SCALE_DOWN)  # (3, h, w)
        flat = tf.reshape(tf.transpose(channels, [1, 2, 0]), [-1, 3])
        coloured = tf.matmul(flat, tf.constant(_colour_matrix().T, dtype=tf.float32))
        return tf.reshape(tf.sigmoid(coloured), [1, height, width, 3]) * PIXEL_MAX

    def after_step(self) -> None:
        """Nothing: the sigmoid keeps every spectrum inside the range."""

    def pixels(self) -> np.ndarray:
        """The image (h, w, 3) as float64."""
        return np.asarray(self.render()[0], dtype=np.float64)


def make_image(param: str, size: tuple[int, int], rng: np.random.Generator, start: np.ndarray | None = None):
    """A `param` image of `size`, from `start` pixels when given, else from noise drawn from `rng`."""
    kinds = {"pixels": PixelImage, "fft": FourierImage}
    if param not in kinds:
        raise UsageError(f"unknown parameterisation {param!r}; expected one of: {', '.join(PARAMETERIZATIONS)}")
    kind = kinds[param]
    return kind.from_noise(size, rng) if start is None else kind.from_pixels(start)


def _frequency_scale(size: tuple[int, int]) -> np.ndarray:
    """1 / frequency ** `FOURIER_DECAY_POWER` on the rfft2 grid (h, w//2+1); the zero frequency as the lowest."""
    height, width = size
    fy = np.fft.fftfreq(height)[:, None]
    fx = np.fft.rfftfreq(width)[None, :]
    frequencies = np.sqrt(fy ** 2 + fx ** 2)
    return 1.0 / np.maximum(frequencies, 1.0 / max(height, width)) ** FOURIER_DECAY_POWER


def _orthonormal(size: tuple[int, int]) -> float:
    """sqrt(h * w): turns TensorFlow's 1 / (h * w) inverse transform into the orthonormal one."""
    return float(np.sqrt(size[0] * size[1]))


def _colour_matrix() -> np.ndarray:
    """`COLOUR_CORRELATION_SQRT` with its largest column norm scaled to 1."""
    norm = np.max(np.linalg.norm(COLOUR_CORRELATION_SQRT, axis=0))
    return COLOUR_CORRELATION_SQRT / norm
