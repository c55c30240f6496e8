"""The forward pass: uint8 pixels in, (pooled) float32 features out, in one compiled function.

Preprocessing runs inside the TensorFlow graph on a fresh tensor, so the family's
`preprocess_input` can never mutate a caller's array, and batches travel as uint8 (4x smaller
than float). The backbone runs with `training=False`, so BatchNorm layers use their statistics.
"""

from __future__ import annotations

import numpy as np

from pipeline.backbones import BackboneSpec, build_feature_model, preprocess_function
from pipeline.weights import RANDOM_WEIGHTS_SEED, ResolvedWeights, fingerprint_model


class FeatureExtractor:
    """A frozen backbone cut at `layer`, with its preprocessing and optional spatial pooling.

    Attributes set on construction: `model`, `fingerprint` (of the loaded weights, see
    `pipeline.weights.fingerprint_model`) and `feature_shape` (per image, after pooling).
    """

    def __init__(self, spec: BackboneSpec, layer: str, input_size: int, weights: ResolvedWeights,
                 precision: str, pooling: str):
        import keras
        import tensorflow as tf

        if weights.is_random:
            keras.utils.set_random_seed(RANDOM_WEIGHTS_SEED)
        self.model = build_feature_model(spec, layer, input_size, weights.path, precision)
        self.fingerprint = fingerprint_model(self.model)
        output_rank = len(self.model.output.shape)
        if pooling != "none" and output_rank != 4:
            raise ValueError(f"layer {layer} of {spec.name} gives {output_rank - 1}-D features; spatial pooling "
                             "needs a 3-D (height, width, channels) output: use --pool none")
        preprocess = preprocess_function(spec)
        model = self.model

        def forward(pixels):
            features = model(preprocess(tf.cast(pixels, tf.float32)), training=False)
            features = tf.cast(features, tf.float32)
            if pooling == "avg":
                features = tf.reduce_mean(features, axis=[1, 2])
            elif pooling == "max":
                features = tf.reduce_max(features, axis=[1, 2])
            return features

        signature = [tf.TensorSpec((None, input_size, input_size, 3), tf.uint8)]
        self._forward = tf.function(forward, input_signature=signature)
        probe = self._forward(np.zeros((1, input_size, input_size, 3), dtype=np.uint8))
        self.feature_shape = tuple(int(d) for d in probe.shape[1:])

    def __call__(self, pixels: np.ndarray) -> np.ndarray:
        """Features of a (n, size, size, 3) uint8 batch as a float32 array."""
        return self._forward(pixels).numpy()
