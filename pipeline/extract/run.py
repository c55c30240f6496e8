"""`extract`: images on disk -> rows in a feature cache, extracting only what is missing.

Steps, each a function below:
1. `resolve_setup`: backbone, layer, input size, precision and weights -> a `FeatureSpec` (the
   cache key). The weights fingerprint comes from a memo when possible, so an unchanged re-run
   never imports TensorFlow.
2. Take the cache lock (a second writer fails at once, or waits with `wait_for_lock`); clean
   up after a killed run; refuse a damaged cache before doing any work.
3. `index_dataset`: read the layout, hash every file (stat fast path), assign missing splits.
4. Find rows that already exist (cache, unfinished segments, sibling caches with the same key),
   decode and run the backbone on the rest in slot-stable batches, commit segments.
5. Write the consolidated cache atomically (skipped when nothing changed).

With `shard` set (`extract --shard I/N`), steps 4-5 cover only that shard's images and write a
shard cache; `pipeline.cache.merge` joins the shard caches (see `pipeline.cache.shard`).
"""

from __future__ import annotations

import contextlib
import json
import logging
import re
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from queue import Queue
from typing import Callable


from pipeline.cache import writer as cache_writer


from pipeline.extract import slots
from pipeline.backbones.registry import BackboneSpec, get_backbone
from pipeline.cache.format import cache_file_name, damaged_cache_error, open_cache_file, partial_dir_of, verify_cache
from pipeline.cache.builder import cache_attributes, cache_view, view_digest
from pipeline.data.dataset import DatasetIndex, ImageRecord, SkippedFile
from pipeline.errors import CacheError, DatasetError, PipelineError, UsageError
from pipeline.data.feeder import decoded_batches
from pipeline.data.hashing import FileStamp, hash_files
from pipeline.data.hygiene import apply_hygiene
from pipeline.data.images import DEFAULT_MAX_PIXELS, ResizeSpec
from pipeline.data.layouts import discover
from pipeline.backbones.precision import resolve_precision
from pipeline.cache.key import FeatureSpec, library_versions
from pipeline.cache.shard import Shard, ShardView, cut_index, shard_cache_path
from pipeline.data.splits import DEFAULT_SPLIT_SEED, DEFAULT_TEST_FRACTION, DEFAULT_VALID_FRACTION, assign_splits
from pipeline.backbones.weights import FingerprintMemo, ResolvedWeights, resolve_weights

log = logging.getLogger(__name__)

DEFAULT_BATCH_SIZE = 32
_STRICT_LISTED = 20  # failures listed in a --strict error before "and N more"
#: --strict only needs to know whether each image decodes; a small target keeps that quick.
_STRICT_CHECK_SIZE = ResizeSpec(32, 32)


@dataclass(frozen=True)
class ExtractOptions:
    """Everything `extract` can be asked; defaults reproduce the classic VGG16 bottleneck."""

    backbone: str = "vgg16"
    layer: str | None = None
    input_size: int | None = None
    resize: str = "stretch"
    pool: str = "none"
    precision: str = "auto"
    weights: str = "imagenet"
    store_dtype: str = "float32"
    batch_size: int = DEFAULT_BATCH_SIZE
    workers: int | None = None
    layout: str = "auto"
    name: str | None = None
    valid_fraction: float = DEFAULT_VALID_FRACTION
    test_fraction: float = DEFAULT_TEST_FRACTION
    split_seed: int = DEFAULT_SPLIT_SEED
    strict: bool = False
    max_pixels: int | None = DEFAULT_MAX_PIXELS
    wait_for_lock: bool = False
    drop_cross_split_duplicates: bool = False
    commit_rows: int | None = None  # commit finished rows every N images (default: every 32 MB or 30 s)
    shard: Shard | None = None


@dataclass(frozen=True)
class Setup:
    """The resolved feature configuration of a run."""

    backbone: BackboneSpec
    resize: ResizeSpec
    weights: ResolvedWeights
    precision_reason: str
    feature_spec: FeatureSpec


@dataclass
class ExtractSummary:
    """What an `extract` run did, for the CLI summary and `--json`."""

    cache_path: str
    dataset: str
    layout: str
    classes: int
    split_counts: dict
    images: int
    extracted: int
    reused: int
    failures: list
    seconds: float
    forward_seconds: float
    weights: str
    precision: str
    feature_shape: list
    wrote_cache: bool
    notes: list = field(default_factory=list)
    startup_seconds: float = 0.0  # building the backbone (importing TensorFlow, loading weights)
    waiting_for_images_seconds: float = 0.0  # backbone idle, waiting for decoded images
    waiting_for_writer_seconds: float = 0.0  # backbone idle, waiting for the segment writer
    shard: str | None = None

    @property
    def images_per_second(self) -> float:
        return self.extracted / self.forward_seconds if self.forward_seconds else 0.0

    def to_dict(self) -> dict:
        data = dict(self.__dict__)
        data["images_per_second"] = round(self.images_per_second, 2)
        return data


def dataset_name_of(data_dir: Path) -> str:
    """A file-name-safe name for a dataset folder (its base name; a manifest file's name without suffix)."""
    path = Path(data_dir).resolve()
    name = re.sub(r"[^A-Za-z0-9_.-]+", "_", path.stem if path.is_file() else path.name).strip("._")
    return name or "dataset"


def resolve_setup(options: ExtractOptions, cache_dir: Path) -> tuple[Setup, object]:
    """Resolve backbone, size, precision and weights into a `Setup`.

    Returns (setup, extractor): `extractor` is the built `FeatureExtractor` when the weights
    fingerprint had to be computed (no memo yet), else None - build it only if rows are missing.
    """
    backbone = get_backbone(options.backbone)
    size = options.input_size or backbone.default_input_size
    backbone.validate_input_size(size)
    layer = options.layer or backbone.default_layer
    resize = ResizeSpec(size, size, options.resize)
    precision, reason = resolve_precision(options.precision)
    weights = resolve_weights(backbone, options.weights, cache_dir, size)
    memo = FingerprintMemo(cache_dir)
    fingerprint = memo.get(weights.identity(layer))
    extractor = None
    if fingerprint is None:
        extractor = _build_extractor(backbone, layer, size, weights, precision, options.pool)
        fingerprint = extractor.fingerprint
        try:
            memo.put(weights.identity(layer), fingerprint)
        except OSError as error:  # only a speed-up for the next run (e.g. the disk is full)
            log.warning("could not save the weights fingerprint in %s: %s", memo.path, error)
    spec = FeatureSpec(
        backbone=backbone.name, weights_fingerprint=fingerprint, layer=layer, input_size=size,
        resize=resize.describe(), preprocessing=backbone.preprocessing, precision=precision,
        pooling=options.pool, store_dtype=options.store_dtype,
    )
    return Setup(backbone, resize, weights, reason, spec), extractor


def index_dataset(data_dir: Path, options: ExtractOptions, known_stamps: dict | None = None) -> DatasetIndex:
    """Discover, hash and split the dataset, then check it for leakage (`pipeline.data.hygiene`).

    Unreadable files move to `skipped` with a reason.
    """
    hashed = hash_dataset(discover(data_dir, options.layout), known_stamps)
    split = assign_splits(hashed, options.valid_fraction, options.test_fraction, options.split_seed)
    return apply_hygiene(split, drop_cross_split=options.drop_cross_split_duplicates)


def hash_dataset(index: DatasetIndex, known_stamps: dict | None = None) -> DatasetIndex:
    """Fill in every record's sha256, size and mtime; files that cannot be read become skipped."""
    results = hash_files((index.path_of(r) for r in index.records), known=known_stamps or {})
    records, skipped = [], []
    for record, result in zip(index.records, results):
        if result.sha256 is None:
            skipped.append(SkippedFile(record.relpath, result.error))
        else:
            records.append(ImageRecord(
                relpath=record.relpath, label=record.label, split=record.split, sha256=result.sha256,
                size=result.stamp.size, mtime_ns=result.stamp.mtime_ns, extra_labels=record.extra_labels,
            ))
    return index.with_records(records, skipped=skipped)


def run_extract(data_dir: Path, cache_dir: Path, options: ExtractOptions = ExtractOptions(),
                progress: Callable[[int, int], None] | None = None) -> ExtractSummary:
    """Extract the features of every image under `data_dir` into a cache in `cache_dir`.

    `progress(done, total)` is called after each batch. Returns an `ExtractSummary`. Raises
    `PipelineError` subclasses for user-facing problems; an interruption leaves finished rows
    committed, and the next run resumes from them.
    """
    started = time.perf_counter()
    data_dir, cache_dir = Path(data_dir), Path(cache_dir)
    _make_cache_dir(cache_dir)
    _validate(options)
    setup, extractor = resolve_setup(options, cache_dir)
    spec = setup.feature_spec
    name = options.name or dataset_name_of(data_dir)
    cache_path = cache_dir / cache_file_name(name, spec)
    whole_cache_path = cache_path
    if options.shard is not None:
        cache_path = shard_cache_path(cache_path, options.shard)

    # The lock comes before hashing: a second writer fails fast, and one that waited hashes
    # against the cache the first one wrote.
    with cache_writer.CacheLock(cache_path, wait=options.wait_for_lock):
        cache_writer.remove_stale_temps(cache_path)
        if cache_path.exists():
            _check_own_cache(cache_path)
        shard_view = None
        if options.shard is None:
            index = index_dataset(data_dir, options, _known_stamps(cache_path))
        else:
            known = _known_stamps(whole_cache_path)  # a whole-dataset cache saves re-hashing other shards' files
            known.update(_known_stamps(cache_path))
            shard_view = cut_index(index_dataset(data_dir, options, known), options.shard, options.batch_size)
            index = shard_view.index
        available = cache_writer.existing_rows(cache_path, spec.key())
        wanted = {}
        for record in index.records:
            if record.sha256 not in available:
                wanted.setdefault(record.sha256, index.path_of(record))
        if options.strict:
            _refuse_failures(index, wanted, options)
        if not (shard_view.total_records if shard_view else index.records):
            _refuse_empty(index.root, _failures(index, {}))
        decode_failures, times = {}, LoopTimes()
        # the backbone may already be built (resolve_setup fingerprints new weights with it)
        startup_seconds = extractor.build_seconds if extractor is not None else 0.0
        if wanted:
            def get_extractor():
                nonlocal startup_seconds
                built = extractor or _build_extractor(setup.backbone, spec.layer, spec.input_size, setup.weights,
                                                      spec.precision, spec.pooling)
                _check_fingerprint(built, spec)
                startup_seconds = built.build_seconds
                return built

            ordinals = shard_view.ordinals if shard_view else slots.content_ordinals(r.sha256 for r in index.records)
            times = _extract_rows(list(wanted.items()), ordinals, cache_path, spec, setup.resize, get_extractor,
                                  options, decode_failures, progress)
            available = cache_writer.existing_rows(cache_path, spec.key())
        if shard_view is None and all(r.sha256 in decode_failures for r in index.records):
            _refuse_empty(index.root, _failures(index, decode_failures))
        wrote = _consolidate(cache_path, setup, index, name, available, decode_failures, shard_view)

    failures = _failures(index, decode_failures)
    usable = [r for r in index.records if r.sha256 not in decode_failures]
    split_counts = {}
    for record in usable:
        split_counts[record.split] = split_counts.get(record.split, 0) + 1
    return ExtractSummary(
        cache_path=str(cache_path), dataset=name, layout=index.layout, classes=len(index.class_names),
        split_counts=split_counts, images=len(usable), extracted=len(wanted) - len(decode_failures),
        reused=len({r.sha256 for r in usable}) - (len(wanted) - len(decode_failures)),
        failures=[{"path": p, "reason": r} for p, r in failures], seconds=round(time.perf_counter() - started, 3),
        forward_seconds=round(times.forward, 3), weights=setup.weights.describe(),
        precision=f"{spec.precision} ({setup.precision_reason})", feature_shape=list(_shape_of(cache_path)),
        wrote_cache=wrote, notes=list(index.notes), startup_seconds=round(startup_seconds, 3),
        waiting_for_images_seconds=round(times.waiting_for_images, 3),
        waiting_for_writer_seconds=round(times.waiting_for_writer, 3),
        shard=options.shard.to_text() if options.shard else None,
    )


def _make_cache_dir(cache_dir: Path) -> None:
    try:
        cache_dir.mkdir(parents=True, exist_ok=True)
    except OSError as error:
        raise CacheError(f"cannot create the cache directory {cache_dir} ({error.strerror}); pass --cache-dir "
                         f"(or set BOTTLENECK_CACHE_DIR to) a folder you can write to") from error


def _validate(options: ExtractOptions) -> None:
    if options.batch_size < 1:
        raise UsageError(f"batch size must be at least 1, got {options.batch_size}")
    if options.commit_rows is not None and options.commit_rows < 1:
        raise UsageError(f"commit rows must be at least 1 (or None for the default), got {options.commit_rows}")


def _build_extractor(backbone, layer, size, weights, precision, pooling):
    from pipeline.backbones.forward import FeatureExtractor

    return FeatureExtractor(backbone, layer, size, weights, precision, pooling)


def _check_fingerprint(extractor, spec: FeatureSpec) -> None:
    if extractor.fingerprint != spec.weights_fingerprint:
        raise PipelineError(
            "the weights file changed while this run was starting (its fingerprint differs from the "
            "recorded one); run the command again"
        )


def _check_own_cache(cache_path: Path) -> None:
    """Stop before extracting when the cache is damaged or was tampered with.

    Structure and provenance only (rows are not re-hashed: that is `cache verify`), so it is quick.
    """
    problems = verify_cache(cache_path, check_rows=False)
    if problems:
        raise damaged_cache_error(cache_path, problems)


def _known_stamps(cache_path: Path) -> dict:
    """relpath -> (stamp, sha256) from the previous run of this cache, for the stat fast path."""
    if not cache_path.exists():
        return {}
    try:
        with open_cache_file(cache_path) as handle:
            images = handle["images"]
            relpaths = images["relpath"][()]
            shas = images["sha256"][()].astype(str)
            sizes, mtimes = images["size"][()], images["mtime_ns"][()]
            root = json.loads(handle.attrs["dataset"]).get("root")
    except (PipelineError, KeyError, OSError):
        return {}
    return {
        str(Path(root) / bytes(p).decode("utf-8", "surrogateescape")): (FileStamp(int(s), int(m)), sha)
        for p, sha, s, m in zip(relpaths, shas, sizes, mtimes)
    }


def _refuse_failures(index: DatasetIndex, wanted: dict, options: ExtractOptions) -> None:
    """--strict: decode every image that needs extracting and fail before any forward pass."""
    problems = [(s.relpath, s.reason) for s in index.skipped]
    failed = {}
    batches = decoded_batches(list(wanted.items()), _STRICT_CHECK_SIZE, options.batch_size, options.workers,
                              options.max_pixels)
    with contextlib.closing(batches):
        for batch in batches:
            failed.update(batch.failures)
    problems += [(r.relpath, failed[r.sha256]) for r in index.records if r.sha256 in failed]  # every copy
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


class _BackgroundWriter:
    """Runs a `SegmentWriter` in its own thread so disk writes overlap the forward pass."""

    def __init__(self, writer: cache_writer.SegmentWriter):
        self.writer = writer
        self.queue: Queue = Queue(maxsize=2)
        self.error: BaseException | None = None
        self.thread = threading.Thread(target=self._run, name="segment-writer", daemon=True)
        self.thread.start()

    def _run(self):
        while True:
            item = self.queue.get()
            if item is None:
                break
            if self.error is None:
                try:
                    self.writer.add(*item)
                except BaseException as error:  # re-raised in the main thread
                    self.error = error

    def put(self, shas, block):
        if self.error is not None:
            raise self.error
        self.queue.put((shas, block))

    def close(self):
        """Drain the queue and commit what is buffered (also on interruption)."""
        self.queue.put(None)
        self.thread.join()
        if self.error is None:
            self.writer.flush()
        if self.error is not None:
            raise self.error


@dataclass
class LoopTimes:
    """Where the extraction loop's time went: the forward pass, and waits that leave the backbone idle."""

    forward: float = 0.0
    waiting_for_images: float = 0.0  # blocked until the decoder had the next batch ready
    waiting_for_writer: float = 0.0  # blocked on the background segment writer (disk)


def _extract_rows(items, ordinals, cache_path, spec, resize, get_extractor, options, decode_failures,
                  progress) -> LoopTimes:
    """Decode and run the backbone on `items` [(sha, path)], committing segments. Returns the loop's timings.

    Batches are slot-stable (see `pipeline.extract.slots`): `ordinals` numbers the dataset's distinct
    contents, so each image is computed at the same batch position in every run. The backbone
    is built (`get_extractor()`) only when the first image decodes, so a re-run whose only
    missing images are undecodable never loads TensorFlow.
    """
    plan = slots.plan_batches(items, ordinals, options.batch_size)
    in_order = [(sha, path) for batch in plan for _, sha, path in batch.entries]
    decoded = decoded_batches(in_order, resize, options.batch_size, options.workers, options.max_pixels)
    extractor, writer = None, None
    done, times = 0, LoopTimes()
    batches = slots.slot_batches(plan, decoded, resize)
    try:
        while True:
            tick = time.perf_counter()
            batch = next(batches, None)
            times.waiting_for_images += time.perf_counter() - tick
            if batch is None:
                break
            decode_failures.update(batch.failures)
            if batch.shas:
                if extractor is None:
                    extractor = get_extractor()
                    writer = _BackgroundWriter(cache_writer.SegmentWriter(
                        partial_dir_of(cache_path), spec.key(), extractor.feature_shape, spec.store_dtype,
                        max_rows=options.commit_rows))
                tick = time.perf_counter()
                features = extractor(batch.pixels)[batch.slots]
                times.forward += time.perf_counter() - tick
                rows = features.astype(spec.store_dtype)
                tick = time.perf_counter()
                writer.put(batch.shas, rows)
                times.waiting_for_writer += time.perf_counter() - tick
            done += len(batch.shas) + len(batch.failures)
            if progress is not None:
                progress(done, len(items))
    finally:
        decoded.close()
        if writer is not None:
            tick = time.perf_counter()
            writer.close()
            times.waiting_for_writer += time.perf_counter() - tick
    log.info("ran the backbone on %d images in %.1fs (%.1fs waiting for images, %.1fs for the writer)",
             done - len(decode_failures), times.forward, times.waiting_for_images, times.waiting_for_writer)
    return times


def _consolidate(cache_path, setup, index, name, available, decode_failures, shard_view: ShardView | None = None) -> bool:
    """Write the cache with every usable image; returns False when nothing changed."""
    spec = setup.feature_spec
    usable = [r for r in index.records if r.sha256 not in decode_failures and r.sha256 in available]
    old_rows = [source for source in available.values() if source.path == cache_path]
    old_rows.sort(key=lambda source: source.row)
    plan = list(old_rows)
    row_of = {}
    for sha, source in available.items():
        if source.path == cache_path:
            row_of[sha] = source.row
    for record in usable:
        if record.sha256 not in row_of:
            row_of[record.sha256] = len(plan)
            plan.append(available[record.sha256])
    failures = _failures(index, decode_failures)
    view = cache_view(index, usable, row_of, failures)
    dataset_attrs = {"name": name, "root": str(index.root.resolve()), "layout": index.layout, "notes": list(index.notes)}
    if shard_view is not None:
        dataset_attrs["shard"] = shard_view.attributes()
        view["shard"] = shard_view.positions([r.relpath for r in usable], failures)
    digest = view_digest(view, dataset_attrs)
    created = cache_writer.now_iso()
    if cache_path.exists():
        with open_cache_file(cache_path) as handle:
            created = str(handle.attrs["created"])
            unchanged = len(plan) == len(old_rows) and handle.attrs.get("view_digest") == digest
        if unchanged:
            cache_writer.remove_partial(cache_path)  # left by a run killed after its last write: all in the cache
            return False
    attrs = cache_attributes(spec, setup.weights.to_attrs(), library_versions(), dataset_attrs, digest, created)
    shape = _shape_from_sources(plan) if plan else _shape_of(cache_path)
    cache_writer.write_cache(cache_path, attrs, view, plan, shape, spec.store_dtype)
    cache_writer.remove_partial(cache_path)
    return True


def _failures(index: DatasetIndex, decode_failures: dict) -> list[tuple[str, str]]:
    failures = [(s.relpath, s.reason) for s in index.skipped]
    failures += [(r.relpath, decode_failures[r.sha256]) for r in index.records if r.sha256 in decode_failures]
    return failures


def _shape_from_sources(plan) -> tuple[int, ...]:
    import h5py

    with h5py.File(plan[0].path, "r") as handle:
        return tuple(handle["features"].shape[1:])


def _shape_of(cache_path: Path) -> tuple[int, ...]:
    if not cache_path.exists():
        return ()
    with open_cache_file(cache_path) as handle:
        return tuple(handle["features"].shape[1:])
