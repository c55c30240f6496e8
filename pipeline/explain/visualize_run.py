"""`visualize` end to end: which classes, the runs with and without TV, the PNGs, the figure, the sidecar.

`run_visualize(classifier, classes, settings)` optimises one ideal image per class
(`visualize.ideal_image`) and, with `compare_tv` and a TV weight above 0, a second one with the
TV term off (same seed, same start), so the figure shows what the term buys. Every image is
saved as a uint8 PNG and judged on the pixels read back from that file, resized to the
classifier's input size as `predict` would: the probability reported is the one a user gets
for the file they share. One class writes `ideal.png`, `ideal-no-tv.png` and `side-by-side.png`;
several write `ideal-<index>-<name>[-no-tv].png` and one `grid.png` (a row per variant). The
sidecar (`outputs.write_sidecar`) records every setting, the classifier and each image's result.
"""

from __future__ import annotations

import re
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
from PIL import Image

from pipeline.data.images import ResizeSpec, decode_given_image, fit_to_size
from pipeline.errors import UsageError
from pipeline.explain.outputs import new_result_dir, save_png, write_sidecar
from pipeline.explain.plotting import Panel, captioned_grid
from pipeline.explain.regularizers import total_variation
from pipeline.explain.visualize import Progress, VisualizeSettings, ideal_image

COMMAND = "visualize"
#: `--classes all` draws at most this many classes (a grid of 1000 ImageNet classes is not a picture).
MAX_GRID_CLASSES = 16
#: The value of `--classes` that means every class of the classifier.
ALL_CLASSES = "all"
#: Variant names: with the TV term as set, and with it off.
WITH_TV, WITHOUT_TV = "tv", "no-tv"


@dataclass(frozen=True)
class IdealResult:
    """One saved ideal image and how the classifier judges that file."""

    class_name: str
    class_index: int
    variant: str
    tv_weight: float
    file: str
    probability: float
    top_class: str
    top_probability: float
    total_variation: float
    final_score: float
    seconds: float


def resolve_classes(classifier, class_name: str | None, classes: str | None) -> list[int]:
    """The class indices to draw: `--class NAME` or `--classes all` (at most `MAX_GRID_CLASSES`)."""
    if (class_name is None) == (classes is None):
        raise UsageError("give either --class NAME (one class) or --classes all (every class of a small head)")
    if class_name is not None:
        return [classifier.class_index(class_name)]
    if classes != ALL_CLASSES:
        raise UsageError(f"--classes accepts only {ALL_CLASSES!r}; for one class use --class {classes!r}")
    count = len(classifier.class_names)
    if count > MAX_GRID_CLASSES:
        raise UsageError(f"{classifier.name} has {count} classes; --classes all draws at most {MAX_GRID_CLASSES}. "
                         "Pick classes one at a time with --class NAME")
    return list(range(count))


def load_start(path: Path | None, size: int, policy: str) -> np.ndarray | None:
    """The `--start` image as float pixels (size, size, 3), resized by `policy`; None without one."""
    if path is None:
        return None
    return decode_given_image(path, ResizeSpec(size, size, policy), "--start").astype(np.float64)


def judge(classifier, saved: np.ndarray, class_index: int) -> tuple[float, int, float]:
    """(p(class), top class index, its probability) of saved uint8 pixels, resized as `predict` would."""
    if saved.shape[:2] != (classifier.resize.height, classifier.resize.width):
        saved = np.asarray(fit_to_size(Image.fromarray(saved), classifier.resize), dtype=np.uint8)
    probabilities = classifier.probabilities(saved[None].astype(np.float32))[0]
    top = int(np.argmax(probabilities))
    return float(probabilities[class_index]), top, float(probabilities[top])


def run_visualize(classifier, indices: list[int], settings: VisualizeSettings, compare_tv: bool = True,
                  start: Path | None = None, out_dir: Path | None = None, progress: Progress | None = None) -> dict:
    """Optimise, save and judge ideal images for `indices` (see the module doc); the JSON-able result."""
    size = settings.size or classifier.input_size
    start_pixels = load_start(start, size, classifier.resize.policy)
    weight = settings.tv_weight
    variants = [(WITH_TV, weight)] + ([(WITHOUT_TV, 0.0)] if compare_tv and weight > 0 else [])
    total = settings.steps * len(indices) * len(variants)
    result_dir = new_result_dir(out_dir or classifier.output_dir, COMMAND)
    started = time.perf_counter()
    results: list[IdealResult] = []
    for index in indices:
        for variant, weight in variants:
            offset = len(results) * settings.steps
            report = None if progress is None else (lambda done, _steps, o=offset: progress(o + done, total))
            optimised = ideal_image(classifier, index, settings, start_pixels, tv=weight, progress=report)
            name = _file_name(index, classifier.class_names[index], variant, single=len(indices) == 1)
            saved = save_png(result_dir / name, optimised.pixels)
            probability, top, top_probability = judge(classifier, saved, index)
            results.append(IdealResult(classifier.class_names[index], index, variant, weight, name, probability,
                                       classifier.class_names[top], top_probability, total_variation(saved),
                                       optimised.final_score, optimised.seconds))
    figure = "side-by-side.png" if len(indices) == 1 else "grid.png"
    _draw_figure(result_dir / figure, results, variants, classifier.name)
    outcome = {"result_dir": str(result_dir), "figure": str(result_dir / figure),
               "seconds": time.perf_counter() - started, "images": [asdict(r) for r in results]}
    write_sidecar(result_dir, COMMAND, {**settings.to_dict(), "size": size, "compare_tv": compare_tv,
                                        "start": None if start is None else str(start),
                                        "classes": [classifier.class_names[i] for i in indices]},
                  classifier.source, outcome, [figure], _title(results, classifier),  # the figure holds every image
                  summary_line(results, outcome["seconds"]))
    return outcome


def summary_line(results: list[IdealResult], seconds: float) -> str:
    """One line: each class's probability with TV and, where run, without."""
    parts = []
    for result in results:
        label = "with TV" if result.variant == WITH_TV and result.tv_weight > 0 else \
            "no TV" if result.variant == WITHOUT_TV or result.tv_weight == 0 else result.variant
        parts.append(f"p({result.class_name}) {result.probability:.3f} {label} (total variation "
                     f"{result.total_variation:.3f})")
    return "; ".join(parts) + f"; {seconds:.0f} s"


def _title(results: list[IdealResult], classifier) -> str:
    names = sorted({r.class_name for r in results}, key=[r.class_name for r in results].index)
    what = f"'{names[0]}'" if len(names) == 1 else f"{len(names)} classes"
    return f"ideal {what} image{'s' if len(names) > 1 else ''} for {classifier.name}"


def _file_name(index: int, name: str, variant: str, single: bool) -> str:
    suffix = "" if variant == WITH_TV else f"-{variant}"
    if single:
        return f"ideal{suffix}.png"
    slug = re.sub(r"[^a-z0-9]+", "-", name.lower()).strip("-") or "class"
    return f"ideal-{index}-{slug}{suffix}.png"


def _draw_figure(path: Path, results: list[IdealResult], variants: list, source: str) -> None:
    from PIL import Image as PilImage

    rows = []
    for variant, weight in variants:
        row = []
        for result in (r for r in results if r.variant == variant):
            with PilImage.open(path.parent / result.file) as image:
                pixels = np.asarray(image.convert("RGB"))
            label = f"TV weight {weight:g}" if weight > 0 else "no TV (weight 0)"
            row.append(Panel(pixels, f"{result.class_name}: {label}\np = {result.probability:.3f}, "
                                     f"total variation {result.total_variation:.3f}"))
        rows.append(row)
    if len(variants) > 1 and all(len(row) == 1 for row in rows):  # one class: side by side
        rows = [[row[0] for row in rows]]
    captioned_grid(path, rows, f"ideal images for {source}")
