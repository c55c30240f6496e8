"""Bare forward-pass throughput on in-memory tensors; the benchmark runs it in its own process.

    python benchmarks/forward_worker.py --weights FILE|none --input-size 224 --batch-size 32 \\
        --images 96 --variants float32,bfloat16,float32+xla [--layer block5_pool]

Builds `pipeline.backbones.forward.FeatureExtractor` once per precision (the exact code `extract` runs),
then feeds batches of random uint8 pixels that are already in memory, so nothing but the backbone
is measured. Variants are interleaved batch by batch, so a machine shared with other work slows
them all alike and their ratio stays meaningful. The first batch of each variant is a warm-up,
timed separately (for `+xla` it includes compilation). Prints one JSON object on stdout.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import numpy as np

from benchmarks.common import BACKBONE_NAME, batch_count, preload

XLA_SUFFIX = "+xla"


def build_variants(names, weights_request, size, layer, cache_dir):
    """name -> (callable on uint8 batches, build seconds)."""
    from pipeline.backbones.forward import FeatureExtractor
    from pipeline.backbones.registry import get_backbone
    from pipeline.backbones.weights import resolve_weights

    spec = get_backbone(BACKBONE_NAME)
    weights = resolve_weights(spec, weights_request, cache_dir, size)
    built = {}
    for name in names:
        precision = name.removesuffix(XLA_SUFFIX)
        started = time.perf_counter()
        extractor = FeatureExtractor(spec, layer or spec.default_layer, size, weights, precision, "none")
        run = _xla(extractor, spec, size) if name.endswith(XLA_SUFFIX) else extractor
        built[name] = (run, time.perf_counter() - started)
    return built


def _xla(extractor, spec, size):
    """The extractor's forward pass compiled with XLA (`jit_compile=True`)."""
    import tensorflow as tf

    from pipeline.backbones.models import preprocess_function

    preprocess, model = preprocess_function(spec), extractor.model

    def forward(pixels):
        return tf.cast(model(preprocess(tf.cast(pixels, tf.float32)), training=False), tf.float32)

    compiled = tf.function(forward, input_signature=[tf.TensorSpec((None, size, size, 3), tf.uint8)],
                           jit_compile=True)
    return lambda pixels: compiled(pixels).numpy()


def measure(built: dict, pixels: np.ndarray, rounds: int) -> dict:
    """Warm each variant up on one batch, then time `rounds` interleaved batches per variant."""
    results = {}
    for name, (run, build_seconds) in built.items():
        started = time.perf_counter()
        run(pixels)
        results[name] = {"build_seconds": round(build_seconds, 3),
                         "first_batch_seconds": round(time.perf_counter() - started, 3)}
    spent = dict.fromkeys(built, 0.0)
    for _ in range(rounds):
        for name, (run, _) in built.items():
            started = time.perf_counter()
            run(pixels)
            spent[name] += time.perf_counter() - started
    for name, seconds in spent.items():
        images = rounds * len(pixels)
        results[name].update(images=images, seconds=round(seconds, 3), images_per_second=round(images / seconds, 3))
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--weights", required=True)
    parser.add_argument("--input-size", type=int, required=True)
    parser.add_argument("--batch-size", type=int, required=True)
    parser.add_argument("--images", type=int, required=True, help="images timed per variant (rounded up to batches)")
    parser.add_argument("--variants", required=True, help="comma-separated: float32, bfloat16, float16, float32+xla")
    parser.add_argument("--layer", default=None)
    parser.add_argument("--cache-dir", type=Path, default=Path("cache"))
    args = parser.parse_args()

    started = time.perf_counter()
    preload("tensorflow")  # timed: the import is part of every process that runs a backbone

    import_seconds = time.perf_counter() - started
    built = build_variants(args.variants.split(","), args.weights, args.input_size, args.layer, args.cache_dir)
    pixels = np.random.default_rng(0).integers(0, 256, (args.batch_size, args.input_size, args.input_size, 3),
                                               dtype=np.uint8)
    rounds = batch_count(args.images, args.batch_size)
    results = measure(built, pixels, rounds)
    print(json.dumps({"tensorflow_import_seconds": round(import_seconds, 3), "batch_size": args.batch_size,
                      "input_size": args.input_size, "variants": results}))


if __name__ == "__main__":
    main()
