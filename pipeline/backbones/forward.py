"""The forward pass: uint8 pixels in, (pooled) float32 features out, in one compiled function.

Preprocessing runs inside the TensorFlow graph on a fresh tensor, so the family's
`preprocess_input` can never mutate a caller's array, and batches travel as uint8 (4x smaller
than float). The backbone runs with `training=False`, so BatchNorm layers use their statistics.

Devices: on the CPU or one GPU, TensorFlow places the model itself (and `pipeline.backbones.precision`'s
`auto` gives float16 on tensor-core GPUs). When two or more GPUs are visible, the model is
replicated on all of them with `tf.distribute.MirroredStrategy` and every batch is split evenly
across the replicas, so `--batch-size` is the global batch. That multi-GPU path follows the
TensorFlow documentation but has not run on real multi-GPU hardware (the project's CI and
benchmark machines have no GPU).

XLA (`jit_compile`) is deliberately off: at 224 px it gained 5% on an AVX2 benchmark CPU and lost
19% on an AVX-512 one, and it compiles again for every batch shape (see docs/benchmarks.md).
"""

from __future__ import annotations

import contextlib
import time

import numpy as np

from pipeline.backbones.models import build_feature_model, preprocess_function
from pipeline.backbones.registry import BackboneSpec
from pipeline.backbones.tf_runtime import import_keras, import_tensorflow
from pipeline.backbones.weights import RANDOM_WEIGHTS_SEED, ResolvedWeights, fingerprint_model
from pipeline.errors import UsageError

#: With this many visible GPUs or more, the backbone is replicated across them.
MIN_GPUS_TO_MIRROR = 2


class FeatureExtractor:
    """A frozen backbone cut at `layer`, with its preprocessing and optional spatial pooling.

    Attributes set on construction: `model`, `fingerprint` (of the loaded weights, see
    `pipeline.backbones.weights.fingerprint_model`), `feature_shape` (per image, after pooling),
    `strategy` (a MirroredStrategy over several GPUs, or None) and `build_seconds` (how long
    construction took, importing TensorFlow included).
    """

    def __init__(self, spec: BackboneSpec, layer: str, input_size: int, weights: ResolvedWeights,
                 precision: str, pooling: str):
        started = time.perf_counter()
        keras = import_keras()
        tf = import_tensorflow()

        self.strategy = multi_gpu_strategy()
        with self.strategy.scope() if self.strategy is not None else contextlib.nullcontext():
            if weights.is_random:
                keras.utils.set_random_seed(RANDOM_WEIGHTS_SEED)
            self.model = build_feature_model(spec, layer, input_size, weights.path, precision)
        self.fingerprint = fingerprint_model(self.model)
        output_rank = len(self.model.output.shape)
        if pooling != "none" and output_rank != 4:
            raise UsageError(f"layer {layer} of {spec.name} gives {output_rank - 1}-D features; spatial pooling "
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
        if self.strategy is not None:  # the documented pattern: strategy.run inside a tf.function
            strategy = self.strategy
            self._replicated = tf.function(lambda values: strategy.run(forward, args=(values,)), reduce_retracing=True)
        probe = self(np.zeros((1, input_size, input_size, 3), dtype=np.uint8))
        self.feature_shape = tuple(int(d) for d in probe.shape[1:])
        self.build_seconds = time.perf_counter() - started

    def __call__(self, pixels: np.ndarray) -> np.ndarray:
        """Features of a (n, size, size, 3) uint8 batch as a float32 array."""
        if self.strategy is None:
            return self._forward(pixels).numpy()
        return self._mirrored_forward(pixels)

    def _mirrored_forward(self, pixels: np.ndarray) -> np.ndarray:
        """Split the batch evenly across the GPUs, run the replicas, concatenate in order."""
        tf = import_tensorflow()

        parts = np.array_split(pixels, self.strategy.num_replicas_in_sync)
        # Called once per replica under that replica's device scope, so each part lands on its GPU.
        values = self.strategy.experimental_distribute_values_from_function(
            lambda context: tf.constant(parts[context.replica_id_in_sync_group]))
        results = self._replicated(values)
        return np.concatenate([np.asarray(part) for part in self.strategy.experimental_local_results(results)])


def multi_gpu_strategy():
    """A MirroredStrategy over every visible GPU when there are `MIN_GPUS_TO_MIRROR` or more, else None."""
    tf = import_tensorflow()

    gpus = tf.config.list_logical_devices("GPU")
    if len(gpus) < MIN_GPUS_TO_MIRROR:
        return None
    return tf.distribute.MirroredStrategy([gpu.name for gpu in gpus])
