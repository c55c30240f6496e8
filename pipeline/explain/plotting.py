"""The explain commands' figures: captioned image rows and grids, written as PNGs atomically.

`captioned_grid(path, rows, title)` draws a grid of images (`Panel`: pixels, caption; `cmap` for
single-channel maps) with a caption above each, and writes it through `pipeline.atomic`.
Matplotlib runs on its non-interactive Agg backend, so no display is needed.
"""

from __future__ import annotations

import io
import textwrap
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from pipeline.atomic import write_bytes_atomically
from pipeline.heads.plots import pyplot

#: Inches per image panel in a figure, and the resolution figures are rendered at.
PANEL_INCHES = 2.6
FIGURE_DPI = 100
#: Font sizes of captions and of the figure's title (points).
CAPTION_POINTS = 8
TITLE_POINTS = 10
#: Extra height per line of the title, in inches, and the title's characters per line per panel column.
TITLE_INCHES = 0.2
TITLE_CHARACTERS_PER_COLUMN = 40
#: Vertical gap between rows, in font heights, so a caption never touches the row above.
CAPTION_GAP = 1.5


@dataclass(frozen=True)
class Panel:
    """One image of a figure: RGB uint8 (h, w, 3), or a float map (h, w) drawn with `cmap`."""

    pixels: np.ndarray
    caption: str
    cmap: str | None = None


def captioned_grid(path: Path, rows: list[list[Panel]], title: str = "") -> Path:
    """Draw `rows` of panels (short rows are left blank at the end) and write the PNG; returns `path`."""
    plt = pyplot()
    columns = max(len(row) for row in rows)
    title = textwrap.fill(title, TITLE_CHARACTERS_PER_COLUMN * columns) if title else ""
    title_inches = TITLE_INCHES * (title.count("\n") + 1.5) if title else 0
    height = PANEL_INCHES * len(rows) + title_inches
    figure, axes = plt.subplots(len(rows), columns, figsize=(PANEL_INCHES * columns, height), squeeze=False)
    try:
        for r, row in enumerate(rows):
            for c in range(columns):
                axis = axes[r][c]
                axis.set_axis_off()
                if c < len(row):
                    _draw(axis, row[c])
        if title:
            figure.suptitle(title, fontsize=TITLE_POINTS)
        figure.tight_layout(h_pad=CAPTION_GAP, rect=(0, 0, 1, 1 - title_inches / height))
        buffer = io.BytesIO()
        figure.savefig(buffer, format="png", dpi=FIGURE_DPI)
    finally:
        plt.close(figure)
    return write_bytes_atomically(Path(path), buffer.getvalue())


def _draw(axis, panel: Panel) -> None:
    if panel.cmap is None:
        axis.imshow(np.asarray(panel.pixels, dtype=np.uint8), interpolation="nearest")
    else:
        axis.imshow(np.asarray(panel.pixels, dtype=np.float64), cmap=panel.cmap, interpolation="nearest")
    axis.set_title(panel.caption, fontsize=CAPTION_POINTS)
