"""Explain's optimiser A/B: Keras' Adam (what `pipeline.explain.optimizer` uses) against the hand-written
Adam it replaced, timed in one run on the same classifier.

    python benchmarks/explain_adam.py [--steps 40] [--size 64] [--rounds 3]

Fits a logreg head on a tiny random-weight VGG16 cache (synthetic images, as the tests do), then
runs `ideal_image` for `--steps` steps at `--size` px with each optimiser in turn, `--rounds`
times, and prints the median seconds per step of each and their ratio (Keras / hand-written).
A small image makes the optimiser's share of a step as large as it gets.
"""

from __future__ import annotations

import statistics
import sys
import tempfile
from pathlib import Path

import click

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # this checkout's `pipeline`

from pipeline.backbones.tf_runtime import import_tensorflow
from pipeline.data.synthetic import write_shapes_dataset
from pipeline.explain import optimizer, visualize
from pipeline.explain.classifier import load_classifier
from pipeline.extract.options import ExtractOptions
from pipeline.extract.run import run_extract
from pipeline.heads.fitting import fit_head


class HandWrittenAdam:
    """The textbook Adam on TensorFlow variables that `pipeline.explain.optimizer` used before (baseline)."""

    def __init__(self, learning_rate: float):
        self.learning_rate = float(learning_rate)
        self.moments = None
        self.steps = 0

    def apply_gradients(self, pairs) -> None:
        tf = import_tensorflow()
        pairs = list(pairs)
        if self.moments is None:
            self.moments = [(tf.Variable(tf.zeros_like(v)), tf.Variable(tf.zeros_like(v))) for _, v in pairs]
        self.steps += 1
        correction_1 = 1 - optimizer.BETA_1 ** self.steps
        correction_2 = 1 - optimizer.BETA_2 ** self.steps
        for (gradient, variable), (first, second) in zip(pairs, self.moments):
            first.assign(optimizer.BETA_1 * first + (1 - optimizer.BETA_1) * gradient)
            second.assign(optimizer.BETA_2 * second + (1 - optimizer.BETA_2) * tf.square(gradient))
            update = (first / correction_1) / (tf.sqrt(second / correction_2) + optimizer.EPSILON)
            variable.assign_sub(self.learning_rate * update)


def _classifier(work: Path):
    dataset = write_shapes_dataset(work / "shapes")
    cache = run_extract(dataset, work / "cache", ExtractOptions(weights="none", input_size=32, precision="float32",
                                                               batch_size=8, valid_fraction=0.3)).cache_path
    return load_classifier(head=Path(fit_head(Path(cache), "logreg").sidecar_path), cache_dir=work / "cache")


@click.command()
@click.option("--steps", default=40)
@click.option("--size", default=64)
@click.option("--rounds", default=3)
def main(steps: int, size: int, rounds: int):
    with tempfile.TemporaryDirectory() as folder:
        classifier = _classifier(Path(folder))
        settings = visualize.VisualizeSettings(steps=steps, size=size)
        variants = {"keras": optimizer.adam, "hand-written": HandWrittenAdam}
        visualize.ideal_image(classifier, 0, settings)  # warm-up: traces the compiled gradient steps
        per_step = {name: [] for name in variants}
        for _ in range(rounds):
            for name, make in variants.items():
                visualize.adam = make
                per_step[name].append(visualize.ideal_image(classifier, 0, settings).seconds / steps)
        visualize.adam = optimizer.adam
    medians = {name: statistics.median(times) for name, times in per_step.items()}
    for name, seconds in medians.items():
        print(f"{name:12s}: {seconds * 1000:.1f} ms per step (rounds: "
              + ", ".join(f"{t * 1000:.1f}" for t in per_step[name]) + ")")
    print(f"keras / hand-written = {medians['keras'] / medians['hand-written']:.2f}")


if __name__ == "__main__":
    main()
