"""Timing of `audit`'s finders on synthetic feature rows (docs/audit.md): `python -m benchmarks.audit_timing N [N...]`.

Reported as CPU seconds on one BLAS/OpenMP thread (`threadpool_limits(1)`), which a busy shared
machine distorts far less than wall time; on an idle machine with several cores, wall time is lower.

Rows are 512-d ReLU-like features (VGG16 block5_pool, average-pooled) around 133 class centres, so
every finder does the work it does on a real cache of that size; only the values are synthetic.
"""

from __future__ import annotations

import sys
import time

import numpy as np
from threadpoolctl import threadpool_limits

from pipeline.audit.duplicates import near_duplicates
from pipeline.audit.embedding import MAP_MAX_POINTS, embed_2d, map_sample
from pipeline.audit.features import AuditFeatures
from pipeline.audit.labels import label_issues
from pipeline.audit.outliers import outliers
from pipeline.cache.similarity import unit_rows

CHANNELS = 512
CLASSES = 133


def synthetic_features(rows: int, seed: int = 0) -> AuditFeatures:
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, CLASSES, rows)
    centres = rng.gamma(1.0, 1.0, (CLASSES, CHANNELS)).astype(np.float32)
    x = np.maximum(centres[labels] + rng.normal(0, 1.0, (rows, CHANNELS)).astype(np.float32), 0)
    mean = x.mean(axis=0)
    splits = np.array(["train", "valid", "test"])[rng.choice(3, rows, p=[0.8, 0.1, 0.1])]
    return AuditFeatures(info=None, x=x, units=unit_rows(x, mean), mean=mean,
                         relpaths=tuple(f"{i}.jpg" for i in range(rows)), splits=tuple(splits.tolist()),
                         labels=labels, class_names=tuple(f"class{c}" for c in range(CLASSES)))


def time_finders(rows: int) -> dict:
    features = synthetic_features(rows)
    seconds = {}
    for name, run in (("near_duplicates", lambda: near_duplicates(features)),
                      ("outliers", lambda: outliers(features)),
                      ("label_issues", lambda: label_issues(features)),
                      ("map", lambda: embed_2d(features.units[map_sample(rows, [], MAP_MAX_POINTS)]))):
        started = time.process_time()
        with threadpool_limits(1):
            run()
        seconds[name] = round(time.process_time() - started, 1)
        print(rows, name, seconds[name], flush=True)
    return seconds


if __name__ == "__main__":
    for count in sys.argv[1:]:
        print(count, time_finders(int(count)), flush=True)
