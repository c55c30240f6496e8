"""`inspect`: what a dataset folder holds, checked file by file, without running any model.

Reads the layout, hashes every file, assigns the splits `extract` would assign (same options,
same stable content-hash rule), decodes every distinct image by content in parallel threads, and
reports: the layout and classes, per-split per-class counts of usable images, class imbalance,
unreadable files with reasons, files whose content is another format than their extension
says (harmless - they decode by content - but worth knowing), identical images across splits,
label conflicts, repeats, and the layout's notes.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

from PIL import Image

from pipeline.data.dataset import DatasetIndex
from pipeline.data.feeder import default_workers
from pipeline.data.hygiene import check_hygiene, class_imbalance
from pipeline.data.images import DEFAULT_MAX_PIXELS, ImageDecodeError, ResizeSpec, decode_image
from pipeline.data.indexing import hash_dataset
from pipeline.data.layouts import discover
from pipeline.data.splits import DEFAULT_SPLIT_SEED, DEFAULT_TEST_FRACTION, DEFAULT_VALID_FRACTION, assign_splits

#: Decoding target: only decodability matters, and a small target lets JPEG decode at 1/8 scale.
#: The whole file is still read and entropy-decoded, so truncated data is caught.
CHECK_SIZE = ResizeSpec(32, 32)
#: Pillow format names and the extensions that honestly carry them.
FORMAT_EXTENSIONS = {
    "JPEG": {".jpg", ".jpeg", ".jpe"}, "PNG": {".png"}, "GIF": {".gif"}, "BMP": {".bmp"},
    "WEBP": {".webp"}, "TIFF": {".tif", ".tiff"}, "PPM": {".ppm", ".pgm", ".pbm"}, "PSD": {".psd"},
    "MPO": {".jpg", ".jpeg", ".jpe", ".mpo"},  # multi-picture JPEG, written by many cameras
}


def imbalance_text(item: dict, class_count: int) -> str:
    """One split's `class_imbalance` entry (of a dataset of `class_count` classes) in words, e.g.
    "1.50 (dog 150, cat 100)".

    Ties never name one class twice: with every class at the same count it says "1.00 (every
    class 150)", with one class present "1.00 (only cat, 150)".
    """
    largest, smallest = item["largest"], item["smallest"]
    if largest["count"] != smallest["count"]:
        pair = f"{largest['class']} {largest['count']}, {smallest['class']} {smallest['count']}"
    elif class_count - len(item["empty_classes"]) == 1:
        pair = f"only {largest['class']}, {largest['count']}"
    else:
        pair = f"every class {largest['count']}"
    empty = f"; no images of {len(item['empty_classes'])} classes" if item["empty_classes"] else ""
    return f"{item['ratio']:.2f} ({pair}){empty}"


@dataclass
class InspectReport:
    """Everything `inspect` found; `to_dict()` is the `--json` payload."""

    root: str
    layout: str
    classes: list
    extra_targets: dict
    images: int
    split_counts: dict
    class_counts: dict
    imbalance: dict
    unreadable: list
    format_mismatches: list
    duplicates: dict
    notes: list = field(default_factory=list)
    seconds: float = 0.0

    def to_dict(self) -> dict:
        return dict(self.__dict__)


def inspect_dataset(
    data_dir: Path,
    layout: str = "auto",
    valid_fraction: float = DEFAULT_VALID_FRACTION,
    test_fraction: float = DEFAULT_TEST_FRACTION,
    split_seed: int = DEFAULT_SPLIT_SEED,
    workers: int | None = None,
    max_pixels: int | None = DEFAULT_MAX_PIXELS,
    progress: Callable[[int, int], None] | None = None,
) -> InspectReport:
    """Inspect the dataset at `data_dir`; `progress(done, total)` is called as images are decoded."""
    started = time.perf_counter()
    index = discover(data_dir, layout)
    hashed = hash_dataset(index)
    split = assign_splits(hashed, valid_fraction, test_fraction, split_seed)
    hygiene = check_hygiene(split)
    failures, formats = _decode_all(split, workers or default_workers(), max_pixels, progress)
    usable = split.with_records([r for r in split.records if r.sha256 not in failures])
    unreadable = [{"path": s.relpath, "reason": s.reason} for s in split.skipped]
    unreadable += [{"path": r.relpath, "reason": failures[r.sha256]} for r in split.records if r.sha256 in failures]
    return InspectReport(
        root=str(split.root),
        layout=split.layout,
        classes=list(split.class_names),
        extra_targets={task: list(names) for task, names in split.extra_targets.items()},
        images=len(usable.records),
        split_counts=usable.split_counts(),
        class_counts=usable.class_counts(),
        imbalance=class_imbalance(usable) if usable.records else {},
        unreadable=unreadable,
        format_mismatches=_mismatches(split, formats),
        duplicates=hygiene.to_dict(),
        notes=list(split.notes),
        seconds=round(time.perf_counter() - started, 3),
    )


def _decode_all(index: DatasetIndex, workers: int, max_pixels, progress) -> tuple[dict[str, str], dict[str, str]]:
    """Decode each distinct image once: ({sha: failure reason}, {sha: Pillow format name})."""
    paths = {}
    for record in index.records:
        paths.setdefault(record.sha256, index.path_of(record))

    def check(item):
        sha, path = item
        try:
            with Image.open(path) as image:
                detected = image.format or ""
        except (OSError, ValueError, SyntaxError, EOFError):  # decode_image below says why, in user terms
            detected = ""
        try:
            decode_image(path, CHECK_SIZE, max_pixels=max_pixels)
            return sha, None, detected
        except ImageDecodeError as error:
            return sha, error.reason, detected

    failures, formats = {}, {}
    with ThreadPoolExecutor(max_workers=workers) as pool:
        for done, (sha, reason, detected) in enumerate(pool.map(check, paths.items()), start=1):
            if reason is not None:
                failures[sha] = reason
            formats[sha] = detected
            if progress is not None:
                progress(done, len(paths))
    return failures, formats


def _mismatches(index: DatasetIndex, formats: dict[str, str]) -> list[dict]:
    """Files whose content is a known format that their extension does not name."""
    found = []
    for record in index.records:
        detected = formats.get(record.sha256, "")
        honest = FORMAT_EXTENSIONS.get(detected)
        if honest is not None and Path(record.relpath).suffix.lower() not in honest:
            found.append({"path": record.relpath, "format": detected})
    return found
