"""End-to-end extraction against the bare forward pass, alternated in one process (target 1).

    python benchmarks/pipeline_worker.py CHUNK_DIR... --cache-root DIR --weights FILE|none \\
        --input-size 224 --batch-size 32 --bare-images 64

On a machine shared with other work, two measurements taken minutes apart see different loads.
So this worker alternates them: bare forward pass on in-memory tensors (`bare-images` of them),
then `run_extract` - the real pipeline: hashing, parallel decoding, the backbone, the background
segment writer and the final cache - on the next chunk of JPEGs (each chunk into its own cache
folder, so every image is extracted), then bare again, and so on, ending with a bare round.
TensorFlow is imported once, up front; each `run_extract` still builds its own backbone, and
that build (reported as `startup_seconds`) is excluded, as it is from the bare side. Each chunk's
own fixed costs (weights check, index, lock, writing its cache) stay in: a whole-dataset run pays
them once, so this errs against the pipeline. Prints one JSON object.
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


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("chunks", nargs="+", type=Path)
    parser.add_argument("--cache-root", type=Path, required=True)
    parser.add_argument("--weights", required=True)
    parser.add_argument("--input-size", type=int, required=True)
    parser.add_argument("--batch-size", type=int, required=True)
    parser.add_argument("--bare-images", type=int, required=True)
    args = parser.parse_args()

    preload("tensorflow")  # once, up front: each run_extract below then only builds its backbone

    from pipeline.backbones.forward import FeatureExtractor
    from pipeline.backbones.registry import get_backbone
    from pipeline.backbones.weights import resolve_weights
    from pipeline.extract.options import ExtractOptions
    from pipeline.extract.run import run_extract

    spec = get_backbone(BACKBONE_NAME)
    weights = resolve_weights(spec, args.weights, args.cache_root / "weights-cache", args.input_size)
    bare = FeatureExtractor(spec, spec.default_layer, args.input_size, weights, "float32", "none")
    pixels = np.random.default_rng(0).integers(0, 256, (args.batch_size, args.input_size, args.input_size, 3),
                                               dtype=np.uint8)
    bare(pixels)  # warm-up
    options = ExtractOptions(weights=args.weights, input_size=args.input_size, batch_size=args.batch_size,
                             precision="float32")
    batches = batch_count(args.bare_images, args.batch_size)

    def bare_round() -> dict:
        started = time.perf_counter()
        for _ in range(batches):
            bare(pixels)
        return {"images": batches * args.batch_size, "seconds": time.perf_counter() - started}

    rounds = [{"bare": bare_round()}]
    for number, chunk in enumerate(args.chunks):
        summary = run_extract(chunk, args.cache_root / f"chunk-{number}", options)
        rounds[-1]["pipeline"] = {"images": summary.extracted, "seconds": summary.seconds - summary.startup_seconds,
                                  "forward_seconds": summary.forward_seconds,
                                  "waiting_for_images_seconds": summary.waiting_for_images_seconds,
                                  "waiting_for_writer_seconds": summary.waiting_for_writer_seconds,
                                  "startup_seconds": summary.startup_seconds}
        rounds.append({"bare": bare_round()})

    def rate(kind):
        parts = [r[kind] for r in rounds if kind in r]
        return sum(p["images"] for p in parts) / sum(p["seconds"] for p in parts)

    print(json.dumps({"rounds": rounds, "bare_images_per_second": round(rate("bare"), 3),
                      "pipeline_images_per_second": round(rate("pipeline"), 3),
                      "ratio": round(rate("pipeline") / rate("bare"), 3)}))


if __name__ == "__main__":
    main()
