"""Penalties that keep an optimised image looking like a picture rather than noise.

Both penalties work on float pixels in [0, 255] and are computed on pixels scaled to [0, 1], so
their size does not depend on the pixel range: `total_variation` is the mean absolute difference
between neighbouring pixels (right and down neighbours, all channels), 0 for a flat image and
about 0.33 for uniform noise; `l2_penalty` is the mean squared distance from mid-grey in units of
half the range, 0 for a flat grey image and 1 at the range's ends. Each has a NumPy form (for
measuring a saved PNG) and a TensorFlow form (inside the differentiated loss) that agree.
"""

from __future__ import annotations

import numpy as np

from pipeline.backbones.tf_runtime import import_tensorflow

#: The pixel range the explain commands work in.
PIXEL_MAX = 255.0
#: Mid-grey, the centre `l2_penalty` pulls towards.
PIXEL_MID = PIXEL_MAX / 2


def total_variation(pixels: np.ndarray) -> float:
    """Mean absolute neighbour difference of one image (h, w, 3) or a batch (n, h, w, 3), in [0, 1] units."""
    unit = np.asarray(pixels, dtype=np.float64) / PIXEL_MAX
    down = np.abs(np.diff(unit, axis=-3))
    right = np.abs(np.diff(unit, axis=-2))
    return float((down.mean() + right.mean()) / 2)


def total_variation_tf(pixels):
    """`total_variation` of a batch tensor (n, h, w, 3), per image: a tensor (n,)."""
    tf = import_tensorflow()

    unit = pixels / PIXEL_MAX
    down = tf.abs(unit[:, 1:, :, :] - unit[:, :-1, :, :])
    right = tf.abs(unit[:, :, 1:, :] - unit[:, :, :-1, :])
    return (tf.reduce_mean(down, axis=[1, 2, 3]) + tf.reduce_mean(right, axis=[1, 2, 3])) / 2


def l2_penalty(pixels: np.ndarray) -> float:
    """Mean squared distance from mid-grey, in units of half the range (see the module doc)."""
    centred = (np.asarray(pixels, dtype=np.float64) - PIXEL_MID) / PIXEL_MID
    return float(np.mean(centred ** 2))


def l2_penalty_tf(pixels):
    """`l2_penalty` of a batch tensor (n, h, w, 3), per image: a tensor (n,)."""
    tf = import_tensorflow()

    centred = (pixels - PIXEL_MID) / PIXEL_MID
    return tf.reduce_mean(tf.square(centred), axis=[1, 2, 3])
