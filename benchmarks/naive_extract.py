"""The extraction script most people write first: the benchmark's baseline (target 6).

It follows the classic dog-breed notebook: load every image with `keras.utils.load_img` at the
input size, stack them into one float32 array, run `preprocess_input` and `model.predict`, and
save the features with `np.savez`. Every image and every feature is in memory at once; nothing is
parallel, cached or resumable. That is exactly what the benchmark compares `extract` against.

    python benchmarks/naive_extract.py DATA_DIR OUT.npz [--weights FILE|none] [--input-size 224]
                                       [--layer block5_pool] [--batch-size 32]
"""

from __future__ import annotations

import argparse
import os
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import numpy as np

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png")


def path_to_tensor(path: Path, size: int) -> np.ndarray:
    from keras.utils import img_to_array, load_img

    image = load_img(path, target_size=(size, size))
    return np.expand_dims(img_to_array(image), axis=0)


def paths_to_tensor(paths: list[Path], size: int) -> np.ndarray:
    return np.vstack([path_to_tensor(path, size) for path in paths])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("data_dir", type=Path)
    parser.add_argument("out", type=Path)
    parser.add_argument("--weights", default="imagenet", help="imagenet, none (random) or a weights file")
    parser.add_argument("--input-size", type=int, default=224)
    parser.add_argument("--layer", default="block5_pool")
    parser.add_argument("--batch-size", type=int, default=32)
    args = parser.parse_args()

    import keras
    from keras.applications.vgg16 import VGG16, preprocess_input

    paths = sorted(p for p in args.data_dir.rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES)
    labels = [p.parent.name for p in paths]
    tensors = paths_to_tensor(paths, args.input_size)
    weights = None if args.weights == "none" else args.weights
    base = VGG16(weights=weights, include_top=False, input_shape=(args.input_size, args.input_size, 3))
    model = keras.Model(base.input, base.get_layer(args.layer).output)
    features = model.predict(preprocess_input(tensors), batch_size=args.batch_size, verbose=0)
    np.savez(args.out, features=features, labels=np.array(labels), paths=np.array([str(p) for p in paths]))
    print(f"{len(paths)} images -> {args.out} {features.shape}")


if __name__ == "__main__":
    main()
