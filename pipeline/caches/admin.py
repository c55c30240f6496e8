"""`cache ls / show / rm`: managing the caches of a directory, with the heads fitted on them."""

from __future__ import annotations

from pathlib import Path

from pipeline.cache.format import CACHE_SUFFIX, PARTIAL_SUFFIX, find_caches, partial_dir_of, read_cache_info
from pipeline.cache.removal import remove_cache_files
from pipeline.caches.select import POSITIONAL, boundary_caches, cache_properties
from pipeline.errors import CacheError
from pipeline.heads.store import heads_dir_of, list_sidecars

MEGABYTE = 1 << 20
#: The key of a `list_caches` row holding the properties in which the folder's caches differ.
DIFFERING_KEY = "differs"


def list_caches(cache_dir: Path) -> list[dict]:
    """A summary row per cache file in `cache_dir`; damaged files get an `error` entry instead.

    A readable cache's row has its selectable `properties` (`pipeline.caches.select`), the `spec` that
    picks it among the folder's caches (its dataset/backbone/layer plus every property that differs
    between them, `DIFFERING_KEY`), and `boundary_of`: the caches whose fine-tuned heads read it.
    """
    boundaries = boundary_caches(Path(cache_dir))
    rows = []
    for path in find_caches(cache_dir):
        row = {"file": str(path), "megabytes": path.stat().st_size / MEGABYTE,
               "partial": partial_dir_of(path).exists()}
        try:
            info = read_cache_info(path)
        except CacheError as error:
            rows.append({**row, "error": str(error)})
            continue
        rows.append({**row, "dataset": info.dataset.name, "backbone": info.spec.backbone,
                     "layer": info.spec.layer, "feature_key": info.key, "images": len(info.images),
                     "rows": info.row_count, "classes": len(info.class_names), "heads": len(list_sidecars(path)),
                     "updated": info.updated, "properties": cache_properties(info),
                     "boundary_of": boundaries.get(path.resolve(), []),
                     "shard": f"{info.shard['index']}/{info.shard['count']}" if info.shard else None})
    readable = [row for row in rows if "properties" in row]
    differing = [name for name in readable[0]["properties"] if name not in POSITIONAL
                 and len({row["properties"][name] for row in readable}) > 1] if readable else []
    for row in readable:
        props = row["properties"]
        row[DIFFERING_KEY] = {name: props[name] for name in differing}
        row["spec"] = "/".join([props[name] for name in POSITIONAL] + [f"{n}={props[n]}" for n in differing])
    return rows + _unfinished_first_runs(Path(cache_dir))


def _unfinished_first_runs(cache_dir: Path) -> list[dict]:
    """Rows for `<cache>.partial/` folders whose cache file does not exist yet (a first run was stopped)."""
    if not cache_dir.is_dir():
        return []
    rows = []
    for folder in sorted(cache_dir.glob(f"*{CACHE_SUFFIX}{PARTIAL_SUFFIX}")):
        cache = folder.with_name(folder.name.removesuffix(PARTIAL_SUFFIX))
        if cache.exists() or not folder.is_dir():
            continue
        segments = [p for p in folder.iterdir() if p.suffix == CACHE_SUFFIX]
        rows.append({"file": str(cache), "partial": True, "unfinished": True, "segments": len(segments),
                     "megabytes": sum(p.stat().st_size for p in segments) / MEGABYTE})
    return rows


def describe_cache(path: Path) -> dict:
    """Provenance, dataset view summary and failures of one cache."""
    info = read_cache_info(path)
    return {
        "file": str(path),
        "dataset": info.dataset.to_dict(),
        "feature_key": info.key,
        "feature_spec": info.spec.to_dict(),
        "origin": info.origin.to_dict(),
        "format_version": info.format_version,
        "feature_shape": list(info.feature_shape),
        "weights": info.weights.to_dict(),
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


def own_boundaries(path: Path) -> list[Path]:
    """The fine-tune boundary caches that only `path`'s fine-tuned heads read and that have no heads of their own:
    built for those heads, they go when `path` goes."""
    path = Path(path)
    return sorted(boundary for boundary, users in boundary_caches(path.parent).items()
                  if users == [path.name] and boundary != path.resolve() and boundary.exists()
                  and not list_sidecars(boundary))


def remove_cache(path: Path) -> list[str]:
    """Delete a cache file with its partial segments, temporary files, heads and any lock file a killed writer left.

    Returns what was removed. Refuses (`CacheLockedError`) while an `extract` is writing the cache.
    """
    return remove_cache_files(path, companions=(heads_dir_of(path),))
