"""`cache ls / show / rm`: managing the caches of a directory."""

from __future__ import annotations

import shutil
from pathlib import Path

from pipeline.cache import find_caches, lock_path_of, partial_dir_of, read_cache_info
from pipeline.errors import CacheError
from pipeline.head_store import heads_dir_of, list_sidecars

_MEGABYTE = 1 << 20


def list_caches(cache_dir: Path) -> list[dict]:
    """A summary row per cache file in `cache_dir`; damaged files get an `error` entry instead."""
    rows = []
    for path in find_caches(cache_dir):
        row = {"file": str(path), "megabytes": path.stat().st_size / _MEGABYTE, "partial": partial_dir_of(path).exists()}
        try:
            info = read_cache_info(path)
        except CacheError as error:
            rows.append({**row, "error": str(error)})
            continue
        rows.append({**row, "dataset": info.dataset.get("name"), "backbone": info.spec.backbone,
                     "layer": info.spec.layer, "feature_key": info.key, "images": len(info.images),
                     "rows": info.row_count, "classes": len(info.class_names), "heads": len(list_sidecars(path)),
                     "updated": info.updated})
    return rows


def describe_cache(path: Path) -> dict:
    """Provenance, dataset view summary and failures of one cache."""
    info = read_cache_info(path)
    return {
        "file": str(path),
        "dataset": info.dataset,
        "feature_key": info.key,
        "feature_spec": info.spec.__dict__,
        "feature_shape": list(info.feature_shape),
        "weights": info.weights,
        "versions": info.versions,
        "created": info.created,
        "updated": info.updated,
        "rows": info.row_count,
        "images": len(info.images),
        "splits": info.split_sizes(),
        "classes": list(info.class_names),
        "extra_targets": {task: list(classes) for task, (classes, _) in info.extra_targets.items()},
        "failures": [{"path": p, "reason": r} for p, r in info.failures],
    }


def remove_cache(path: Path) -> list[str]:
    """Delete a cache file with its partial segments, lock file and heads; returns what was removed."""
    path = Path(path)
    removed = []
    for extra in (partial_dir_of(path), heads_dir_of(path)):
        if extra.exists():
            shutil.rmtree(extra)
            removed.append(str(extra))
    for extra in (path, lock_path_of(path)):
        if extra.exists():
            extra.unlink()
            removed.append(str(extra))
    return removed
