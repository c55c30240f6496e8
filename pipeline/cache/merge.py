"""`merge`: join the shard caches of `extract --shard I/N` into the cache one machine would write.

Before anything is written it checks that the shards belong together: the same feature key, the
same shard count N, each of shards 0..N-1 exactly once, and the same digest of the full dataset
index (so every shard job indexed the same version of the dataset). The merged view puts each
image and failure back at its position in the full index, and rows are ordered the way a single
run orders them (first occurrence in index order), so the merged cache has the same features,
rows and view as a single-machine run: a later `extract` of the same dataset finds nothing to do.
It is written atomically under the destination's lock, like every cache. Nothing here imports
TensorFlow.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterable
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np

from pipeline.cache.builder import CacheContents, write_dataset_cache
from pipeline.cache.format import CacheInfo, find_caches, open_cache_file, read_cache_info
from pipeline.cache.lock import CacheLock
from pipeline.cache.removal import remove_cache_files
from pipeline.cache.segments import RowSource
from pipeline.cache.shard import NOT_IN_INDEX, merged_cache_name
from pipeline.cache.writer import remove_stale_temps
from pipeline.data.dataset import DatasetIndex, ImageRecord
from pipeline.data.hygiene import recount_imbalance
from pipeline.errors import CacheError, DatasetError


@dataclass(frozen=True)
class MergeSummary:
    """What `merge_shards` did, for the CLI summary and `--json`."""

    cache_path: str
    shards: list
    images: int
    rows: int
    failures: int
    deleted: list
    notes: list

    def to_dict(self) -> dict:
        return dict(self.__dict__)


@dataclass(frozen=True)
class ShardCache:
    """One shard cache: its info, shard attributes and full-index positions."""

    path: Path
    info: CacheInfo
    shard: dict
    image_position: np.ndarray
    failure_position: np.ndarray


def find_shard_caches(targets: Iterable[Path]) -> list[Path]:
    """Shard cache files among `targets`: files as given, directories expanded to their shard caches."""
    found = []
    for target in targets:
        target = Path(target)
        if target.is_dir():
            found.extend(path for path in find_caches(target) if _is_shard_cache(path))
        else:
            found.append(target)
    return sorted(set(found))


def read_shard_cache(path: Path) -> ShardCache:
    """Read a shard cache; `CacheError` when `path` is not one."""
    info = read_cache_info(path)
    shard = info.shard
    if shard is None:
        raise CacheError(f"{path} is a whole-dataset cache, not a shard cache; merge takes the caches written by "
                         "`extract --shard I/N`")
    with open_cache_file(path) as handle:
        try:
            image_position = handle["shard/image_position"][()].astype(np.int64)
            failure_position = handle["shard/failure_position"][()].astype(np.int64)
        except KeyError as error:
            raise CacheError(f"shard cache {path} lacks its shard positions ({error}); run its "
                             f"`extract --shard {shard['index']}/{shard['count']}` again") from error
    return ShardCache(Path(path), info, shard, image_position, failure_position)


def merge_shards(targets: Iterable[Path], out_dir: Path | None = None, delete_shards: bool = False,
                 wait_for_lock: bool = False) -> MergeSummary:
    """Merge the shard caches in `targets` (files or directories) into one cache in `out_dir`.

    `out_dir` defaults to the folder of the shard caches. With `delete_shards` the shard caches
    are removed once the merged cache is safely written. Raises `CacheError` when the shards do
    not belong together or some are missing.
    """
    paths = find_shard_caches(targets)
    if not paths:
        raise CacheError("no shard caches found; pass the files (or the folder) written by `extract --shard I/N`")
    with contextlib.ExitStack() as locks:  # no shard job may rewrite a shard while its rows are copied
        for path in paths:
            locks.enter_context(CacheLock(path, wait=wait_for_lock))
        summary = _merge_locked(paths, out_dir, wait_for_lock)
    if delete_shards:  # after the locks are released: `remove_cache_files` takes each shard's lock itself
        deleted = [removed for path in paths for removed in remove_cache_files(path)]
        summary = replace(summary, deleted=deleted)
    return summary


def _merge_locked(paths: list[Path], out_dir: Path | None, wait_for_lock: bool) -> MergeSummary:
    """Merge shard caches whose locks the caller holds (`deleted` is left empty)."""
    shards = [read_shard_cache(path) for path in paths]
    _check_together(shards)
    first = shards[0]
    dest = Path(out_dir or first.path.parent) / merged_cache_name(first.path.name)
    dest.parent.mkdir(parents=True, exist_ok=True)

    index, usable_sources, failures = _reassemble(shards)
    source_of = {}
    for record, source in zip(index.records, usable_sources):
        source_of.setdefault(record.sha256, source)
    if not source_of:
        raise DatasetError(f"none of the images of {first.info.dataset.name} could be read in any shard, "
                           "so there is nothing to merge; check the dataset")
    notes = []
    roots = sorted({str(shard.info.dataset.root) for shard in shards})
    if len(roots) > 1:
        notes.append(f"the shards read the dataset at different paths ({', '.join(roots)}); the merged cache "
                     f"records {first.info.dataset.root}")
    info = first.info
    contents = CacheContents(spec=info.spec, weights=info.weights, origin=info.origin, versions=info.versions,
                             name=info.dataset.name, index=index, usable=list(index.records), failures=failures)
    with CacheLock(dest, wait=wait_for_lock):
        remove_stale_temps(dest)  # the temporary file of a merge that was killed
        write_dataset_cache(dest, contents, source_of, keep_existing_rows=False)
    rows = len(set(source_of))
    return MergeSummary(cache_path=str(dest), shards=[str(shard.path) for shard in shards], images=len(index.records),
                        rows=rows, failures=len(failures), deleted=[], notes=notes)


def _is_shard_cache(path: Path) -> bool:
    try:
        return read_cache_info(path).shard is not None
    except CacheError:
        return False


def _check_together(shards: list[ShardCache]) -> None:
    """Raise `CacheError` unless the shards are shards 0..N-1 of one extraction of one dataset."""
    first = shards[0]
    for shard in shards[1:]:
        if shard.info.key != first.info.key:
            differing = [name for name, value in first.info.spec.__dict__.items()
                         if getattr(shard.info.spec, name) != value]
            raise CacheError(
                f"{shard.path.name} and {first.path.name} hold different features (they differ in "
                f"{', '.join(differing)}); run every shard with the same extract options (pass --precision "
                "explicitly when machines differ: auto may choose differently per machine)")
        if shard.info.dataset.name != first.info.dataset.name:
            raise CacheError(f"{shard.path.name} and {first.path.name} are shards of different datasets; merge "
                             "the shards of one dataset at a time")
        if shard.shard["count"] != first.shard["count"]:
            raise CacheError(f"{shard.path.name} is a shard of {shard.shard['count']} but {first.path.name} of "
                             f"{first.shard['count']}; merge shards from one --shard I/N run")
        if shard.shard.get("batch_size") != first.shard.get("batch_size"):
            raise CacheError(
                f"{shard.path.name} was extracted with --batch-size {shard.shard.get('batch_size')} but "
                f"{first.path.name} with {first.shard.get('batch_size')}; shards are dealt whole batches, so run "
                "every shard with the same --batch-size")
        if shard.shard["index_digest"] != first.shard["index_digest"]:
            raise CacheError(
                f"{shard.path.name} and {first.path.name} indexed different versions of the dataset (files were "
                "added, removed, renamed or relabelled between the shard jobs); run every shard again on the "
                "same data (unchanged shards finish at once)")
    count = first.shard["count"]
    seen: dict[int, Path] = {}
    for shard in shards:
        if shard.shard["index"] in seen:
            raise CacheError(f"shard {shard.shard['index']}/{count} was given twice ({seen[shard.shard['index']]} "
                             f"and {shard.path}); pass each shard cache once")
        seen[shard.shard["index"]] = shard.path
    missing = sorted(set(range(count)) - set(seen))
    if missing:
        listed = ", ".join(f"{i}/{count}" for i in missing)
        raise CacheError(f"shards {listed} are missing; run `extract --shard I/{count}` for them (or wait for "
                         "those jobs to finish), then merge again")


def _reassemble(shards: list[ShardCache]):
    """The merged usable records in full-index order, their row sources, and the failures list."""
    total = shards[0].shard["records"]
    tasks = list(shards[0].info.extra_targets)
    slots: list = [None] * total
    failed: dict[int, tuple[str, str]] = {}
    for shard in shards:
        info, images = shard.info, shard.info.images
        for i, position in enumerate(shard.image_position):
            extra = tuple(int(info.extra_targets[task][1][i]) for task in tasks)
            record = ImageRecord(relpath=images.relpath[i], label=int(images.label[i]), split=str(images.split[i]),
                                 sha256=str(images.sha256[i]), size=int(images.size[i]),
                                 mtime_ns=int(images.mtime_ns[i]), extra_labels=extra)
            slots[position] = (record, RowSource(shard.path, int(images.row[i])))
        for (relpath, reason), position in zip(info.failures, shard.failure_position):
            if position != NOT_IN_INDEX:
                failed[int(position)] = (relpath, reason)
    lost = [p for p in range(total) if slots[p] is None and p not in failed]
    if lost:
        raise CacheError(f"{len(lost)} images of the dataset are in none of the shard caches; the shards do not "
                         "add up (run their extract --shard jobs again)")
    skipped = [failure for failure, position in zip(shards[0].info.failures, shards[0].failure_position)
               if position == NOT_IN_INDEX]
    failures = skipped + [failed[p] for p in sorted(failed)]
    placed = [slot for slot in slots if slot is not None]
    first = shards[0].info
    index = DatasetIndex(root=first.data_root, layout=first.dataset.layout or "", class_names=first.class_names,
                         records=tuple(record for record, _ in placed),
                         extra_targets={task: first.extra_targets[task][0] for task in tasks},
                         notes=first.dataset.notes, carving=first.carving)
    # each shard counted its imbalance note on its own images: count it again on the whole dataset
    index = recount_imbalance(index, index.records)
    return index, [source for _, source in placed], failures
