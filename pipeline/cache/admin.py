"""`cache ls / show / rm`: managing the caches of a directory."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import h5py

from pipeline.cache.format import (
    CACHE_SUFFIX,
    FORMAT_NAME,
    PARTIAL_SUFFIX,
    find_caches,
    lock_path_of,
    partial_dir_of,
    read_cache_info,
)
from pipeline.errors import CacheError
from pipeline.heads.store import heads_dir_of, list_sidecars

MEGABYTE = 1 << 20
#: The key of a `list_caches` row holding the properties in which the folder's caches differ.
DIFFERING_KEY = "differs"
_RM_BUSY_HINT = "stop it (Ctrl-C keeps its finished rows) or let it finish, then run `cache rm` again"


def list_caches(cache_dir: Path) -> list[dict]:
    """A summary row per cache file in `cache_dir`; damaged files get an `error` entry instead.

    A readable cache's row has its selectable `properties` (`pipeline.cache.select`), the `spec` that
    picks it among the folder's caches (its dataset/backbone/layer plus every property that differs
    between them, `DIFFERING_KEY`), and `boundary_of`: the caches whose fine-tuned heads read it.
    """
    from pipeline.cache.select import POSITIONAL, boundary_caches, cache_properties

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
    from pipeline.cache.select import boundary_caches

    path = Path(path)
    return sorted(boundary for boundary, users in boundary_caches(path.parent).items()
                  if users == [path.name] and boundary != path.resolve() and boundary.exists()
                  and not list_sidecars(boundary))


def remove_cache(path: Path) -> list[str]:
    """Delete a cache file with its partial segments, temporary files, heads and any lock file a killed writer left.

    Returns what was removed. Refuses (`CacheLockedError`) while an `extract` is writing the cache.
    """
    from pipeline.cache.lock import CacheLock
    from pipeline.cache.writer import remove_stale_temps

    path = Path(path)
    if not path.exists() and not partial_dir_of(path).is_dir():
        raise CacheError(f"{path} does not exist (and has no unfinished rows); `cache ls` lists the caches")
    _refuse_foreign(path)
    removed = []
    lock_file = lock_path_of(path)
    had_lock_file = lock_file.exists()
    with CacheLock(path, busy_hint=_RM_BUSY_HINT):
        try:
            removed += [str(p) for p in remove_stale_temps(path)]
            for extra in (partial_dir_of(path), heads_dir_of(path)):
                if extra.is_symlink():  # remove the link only: its target may be anywhere, and is not ours
                    target = os.readlink(extra)
                    extra.unlink()
                    removed.append(f"{extra} (a symbolic link; its target {target} was kept)")
                elif extra.exists():
                    shutil.rmtree(extra)
                    removed.append(str(extra))
            if path.exists() or path.is_symlink():
                path.unlink()
                removed.append(str(path))
            lock_file.unlink(missing_ok=True)
        except OSError as error:
            done = f"; removed so far: {', '.join(removed)}" if removed else ""
            raise CacheError(f"could not remove {error.filename or path} ({error.strerror or error}); fix its "
                             f"permissions and run `cache rm` again{done}") from error
    return removed + ([str(lock_file)] if had_lock_file else [])


def _refuse_foreign(path: Path) -> None:
    """Only feature caches, damaged ones included, may be removed: never someone's other .h5 file."""
    if path.suffix != CACHE_SUFFIX:
        raise CacheError(f"{path} is not a feature cache (caches end in {CACHE_SUFFIX}); nothing was removed")
    if not path.exists():
        return  # only the unfinished rows of a stopped first run remain
    try:
        with h5py.File(path, "r") as handle:
            foreign = handle.attrs.get("format") != FORMAT_NAME
    except OSError:
        return  # not readable as HDF5: a damaged cache, which `cache rm` is meant for
    if foreign:
        raise CacheError(f"{path} is an HDF5 file but not a feature cache made by this tool; nothing was removed")
