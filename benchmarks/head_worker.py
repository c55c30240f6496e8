"""Fit one head the way `fit-head` does, timing its parts; the benchmark runs it in its own process.

    python benchmarks/head_worker.py CACHE --head logreg|svm|gap-dense [--recipe classic]

Times, within this one process: importing TensorFlow and Keras (gap-dense only: the linear heads
never import them), then `pipeline.heads.fitting.fit_head` - reading the pooled features from the
cache, fitting with the hyper-parameter search, scoring every split, saving the head, sidecar
and confusion PNG - of which the fit alone is reported by `fit_head` itself. Prints one JSON object.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

from benchmarks.common import preload


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("cache", type=Path)
    parser.add_argument("--head", required=True, choices=("logreg", "svm", "gap-dense"))
    parser.add_argument("--recipe", default=None)
    args = parser.parse_args()

    started = time.perf_counter()
    if args.head == "gap-dense":
        preload("keras", "tensorflow")  # timed: fit_head imports them for this head only
    import_seconds = time.perf_counter() - started

    from pipeline.heads.fitting import fit_head

    started = time.perf_counter()
    report = fit_head(args.cache, args.head, args.recipe)
    head_seconds = time.perf_counter() - started
    print(json.dumps({
        "tensorflow_import_seconds": round(import_seconds, 3),
        "head_seconds": round(head_seconds, 3),
        "fit_seconds": report.fit_seconds,
        "params": {key: value for key, value in report.params.items() if not isinstance(value, (list, dict))},
        "top1": {split: metrics["top1"] for split, metrics in report.metrics.items()},
    }))


if __name__ == "__main__":
    main()
