"""Confusion-matrix images that stay readable from 2 to a few hundred classes.

Rows are normalised (each true class sums to 1) so rare and common classes share one colour
scale; the figure, tick labels and dpi scale with the number of classes, so 133 dog breeds get a
large image with small but legible names instead of a black square.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from pipeline.atomic import atomic_write_path

#: Inches per class on each axis, and the size bounds of the figure.
INCHES_PER_CLASS = 0.16
MIN_FIGURE_INCHES = 5.0
MAX_FIGURE_INCHES = 30.0
#: Label font size range (points): large for a few classes, small but legible for many.
MAX_LABEL_POINTS = 10.0
MIN_LABEL_POINTS = 3.5
_LABEL_POINTS_BUDGET = 480.0  # font points shared among the labels on one axis
DPI = 150
ANNOTATE_UP_TO_CLASSES = 12  # print the counts in the cells when the matrix is this small


def pyplot():
    """matplotlib.pyplot on the non-interactive Agg backend (no display needed), imported on first use."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def save_confusion_png(matrix, class_names, path: Path, title: str) -> Path:
    """Render a row-normalised confusion matrix to `path` (PNG) and return the path."""
    plt = pyplot()
    matrix = np.asarray(matrix, dtype=np.float64)
    count = len(class_names)
    rows = matrix.sum(axis=1, keepdims=True)
    normalised = np.divide(matrix, rows, out=np.zeros_like(matrix), where=rows > 0)
    inches = float(np.clip(count * INCHES_PER_CLASS + 3.0, MIN_FIGURE_INCHES, MAX_FIGURE_INCHES))
    points = float(np.clip(_LABEL_POINTS_BUDGET / max(count, 1), MIN_LABEL_POINTS, MAX_LABEL_POINTS))

    figure, axes = plt.subplots(figsize=(inches, inches))
    image = axes.imshow(normalised, cmap="viridis", vmin=0.0, vmax=1.0, interpolation="nearest")
    axes.set_xticks(range(count))
    axes.set_yticks(range(count))
    axes.set_xticklabels(class_names, rotation=90, fontsize=points)
    axes.set_yticklabels(class_names, fontsize=points)
    axes.set_xlabel("predicted class")
    axes.set_ylabel("true class")
    axes.set_title(title)
    if count <= ANNOTATE_UP_TO_CLASSES:
        for (i, j), value in np.ndenumerate(matrix):
            colour = "black" if normalised[i, j] > 0.5 else "white"
            axes.text(j, i, f"{int(value)}", ha="center", va="center", color=colour, fontsize=points)
    figure.colorbar(image, ax=axes, fraction=0.046, pad=0.04, label="fraction of the true class")
    figure.tight_layout()
    path = Path(path)
    with atomic_write_path(path) as temp:
        figure.savefig(temp, dpi=DPI)
    plt.close(figure)
    return path
