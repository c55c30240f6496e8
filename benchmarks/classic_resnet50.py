"""The notebook's own ResNet50 cells against `fit-head --recipe classic`, on one DogResnet50Data.npz.

    python benchmarks/classic_resnet50.py [--work DIR] [--out docs/classic-resnet50.json] [--runs 3]

Genuine ResNet50 weights cannot be downloaded on our machines, so the file is synthetic: a
dogImages-shaped folder (133 classes, 50 / 6 / 6 tiny images each) and a DogResnet50Data.npz of
1x1x2048 rows in `load_files` order, each row a noisy, non-negative copy of its class's random
prototype (`NOISE` sets how hard the task is). The comparison:

1. `import-npz` the file, `export-npz --classic` the cache (rows in the notebook's layout);
2. the notebook's cells on the export, ported to Keras 3 only where Keras 3 requires it (the
   checkpoint file name ends in `.weights.h5`): `load_files` targets, GAP + Dense(133, softmax),
   RMSprop, categorical cross-entropy, 20 epochs, batch 20, best validation loss kept, test
   accuracy of the argmax; `--runs` runs (Keras shuffles and initialises differently each time);
3. `fit-head --recipe classic` on the imported cache.

Writes the test accuracies and wall times to a JSON file and prints a markdown table.
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path

import click
import numpy as np
from PIL import Image

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # this checkout's `pipeline`

from pipeline.backbones.tf_runtime import import_keras
from pipeline.heads.fitting import fit_head
from pipeline.interop.npz_export import export_npz
from pipeline.interop.npz_import import import_npz

CLASSES = 133
PER_CLASS = {"train": 50, "valid": 6, "test": 6}
CHANNELS = 2048
NOISE = 5.0  # standard deviation of the per-row noise around a prototype of |N(0, 1)| values
SEED = 0
IMAGE_SIZE = 8


def _dog_images(root: Path) -> Path:
    """133 NNN.Breed folders per split, each with tiny distinct JPEGs (only their names and bytes matter)."""
    rng = np.random.default_rng(SEED)
    for split, count in PER_CLASS.items():
        for label in range(CLASSES):
            folder = root / split / f"{label + 1:03d}.Breed_{label + 1}"
            folder.mkdir(parents=True, exist_ok=True)
            for n in range(count):
                pixels = rng.integers(0, 256, (IMAGE_SIZE, IMAGE_SIZE, 3), dtype=np.uint8)
                Image.fromarray(pixels).save(folder / f"Breed_{label + 1}_{n:03d}.jpg")
    return root


def _synthetic_npz(labels: Path, out: Path) -> None:
    """DogResnet50Data.npz: 1x1x2048 rows in load_files order, a noisy copy of each class's prototype."""
    from sklearn.datasets import load_files

    rng = np.random.default_rng(SEED + 1)
    prototypes = np.abs(rng.normal(size=(CLASSES, CHANNELS))).astype(np.float32)
    arrays = {}
    for split in PER_CLASS:
        targets = load_files(str(labels / split), load_content=False)["target"]
        rows = prototypes[targets] + rng.normal(scale=NOISE, size=(len(targets), CHANNELS)).astype(np.float32)
        arrays[split] = np.maximum(rows, 0).reshape(len(targets), 1, 1, CHANNELS)  # ReLU'd, as avg_pool outputs
    np.savez(out, **arrays)


def _notebook_cells(npz: Path, labels: Path, work: Path) -> float:
    """The notebook's ResNet50 cells on `npz`; test accuracy in percent."""
    from sklearn.datasets import load_files

    keras = import_keras()
    listed = {split: load_files(str(labels / split), load_content=False) for split in PER_CLASS}
    targets = {split: keras.utils.to_categorical(np.array(data["target"]), CLASSES) for split, data in listed.items()}
    bottleneck_features = np.load(npz)
    train_Resnet50 = bottleneck_features["train"]  # the notebook's names
    valid_Resnet50 = bottleneck_features["valid"]
    test_Resnet50 = bottleneck_features["test"]

    Resnet50_model = keras.Sequential()
    Resnet50_model.add(keras.Input(shape=train_Resnet50.shape[1:]))
    Resnet50_model.add(keras.layers.GlobalAveragePooling2D())
    Resnet50_model.add(keras.layers.Dense(CLASSES, activation="softmax"))
    Resnet50_model.compile(loss="categorical_crossentropy", optimizer="rmsprop", metrics=["accuracy"])
    best = work / "weights.best.Resnet50.weights.h5"
    checkpointer = keras.callbacks.ModelCheckpoint(filepath=str(best), save_best_only=True, save_weights_only=True)
    Resnet50_model.fit(train_Resnet50, targets["train"], validation_data=(valid_Resnet50, targets["valid"]),
                       epochs=20, batch_size=20, callbacks=[checkpointer], verbose=0)
    Resnet50_model.load_weights(str(best))
    predictions = np.argmax(Resnet50_model.predict(test_Resnet50, verbose=0), axis=1)
    return float(100 * np.mean(predictions == np.argmax(targets["test"], axis=1)))


@click.command()
@click.option("--work", type=click.Path(file_okay=False, path_type=Path), default=Path("cache/classic-resnet50"),
              show_default=True, help="Where the synthetic folder, files and cache go.")
@click.option("--out", type=click.Path(dir_okay=False, path_type=Path), default=Path("docs/classic-resnet50.json"),
              show_default=True, help="The JSON file of every figure.")
@click.option("--runs", type=click.IntRange(min=1), default=3, show_default=True,
              help="Runs of the notebook's cells (each initialises and shuffles differently).")
def main(work: Path, out: Path, runs: int) -> None:
    labels = work / "dogImages"
    if not labels.is_dir():
        _dog_images(labels)
    npz = work / "DogResnet50Data.npz"
    _synthetic_npz(labels, npz)
    cache = import_npz(npz, labels, work / "cache").cache_path
    exported = work / "export" / "DogResnet50Data.npz"
    exported.parent.mkdir(parents=True, exist_ok=True)
    export_npz(cache, exported, classic=True)

    notebook = []
    for run in range(runs):
        started = time.perf_counter()
        notebook.append({"test_accuracy": _notebook_cells(exported, labels, work), "seconds":
                         round(time.perf_counter() - started, 1)})
        click.echo(f"notebook run {run + 1}: {notebook[-1]}", err=True)
    started = time.perf_counter()
    report = fit_head(cache, "gap-dense", recipe="classic")
    ours = {"test_accuracy": 100 * report.metrics["test"]["top1"], "seconds": round(time.perf_counter() - started, 1)}
    results = {"synthetic": True, "noise": NOISE, "classes": CLASSES, "per_class": PER_CLASS,
               "notebook_cells": notebook, "fit_head_classic": ours}
    out.write_text(json.dumps(results, indent=1) + "\n")
    accuracies = [r["test_accuracy"] for r in notebook]
    click.echo("| | test accuracy | wall time |\n|---|---|---|")
    click.echo(f"| notebook cells on `export-npz --classic` ({runs} runs) | {min(accuracies):.1f}-"
               f"{max(accuracies):.1f} % | {np.mean([r['seconds'] for r in notebook]):.0f} s |")
    click.echo(f"| `fit-head --recipe classic` | {ours['test_accuracy']:.1f} % | {ours['seconds']:.0f} s |")


if __name__ == "__main__":
    main()
