"""`audit CACHE` end to end: features -> near-duplicates, leakage-aware scores, label issues, outliers,
map; saved as the cache's audit record (`record.py`) for `report` to show."""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np

from pipeline.audit.duplicates import leaked_test_images, near_duplicates
from pipeline.audit.embedding import embed_2d, map_sample
from pipeline.audit.features import AUDIT_POOLING, load_audit_features
from pipeline.audit.labels import LabelIssue, label_issues
from pipeline.audit.leakage import leakage_aware_scores
from pipeline.audit.outliers import OUTLIER_MADS, Outlier, outliers
from pipeline.audit.record import write_record
from pipeline.cache.near_duplicates import MAX_HASH_DISTANCE, NEAR_DUPLICATE_SIMILARITY, NearDuplicate

log = logging.getLogger(__name__)
_COORDINATE_DECIMALS = 4


@dataclass(frozen=True)
class AuditResult:
    """What `audit` found in one cache; `to_dict` is the `--json` payload and the saved record's findings."""

    cache: Path
    images: int
    threshold: float
    hashed: int  # image files whose pixels were hashed (unchanged since extraction)
    near_duplicates: tuple[NearDuplicate, ...]
    leaked_test: tuple[str, ...]
    leakage_aware: tuple[dict, ...]
    label_issues: tuple[LabelIssue, ...]
    outliers: tuple[Outlier, ...]
    map: dict
    seconds: dict = field(default_factory=dict)
    record: Path | None = None

    def to_dict(self) -> dict:
        return {"cache": str(self.cache), "images": self.images, "pooling": AUDIT_POOLING,
                "near_duplicate_similarity": self.threshold, "max_hash_distance": MAX_HASH_DISTANCE,
                "hashed": self.hashed,
                "near_duplicates": [pair.to_dict() for pair in self.near_duplicates],
                "leaked_test": list(self.leaked_test), "leakage_aware": list(self.leakage_aware),
                "label_issues": [issue.to_dict() for issue in self.label_issues],
                "outliers": [outlier.to_dict() for outlier in self.outliers], "map": self.map,
                "seconds": self.seconds, "record": str(self.record) if self.record else None}


def run_audit(cache_path: Path, threshold: float = NEAR_DUPLICATE_SIMILARITY, with_map: bool = True,
              outlier_mads: float = OUTLIER_MADS) -> AuditResult:
    """Audit the whole-dataset cache at `cache_path` and save the record beside its heads."""
    seconds = {}
    clock = time.perf_counter()

    def lap(name):
        nonlocal clock
        now = time.perf_counter()
        seconds[name] = round(now - clock, 3)
        clock = now

    features = load_audit_features(cache_path, hash_pixels=True)
    lap("read")
    pairs = near_duplicates(features, threshold)
    leaked = leaked_test_images(pairs)
    lap("near_duplicates")
    scores = leakage_aware_scores(features.info.path, leaked)
    lap("leakage_aware")
    issues = label_issues(features)
    lap("label_issues")
    far = outliers(features, outlier_mads)
    lap("outliers")
    flagged = {pair.a for pair in pairs} | {pair.b for pair in pairs} | {i.path for i in issues} | {o.path for o in far}
    chart = _map(features, pairs, issues, far, flagged) if with_map else {}
    lap("map")
    log.info("audited %d images in %.1f s", len(features), sum(seconds.values()))
    result = AuditResult(cache=features.info.path, images=len(features), threshold=threshold,
                         hashed=features.hashes.hashed,
                         near_duplicates=tuple(pairs), leaked_test=tuple(sorted(leaked)), leakage_aware=tuple(scores),
                         label_issues=tuple(issues), outliers=tuple(far), map=chart, seconds=seconds)
    findings = result.to_dict()
    findings.pop("record")
    record = write_record(features.info, findings)
    return replace(result, record=record)


def _map(features, pairs, issues, far, flagged: set[str]) -> dict:
    """Map points: {"classes": names, "points": [[x, y, class index, relpath, split, flags], ...]}; flags is a
    string of letters: d near-duplicate, l label issue, o outlier."""
    index = {path: i for i, path in enumerate(features.relpaths)}
    chosen = map_sample(len(features), [index[path] for path in flagged])
    coordinates = embed_2d(features.units[chosen])
    marks = {}
    for letter, paths in (("d", {p.a for p in pairs} | {p.b for p in pairs}), ("l", {i.path for i in issues}),
                          ("o", {o.path for o in far})):
        for path in paths:
            marks[path] = marks.get(path, "") + letter
    points = []
    for (x, y), i in zip(np.round(coordinates, _COORDINATE_DECIMALS).tolist(), chosen.tolist()):
        path = features.relpaths[i]
        points.append([x, y, int(features.labels[i]), path, features.splits[i], marks.get(path, "")])
    return {"classes": list(features.class_names), "points": points, "embedded": len(points),
            "images": len(features)}
