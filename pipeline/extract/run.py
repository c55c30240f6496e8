"""`extract`: images on disk -> rows in a feature cache, extracting only what is missing.

`run_extract` is a sequence of small steps over one `ExtractRun` value:

1. `_start`: backbone, layer, input size, precision and weights -> a `FeatureSpec` (the cache
   key, `pipeline.extract.setup`) and the cache's path.
2. Take the cache lock (a second writer fails at once, or waits with `wait_for_lock`);
   `_clean_up`: remove what a killed run left, refuse a damaged cache before doing any work.
3. `_index`: read the layout, hash every file (stat fast path), assign missing splits
   (`pipeline.data.indexing`); for a shard, cut the index to the shard's images.
4. `_find_missing`: rows that already exist (cache, unfinished segments, sibling caches with
   the same key) are reused; `_refuse_*`: --strict and empty datasets stop here. With `--views K`
   every image has K + 1 rows, addressed by (sha256, view): each is missing or reused on its own,
   and the view-0 rows of a sibling cache of the plain images are reused too.
5. `_compute_missing`: decode and run the backbone on the rest in slot-stable batches,
   committing segments (`pipeline.extract.loop`); with `--engine ray` the same batches run on Ray
   Data actors and this process commits what they return (`pipeline.extract.engines.ray_data`).
6. `_drop_near_duplicates`: with `--drop-cross-split-duplicates`, drop the later-split member of
   each cross-split pair of near-duplicates, found on the rows just computed
   (`pipeline.extract.near_drops`); whole-dataset caches only.
7. `_consolidate`: write the cache through `pipeline.cache.builder` (skipped when nothing changed).

With `options.shard` set (`extract --shard I/N`), steps 4-7 cover only that shard's images and
write a shard cache; `pipeline.cache.merge` joins the shard caches (see `pipeline.cache.shard`).
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from pipeline.cache import slots
from pipeline.cache.builder import CacheContents, write_dataset_cache
from pipeline.cache.format import cache_file_name, feature_shape_of, read_file_stamps
from pipeline.cache.key import library_versions
from pipeline.cache.lock import CacheLock
from pipeline.cache.provenance import OriginInfo, WeightsInfo
from pipeline.cache.segments import existing_rows
from pipeline.cache.shard import ShardView, cut_index, shard_cache_path
from pipeline.cache.verify import damaged_cache_error, verify_cache
from pipeline.cache.writer import remove_stale_temps
from pipeline.data.dataset import DatasetIndex, ImageRecord
from pipeline.data.feeder import decoded_batches
from pipeline.data.hygiene import recount_imbalance
from pipeline.data.images import ResizeSpec
from pipeline.data.indexing import dataset_name_of, index_dataset
from pipeline.data.views import addresses_of, parse_view_address
from pipeline.errors import CacheError, DatasetError
from pipeline.extract.loop import LoopTimes, RowJob, compute_rows
from pipeline.extract.near_drops import DroppedNearDuplicate, find_near_drops, without_near_drops
from pipeline.extract.options import ExtractOptions, ExtractSummary
from pipeline.extract.setup import Setup, build_extractor, refuse_changed_weights, resolve_setup

_STRICT_LISTED = 20  # failures listed in a --strict error before "and N more"
#: --strict only needs to know whether each image decodes; a small target keeps that quick.
_STRICT_CHECK_SIZE = ResizeSpec(32, 32)


@dataclass
class ExtractRun:
    """One run of `extract`, filled in step by step (see the module doc)."""

    data_dir: Path
    cache_dir: Path
    options: ExtractOptions
    progress: Callable[[int, int], None] | None
    started: float
    setup: Setup
    extractor: object | None  # the FeatureExtractor, when `_start` already had to build it
    name: str
    cache_path: Path
    whole_cache_path: Path  # the merged cache's path, for a shard
    index: DatasetIndex | None = None
    shard_view: ShardView | None = None
    available: dict = field(default_factory=dict)  # address -> RowSource of every existing row
    wanted: dict = field(default_factory=dict)  # address -> path of every row to compute
    decode_failures: dict = field(default_factory=dict)  # sha256 -> reason
    times: LoopTimes = field(default_factory=LoopTimes)
    startup_seconds: float = 0.0
    wrote: bool = False
    ray_workers: int | None = None  # actors the Ray engine ran
    near_drops: list[DroppedNearDuplicate] = field(default_factory=list)  # `_drop_near_duplicates`
    near_dropped_records: list[ImageRecord] = field(default_factory=list)  # their records: rows kept

    def failures(self) -> list[tuple[str, str]]:
        """(relpath, reason) of every file of the dataset without features."""
        failures = [(s.relpath, s.reason) for s in self.index.skipped]
        failures += [(r.relpath, self.decode_failures[r.sha256]) for r in self.index.records
                     if r.sha256 in self.decode_failures]
        return failures

    def usable(self) -> list[ImageRecord]:
        """The records that decoded (all of them have features once the run has computed them)."""
        return [r for r in self.index.records if r.sha256 not in self.decode_failures]

    def addresses(self, record: ImageRecord) -> list[str]:
        """The row addresses of `record`: its sha256, or one per view with --views."""
        return addresses_of(record.sha256, self.setup.feature_spec.views)


def run_extract(data_dir: Path, cache_dir: Path, options: ExtractOptions = ExtractOptions(),
                progress: Callable[[int, int], None] | None = None) -> ExtractSummary:
    """Extract the features of every image under `data_dir` into a cache in `cache_dir`.

    `progress(done, total)` is called after each batch. Returns an `ExtractSummary`. Raises
    `PipelineError` subclasses for user-facing problems; an interruption leaves finished rows
    committed, and the next run resumes from them.
    """
    run = _start(Path(data_dir), Path(cache_dir), options, progress)
    # The lock comes before hashing: a second writer fails fast, and one that waited hashes
    # against the cache the first one wrote.
    with CacheLock(run.cache_path, wait=options.wait_for_lock):
        _clean_up(run)
        _index(run)
        _find_missing(run)
        if options.strict:
            _refuse_failures(run)
        if not (run.shard_view.total_records if run.shard_view else run.index.records):
            _refuse_empty(run.index.root, run.failures())
        if run.wanted:
            _compute_missing(run)
        if run.shard_view is None and all(r.sha256 in run.decode_failures for r in run.index.records):
            _refuse_empty(run.index.root, run.failures())
        if options.drop_cross_split_duplicates:
            _drop_near_duplicates(run)
        _consolidate(run)
    return _summary(run)


def _start(data_dir: Path, cache_dir: Path, options: ExtractOptions, progress) -> ExtractRun:
    started = time.perf_counter()
    _make_cache_dir(cache_dir)
    options.validate()
    if options.engine == "ray":  # a missing extra or a wrong address, said before hashing or building anything
        from pipeline.extract.engines.ray_data import check_engine

        check_engine(options.ray_address)
    setup, extractor = resolve_setup(options, cache_dir)
    name = options.name or dataset_name_of(data_dir)
    whole = cache_dir / cache_file_name(name, setup.feature_spec)
    path = shard_cache_path(whole, options.shard) if options.shard is not None else whole
    return ExtractRun(data_dir, cache_dir, options, progress, started, setup, extractor, name, path, whole,
                      startup_seconds=extractor.build_seconds if extractor is not None else 0.0)


def _make_cache_dir(cache_dir: Path) -> None:
    try:
        cache_dir.mkdir(parents=True, exist_ok=True)
    except OSError as error:
        raise CacheError(f"cannot create the cache directory {cache_dir} ({error.strerror}); pass --cache-dir "
                         f"(or set BOTTLENECK_CACHE_DIR to) a folder you can write to") from error


def _clean_up(run: ExtractRun) -> None:
    """Remove a killed run's temporary files; stop before extracting when the cache is damaged.

    Structure and provenance only (rows are not re-hashed: that is `cache verify`), so it is quick.
    """
    remove_stale_temps(run.cache_path)
    if run.cache_path.exists():
        problems = verify_cache(run.cache_path, check_rows=False)
        if problems:
            raise damaged_cache_error(run.cache_path, problems)


def _index(run: ExtractRun) -> None:
    options = run.options
    known = read_file_stamps(run.cache_path)
    if options.shard is not None:  # a whole-dataset cache saves re-hashing other shards' files
        known = {**read_file_stamps(run.whole_cache_path), **known}
    index = index_dataset(run.data_dir, options.layout, options.valid_fraction, options.test_fraction,
                          options.split_seed, options.drop_cross_split_duplicates, known)
    if options.shard is None:
        run.index = index
    else:
        run.shard_view = cut_index(index, options.shard, options.batch_size)
        run.index = run.shard_view.index


def _find_missing(run: ExtractRun) -> None:
    run.available = _existing_rows(run)
    for record in run.index.records:
        for address in run.addresses(record):
            if address not in run.available:
                run.wanted.setdefault(address, run.index.path_of(record))


def _existing_rows(run: ExtractRun) -> dict:
    spec = run.setup.feature_spec
    plain = spec.without_views().key() if spec.views is not None else None
    return existing_rows(run.cache_path, spec.key(), plain)


def _compute_missing(run: ExtractRun) -> None:
    spec, options = run.setup.feature_spec, run.options

    def get_extractor():
        built = run.extractor or build_extractor(run.setup.backbone, spec.layer, spec.input_size, run.setup.weights,
                                                 spec.precision, spec.pooling)
        refuse_changed_weights(built, spec)
        run.startup_seconds = built.build_seconds
        return built

    ordinals = (run.shard_view.ordinals if run.shard_view
                else slots.content_ordinals(a for r in run.index.records for a in run.addresses(r)))
    job = RowJob(items=list(run.wanted.items()), ordinals=ordinals, cache_path=run.cache_path, key=spec.key(),
                 store_dtype=spec.store_dtype, resize=run.setup.resize, batch_size=options.batch_size,
                 workers=options.workers, max_pixels=options.max_pixels, commit_rows=options.commit_rows,
                 views=spec.views)
    if options.engine == "ray":
        run.times, run.ray_workers = _compute_on_ray(run, job)
        run.startup_seconds = run.times.startup
    else:
        run.times = compute_rows(job, get_extractor, run.decode_failures, run.progress)
    run.available = _existing_rows(run)


def _compute_on_ray(run: ExtractRun, job: RowJob):
    """The same rows on Ray actors (`pipeline.extract.engines.ray_data`); this process stays the only writer."""
    from pipeline.extract.engines.ray_data import RayRun, compute_rows_on_ray
    from pipeline.extract.engines.ray_worker import WorkerSpec

    spec, options = run.setup.feature_spec, run.options
    worker = WorkerSpec(
        backbone=spec.backbone, layer=spec.layer, input_size=spec.input_size, resize=run.setup.resize,
        weights_request=_absolute_weights(options.weights), cache_dir=str(run.cache_dir.resolve()),
        precision=spec.precision, pooling=spec.pooling, store_dtype=spec.store_dtype,
        fingerprint=spec.weights_fingerprint, data_root=str(Path(run.index.root).resolve()), views=spec.views,
        max_pixels=options.max_pixels)
    engine = RayRun(options.ray_address, options.ray_workers, options.gpus_per_worker)
    return compute_rows_on_ray(job, worker, engine, run.decode_failures, run.progress)


def _absolute_weights(request: str) -> str:
    """--weights for an actor whose working directory is not ours: a file path made absolute."""
    from pipeline.backbones.weights import IMAGENET, RANDOM

    return request if request in (IMAGENET, RANDOM) else str(Path(request).resolve())


def _drop_near_duplicates(run: ExtractRun) -> None:
    """Drop near-duplicates across splits (`pipeline.extract.near_drops`); a shard sees too few images."""
    if run.shard_view is not None:
        run.index = run.index.with_records(run.index.records, notes=[
            "near-duplicates across splits are not dropped in a shard cache (they need every image's features); "
            "after `merge`, run extract on the whole dataset with --drop-cross-split-duplicates to drop them"])
        return
    usable = [r for r in run.usable() if r.sha256 in run.available]
    run.near_drops = find_near_drops(usable, run.available, [run.index.path_of(r) for r in usable])
    gone = {drop.path for drop in run.near_drops}
    run.near_dropped_records = [r for r in usable if r.relpath in gone]
    run.index = without_near_drops(run.index, run.near_drops)


def _consolidate(run: ExtractRun) -> None:
    """Write the cache with every usable image (`run.wrote` is False when nothing changed)."""
    run.index = recount_imbalance(run.index, run.usable())  # undecodable files have no rows to train on
    usable = [r for r in run.usable() if all(a in run.available for a in run.addresses(r))]
    failures = run.failures()
    shard, positions = None, None
    if run.shard_view is not None:
        shard = run.shard_view.attributes()
        positions = run.shard_view.positions([r.relpath for r in usable], failures)
    contents = CacheContents(
        spec=run.setup.feature_spec, weights=WeightsInfo.of(run.setup.weights), origin=OriginInfo.extracted(),
        versions=library_versions(), name=run.name, index=run.index, usable=usable, failures=failures,
        shard=shard, shard_positions=positions,
        kept_rows=[a for r in run.near_dropped_records for a in run.addresses(r) if a in run.available])
    run.wrote = write_dataset_cache(run.cache_path, contents, run.available)


def _summary(run: ExtractRun) -> ExtractSummary:
    usable = run.usable()
    extracted = sum(parse_view_address(address)[0] not in run.decode_failures for address in run.wanted)
    rows = len({a for r in usable + run.near_dropped_records for a in run.addresses(r)})
    split_counts: dict[str, int] = {}
    for record in usable:
        split_counts[record.split] = split_counts.get(record.split, 0) + 1
    shape = list(feature_shape_of(run.cache_path)) if run.cache_path.exists() else []
    spec = run.setup.feature_spec
    return ExtractSummary(
        cache_path=str(run.cache_path), dataset=run.name, layout=run.index.layout,
        classes=len(run.index.class_names), split_counts=split_counts, images=len(usable), extracted=extracted,
        reused=rows - extracted,
        failures=[{"path": p, "reason": r} for p, r in run.failures()],
        seconds=round(time.perf_counter() - run.started, 3), forward_seconds=round(run.times.forward, 3),
        weights=run.setup.weights.describe(), precision=f"{spec.precision} ({run.setup.precision_reason})",
        feature_shape=shape, wrote_cache=run.wrote, notes=list(run.index.notes),
        startup_seconds=round(run.startup_seconds, 3),
        waiting_for_images_seconds=round(run.times.waiting_for_images, 3),
        waiting_for_writer_seconds=round(run.times.waiting_for_writer, 3),
        shard=run.options.shard.to_text() if run.options.shard else None,
        views=spec.views.describe() if spec.views is not None else None,
        engine=run.options.engine, ray_workers=run.ray_workers,
        near_duplicates_dropped=[drop.to_dict() for drop in run.near_drops],
    )


def _refuse_failures(run: ExtractRun) -> None:
    """--strict: decode every image that needs extracting and fail before any forward pass."""
    options = run.options
    problems = [(s.relpath, s.reason) for s in run.index.skipped]
    failed = {}
    files = {parse_view_address(address)[0]: path for address, path in run.wanted.items()}  # each file once
    batches = decoded_batches(list(files.items()), _STRICT_CHECK_SIZE, options.batch_size, options.workers,
                              options.max_pixels)
    with contextlib.closing(batches):
        for batch in batches:
            failed.update(batch.failures)
    problems += [(r.relpath, failed[r.sha256]) for r in run.index.records if r.sha256 in failed]  # every copy
    if problems:
        listed = "\n  ".join(f"{p}: {r}" for p, r in problems[:_STRICT_LISTED])
        more = f"\n  ... and {len(problems) - _STRICT_LISTED} more" if len(problems) > _STRICT_LISTED else ""
        raise DatasetError(
            f"--strict: {len(problems)} files cannot be used, so nothing was extracted:\n  {listed}{more}\n"
            "Fix or remove these files, or run without --strict to skip them (they are then listed in the cache)."
        )


def _refuse_empty(root: Path, failures: list[tuple[str, str]]) -> None:
    listed = "\n  ".join(f"{path}: {reason}" for path, reason in failures[:_STRICT_LISTED])
    raise DatasetError(
        f"none of the {len(failures)} image files in {root} could be read, so there is nothing to "
        f"extract:\n  {listed}\nCheck that the folder holds real image files."
    )
