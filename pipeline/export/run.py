"""`export HEAD OUT --format F`: build, write to a temporary path, verify, then rename into place.

The reference probabilities come from `predict` itself (`pipeline.predict.with_head.predict_images`)
on the sample photos; the artifact is written next to OUT under a temporary name, loaded back with
its own runtime and compared (`pipeline.export.verify`). Only when the largest difference is within
the tolerance is it renamed to OUT and the labels file `<OUT>.json` (class names, provenance, the
measured difference) written beside it; otherwise the temporary artifact is deleted and
`ExportRefused` says by how much it differed. Temporary files of an export to the same OUT that
was killed (SIGKILL) are deleted when the next one starts (`remove_orphaned_temps`).

A head fitted with test-time augmentation is exported as its plain model, verified against
`predict --no-tta`: its views are seeded by each file's sha256 (`pipeline.data.views`), which a
model given pixels never sees, so they cannot be part of the artifact. The report's `notes` and
the labels file (`tta_not_exported`) say so, with the views `predict` averages.
"""

from __future__ import annotations

import json
import logging
import time
from dataclasses import dataclass, field
from pathlib import Path

from pipeline.atomic import atomic_write_dir, atomic_write_path, remove_orphaned_temps, write_text_atomically
from pipeline.export.artifact import build_deployable, head_precisions, refuse_unexportable
from pipeline.export.formats import WRITERS, artifact_path, labels_path_of
from pipeline.export.verify import (
    DEFAULT_SAMPLES,
    ExportRefused,
    Verification,
    default_tolerance,
    reference_probabilities,
    sample_images,
    verify_artifact,
)
from pipeline.heads.record import HeadRecord
from pipeline.heads.store import read_sidecar
from pipeline.heads.tta import head_tta

LOG = logging.getLogger(__name__)


@dataclass(frozen=True)
class ExportReport:
    """What `export` wrote and measured."""

    path: Path
    format: str
    labels_path: Path
    class_names: list[str]
    verification: Verification
    size_bytes: int
    seconds: dict = field(default_factory=dict)
    metadata: dict = field(default_factory=dict)
    notes: tuple[str, ...] = ()  # what the artifact does differently from `predict` (test-time augmentation)

    def to_dict(self) -> dict:
        return {"path": str(self.path), "format": self.format, "labels_path": str(self.labels_path),
                "class_names": self.class_names, "size_bytes": self.size_bytes,
                "verification": self.verification.to_dict(), "seconds": self.seconds,
                "input": self.metadata.get("input"), "feature_key": self.metadata.get("feature_key"),
                "notes": list(self.notes)}


def tta_note(record: HeadRecord) -> str | None:
    """Why a head fitted with test-time augmentation is exported as its plain model (None for other heads)."""
    tta = head_tta(record)
    if tta is None:
        return None
    return (f"the head was scored with test-time augmentation (the mean over views {','.join(map(str, tta.views))} "
            "of each image), which `predict` applies; those views are random crops, flips and colour jitter seeded "
            "by each file's sha256, which a model given pixels never sees, so the artifact is the plain model on "
            "the image as given, verified against `predict --no-tta`")


def export_head(head_path: Path, out: Path, fmt: str, cache_dir: Path, images=None,
                tolerance: float | None = None, samples: int = DEFAULT_SAMPLES) -> ExportReport:
    """Export the head at `head_path` as `fmt` to OUT (see module doc); `tolerance` None: `default_tolerance`."""
    record = read_sidecar(head_path)
    refuse_unexportable(record)
    precisions = head_precisions(record)
    if tolerance is None:
        tolerance = max(default_tolerance(precision) for precision in precisions)
    path = artifact_path(out, fmt)
    for final in (path, labels_path_of(path)):  # what an export to OUT killed mid-write left (13 MB each)
        remove_orphaned_temps(final.parent, final.name)
    seconds = {}
    started = time.perf_counter()
    paths, source = sample_images(record, images, samples)
    class_names = list(record.class_names)
    paths, expected = reference_probabilities(paths, record.path, cache_dir, class_names)
    seconds["predict"] = _lap(started)
    started = time.perf_counter()
    deployable = build_deployable(record.path, cache_dir, fmt)
    seconds["build"] = _lap(started)
    writing = atomic_write_dir if fmt == "saved_model" else atomic_write_path
    with writing(path) as temp:
        started = time.perf_counter()
        WRITERS[fmt](deployable, temp)
        seconds["write"] = _lap(started)
        started = time.perf_counter()
        verification = verify_artifact(temp, fmt, paths, expected, deployable.resize, class_names, tolerance, source)
        seconds["verify"] = _lap(started)
        if not verification.passed:
            raise ExportRefused(
                f"the exported {fmt} model's probabilities differ from `predict`'s by up to "
                f"{verification.max_abs_diff:.3g} (on {verification.worst_image}), more than the tolerance "
                f"{tolerance:g}, so nothing was written. {_hint(precisions)}")
        size = _size(temp)
    labels = labels_path_of(path)
    note = tta_note(record)
    write_text_atomically(labels, json.dumps({**deployable.metadata, "artifact": path.name,
                                              "verification": verification.to_dict(),
                                              **({"tta_not_exported": note} if note else {})}, indent=1))
    LOG.info("exported %s (%d bytes), max difference %.3g", path, size, verification.max_abs_diff)
    return ExportReport(path, fmt, labels, class_names, verification, size, seconds, deployable.metadata,
                        (note,) if note else ())


def _hint(precisions: set[str]) -> str:
    reduced = sorted(precisions - {"float32"})
    if reduced:
        return (f"The head's cache was extracted in {', '.join(reduced)}, and `predict` runs it that way, while the "
                "exported model computes in float32: raise --tolerance to accept that rounding, or export a head "
                "fitted on a float32 cache (`extract --precision float32`)")
    return "Raise --tolerance only if you accept that difference; otherwise report it as a bug"


def _size(path: Path) -> int:
    path = Path(path)
    if path.is_file():
        return path.stat().st_size
    return sum(f.stat().st_size for f in path.rglob("*") if f.is_file())


def _lap(started: float) -> float:
    return round(time.perf_counter() - started, 3)


__all__ = ["ExportReport", "export_head"]
