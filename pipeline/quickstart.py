"""`quickstart`: the whole pipeline on a procedural dataset, offline, in a couple of minutes.

Builds the shapes dataset of `pipeline.data.synthetic` (4 classes x 30 images, 160 px JPEGs) inside
the cache directory, extracts genuine ImageNet VGG16 `block5_pool` features, fits the three
standard heads (gap-dense, logreg, svm) and returns the leaderboard.
"""

from __future__ import annotations

import shutil
from dataclasses import dataclass
from pathlib import Path

from pipeline.data.synthetic import write_shapes_dataset
from pipeline.extract.options import ExtractOptions, ExtractSummary
from pipeline.extract.run import run_extract
from pipeline.heads.fitting import FitReport, fit_head
from pipeline.heads.leaderboard import leaderboard

QUICKSTART_CLASSES = 4
QUICKSTART_PER_CLASS = 30
QUICKSTART_DATA = "quickstart-shapes"
QUICKSTART_HEADS = ("gap-dense", "logreg", "svm")


@dataclass(frozen=True)
class QuickstartResult:
    data_dir: str
    extract: ExtractSummary
    fits: list[FitReport]
    leaderboard: list[dict]


def run_quickstart(cache_dir: Path, options: ExtractOptions = ExtractOptions(), progress=None,
                   on_fit=None) -> QuickstartResult:
    """Build the demo dataset (once), extract features, fit `QUICKSTART_HEADS`, rank them.

    `on_fit(kind)` is called before each head is fitted, for progress messages.
    """
    data_dir = Path(cache_dir) / QUICKSTART_DATA
    if not data_dir.is_dir():
        staging = data_dir.with_name(data_dir.name + ".tmp")
        shutil.rmtree(staging, ignore_errors=True)
        write_shapes_dataset(staging, QUICKSTART_CLASSES, QUICKSTART_PER_CLASS)
        staging.rename(data_dir)  # a half-written dataset is never mistaken for a finished one
    summary = run_extract(data_dir, cache_dir, options, progress=progress)
    fits = []
    for kind in QUICKSTART_HEADS:
        if on_fit is not None:
            on_fit(kind)
        fits.append(fit_head(Path(summary.cache_path), kind))
    return QuickstartResult(str(data_dir), summary, fits, leaderboard(Path(summary.cache_path)))
