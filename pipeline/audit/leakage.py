"""Leakage-aware scores: every head's test metrics again, without the test images that have a
near-duplicate in train or valid (they are not unseen, so they inflate the test score).

Per-image test probabilities are replayed from the cache (`heads.replay`), so heads fitted before
the audit are scored too; an outside model recorded through the API has no model to replay and
gets no leakage-aware score.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from pipeline.audit.record import read_record
from pipeline.cache.format import read_cache_info
from pipeline.heads.metrics import classification_metrics
from pipeline.heads.replay import split_probabilities
from pipeline.heads.store import list_sidecars

TEST_SPLIT = "test"
_KEYS = ("top1", "top5", "mean_per_class_accuracy", "macro_f1")


def leakage_aware_scores(cache_path: Path, leaked: set[str]) -> list[dict]:
    """Per head with a model: {"name", "kind", "test": metrics on all test images, "unleaked": metrics on
    test minus `leaked`, "removed": how many were left out, "n": test images left}."""
    scores = []
    for record in list_sidecars(cache_path):
        replayed = split_probabilities(record, Path(cache_path), TEST_SPLIT)
        if replayed is None:
            continue
        probabilities, labels, relpaths = replayed
        keep = np.array([path not in leaked for path in relpaths], dtype=bool)
        names = list(record.class_names)
        everything = classification_metrics(labels, np.asarray(probabilities), names)
        row = {"name": record.name, "kind": record.kind, "removed": int((~keep).sum()),
               "n": int(keep.sum()), "test": {key: everything.get(key) for key in _KEYS},
               "unleaked": None}
        if keep.any():
            unleaked = classification_metrics(labels[keep], np.asarray(probabilities)[keep], names)
            row["unleaked"] = {key: unleaked.get(key) for key in _KEYS}
        scores.append(row)
    return scores


def score_line(row: dict) -> str:
    """'logreg-...: test top1 0.912 on 60; 0.880 on 52 without 8 leaked' (or 'no leaked test images')."""
    test, unleaked = row["test"]["top1"], (row["unleaked"] or {}).get("top1")
    total = row["n"] + row["removed"]
    if not row["removed"]:
        return f"{row['name']}: test top1 {test:.3f} on {total}; no test image has a near-duplicate in train/valid"
    if unleaked is None:
        return f"{row['name']}: test top1 {test:.3f} on {total}; every test image has a near-duplicate in train/valid"
    return (f"{row['name']}: test top1 {test:.3f} on {total}, {unleaked:.3f} on the {row['n']} without a "
            f"near-duplicate in train/valid ({row['removed']} removed)")


def recorded_leakage_scores(cache_path: Path) -> tuple[list[dict], str | None]:
    """Leakage-aware scores of the cache's current heads against its audit record's leaked test images:
    (rows of `leakage_aware_scores`, None), or ([], why) without a current record."""
    record, why = read_record(read_cache_info(Path(cache_path)))
    if record is None:
        return [], why
    return leakage_aware_scores(cache_path, set(record.get("leaked_test", []))), None
