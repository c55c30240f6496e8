"""One epoch of block5 fine-tuning from the boundary cache vs. the same epoch from the image files.

    python benchmarks/finetune_worker.py DATA_DIR --cache-dir DIR --weights FILE|none --input-size 224 \\
        --batch-size 16 --order ABBA [--precision float32]

Both paths train the same tuned model (VGG16 block5 + a Dense softmax head) with the same
compiled step (`pipeline.finetune.train.Trainer.step`) on the same batches in the same order
(`pipeline.finetune.batches.epoch_batches`):

- A, from the cache: `Trainer.train_epoch` - block4_pool rows streamed from the boundary cache,
  exactly what `fine-tune` runs;
- B, from the images: the files decoded and resized by the extraction feeder (threads, ahead of
  the model), block1-block4 run frozen in inference mode by the extraction's `FeatureExtractor`
  (same precision and store-dtype rounding as the cache), then the same step.

The boundary cache is built first (timed separately: the one-off cost A pays). Epochs alternate in
`--order` (ABBA: drift on a shared machine cancels) after one untimed warm-up batch per path.
Prints one JSON object: seconds per epoch and where they went, and the ratio B / A.
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

from benchmarks.common import BACKBONE_NAME

BOUNDARY, TOP, BLOCK = "block4_pool", "block5_pool", "block5"
#: Seed of the stand-in head's Dense layer.
HEAD_SEED = 0


class StandInHead:
    """A Dense softmax head as `pipeline.heads.graph.head_layers` expects one (its speed is what matters here)."""

    kind = "logreg"

    def __init__(self, classes: int):
        self.classes = classes

    def keras_layers(self):
        import keras

        return [keras.layers.Dense(self.classes, activation="softmax", name="head",
                                   kernel_initializer=keras.initializers.GlorotUniform(HEAD_SEED))]


def main(argv=None) -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("data", type=Path)
    parser.add_argument("--cache-dir", type=Path, required=True)
    parser.add_argument("--weights", required=True)
    parser.add_argument("--input-size", type=int, required=True)
    parser.add_argument("--batch-size", type=int, required=True)
    parser.add_argument("--order", default="ABBA")
    parser.add_argument("--precision", default="float32")
    args = parser.parse_args(argv)

    from pipeline.backbones.forward import FeatureExtractor
    from pipeline.backbones.registry import get_backbone
    from pipeline.backbones.weights import resolve_weights
    from pipeline.cache.format import read_cache_info
    from pipeline.data.images import ResizeSpec
    from pipeline.extract.options import ExtractOptions
    from pipeline.extract.run import run_extract
    from pipeline.finetune.batches import SplitRows, epoch_batches
    from pipeline.finetune.cut import resolve_cut
    from pipeline.finetune.model import build_backbone, tuned_model
    from pipeline.finetune.recipe import Recipe
    from pipeline.finetune.train import Trainer

    started = time.perf_counter()
    options = ExtractOptions(layer=BOUNDARY, weights=args.weights, input_size=args.input_size,
                             precision=args.precision, batch_size=args.batch_size, valid_fraction=0.0,
                             test_fraction=0.0)
    summary = run_extract(args.data, args.cache_dir, options)
    boundary_seconds = time.perf_counter() - started
    info = read_cache_info(summary.cache_path)
    spec = get_backbone(BACKBONE_NAME)
    weights = resolve_weights(spec, args.weights, args.cache_dir, args.input_size)
    base = build_backbone(spec, weights, args.input_size)
    cut = resolve_cut(spec, base, TOP, BLOCK, None)
    recipe = Recipe(batch_size=args.batch_size)
    trainer = Trainer(tuned_model(base, cut, StandInHead(len(info.class_names)), "none"), recipe)
    frozen = FeatureExtractor(spec, BOUNDARY, args.input_size, weights, args.precision, "none")
    split = SplitRows(info.images.row[:, None].astype(np.int64), info.images.label.astype(np.int64))
    path_of = {int(row): (str(sha), info.data_root / relpath)
               for row, sha, relpath in zip(info.images.row, info.images.sha256, info.images.relpath)}
    resize = ResizeSpec(info.spec.input_size, info.spec.input_size, info.spec.resize_policy)

    warm = epoch_batches(split, 0, recipe.seed, recipe.batch_size)[0]
    trainer.step(frozen(np.zeros((len(warm.rows), args.input_size, args.input_size, 3), np.uint8)), warm.labels)

    epochs, next_epoch = [], 1
    for kind in args.order:
        if kind == "A":
            trained = trainer.train_epoch(info.path, split, next_epoch)
            record = {"path": "cache", "seconds": trained["seconds"],
                      "waiting_for_rows": trained["waiting_for_rows_seconds"],
                      "reading_in_background": trained["reading_seconds"]}
        else:
            record = {"path": "images", **images_epoch(trainer, frozen, split, path_of, resize, next_epoch,
                                                       info.spec.store_dtype)}
        record["images"] = len(split)
        epochs.append(record)
        next_epoch += 1
    total = {path: sum(e["seconds"] for e in epochs if e["path"] == path) for path in ("cache", "images")}
    print(json.dumps({
        "images": len(split), "batch_size": args.batch_size, "precision": args.precision,
        "boundary_shape": list(info.feature_shape), "boundary_cache_seconds": round(boundary_seconds, 3),
        "boundary_cache_megabytes": round(info.path.stat().st_size / 2 ** 20, 1),
        "tuned_layers": list(cut.tuned), "order": args.order, "epochs": epochs,
        "seconds": {k: round(v, 3) for k, v in total.items()},
        "ratio": round(total["images"] / total["cache"], 3) if total["cache"] else None,
    }))
    return 0


def images_epoch(trainer, frozen, split, path_of, resize, epoch, store_dtype) -> dict:
    """The epoch `trainer.train_epoch` would run, from the image files through the frozen layers."""
    from pipeline.data.feeder import decoded_batches
    from pipeline.finetune.batches import epoch_batches

    batches = epoch_batches(split, epoch, trainer.recipe.seed, trainer.recipe.batch_size)
    items = [path_of[int(row)] for batch in batches for row in batch.rows]
    times = {"waiting_for_images": 0.0, "frozen_forward": 0.0, "tuned_step": 0.0}
    started = time.perf_counter()
    decoded = decoded_batches(items, resize, trainer.recipe.batch_size)
    try:
        for batch in batches:
            tick = time.perf_counter()
            pixels = next(decoded).pixels
            times["waiting_for_images"] += time.perf_counter() - tick
            tick = time.perf_counter()
            features = frozen(pixels).astype(store_dtype).astype(np.float32)
            times["frozen_forward"] += time.perf_counter() - tick
            tick = time.perf_counter()
            trainer.step(features, batch.labels)
            times["tuned_step"] += time.perf_counter() - tick
    finally:
        decoded.close()
    return {"seconds": round(time.perf_counter() - started, 3), **{k: round(v, 3) for k, v in times.items()}}


if __name__ == "__main__":
    sys.exit(main())
