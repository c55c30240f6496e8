"""What `extract` can be asked (`ExtractOptions`) and what it reports (`ExtractSummary`)."""

from __future__ import annotations

from dataclasses import dataclass, field

from pipeline.cache.shard import Shard
from pipeline.data.images import DEFAULT_MAX_PIXELS
from pipeline.data.splits import DEFAULT_SPLIT_SEED, DEFAULT_TEST_FRACTION, DEFAULT_VALID_FRACTION
from pipeline.data.views import DEFAULT_VIEW_SEED, ViewSpec
from pipeline.errors import UsageError

DEFAULT_BATCH_SIZE = 32
#: Longest `--name`: the cache file name adds about 40 characters, and file systems allow 255.
MAX_NAME_CHARACTERS = 150
#: Where the forward passes run: this process, or a pool of Ray Data actors (`pipeline.extract.engines`).
ENGINES = ("local", "ray")


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
    views: int = 0  # augmented views per image on top of the plain one (`pipeline.data.views`)
    view_seed: int = DEFAULT_VIEW_SEED
    engine: str = "local"
    ray_address: str | None = None  # None: start a local Ray instance; "auto" or "ray://host:port": join one
    ray_workers: int | None = None  # actors, one backbone each (default: what the cluster's CPUs or GPUs allow)
    gpus_per_worker: float = 0.0

    def validate(self) -> None:
        """`UsageError` for values no run can use."""
        if self.batch_size < 1:
            raise UsageError(f"batch size must be at least 1, got {self.batch_size}")
        if self.name is not None:
            check_dataset_name(self.name)
        if self.commit_rows is not None and self.commit_rows < 1:
            raise UsageError(f"commit rows must be at least 1 (or None for the default), got {self.commit_rows}")
        if self.views < 0:
            raise UsageError(f"--views must be 0 (plain images only) or more, got {self.views}")
        if self.views and self.shard is not None:
            raise UsageError("--views cannot be combined with --shard yet: `merge` joins shard caches by image, not "
                             "by view; extract the views on one machine, or shard a plain extraction")
        if self.engine not in ENGINES:
            raise UsageError(f"--engine must be one of {', '.join(ENGINES)}, got {self.engine!r}")
        if self.engine != "ray" and (self.ray_address is not None or self.ray_workers is not None
                                     or self.gpus_per_worker):
            raise UsageError("--ray-address and --gpus-per-worker only apply to --engine ray; add --engine ray, or "
                             "drop them to extract in this process")
        if self.ray_workers is not None and self.ray_workers < 1:
            raise UsageError(f"--workers must be at least 1, got {self.ray_workers}")
        if self.gpus_per_worker < 0:
            raise UsageError(f"--gpus-per-worker must be 0 (CPU actors) or more, got {self.gpus_per_worker}")

    def view_spec(self) -> ViewSpec | None:
        """The views to cache, or None for plain images only."""
        return ViewSpec(self.views, seed=self.view_seed) if self.views else None


@dataclass
class ExtractSummary:
    """What an `extract` run did, for the CLI summary and `--json`."""

    cache_path: str
    dataset: str
    layout: str
    classes: int
    split_counts: dict
    images: int
    extracted: int  # rows computed by this run (one per image, or per view of it with --views)
    reused: int  # rows already cached
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
    views: str | None = None  # what `--views` cached, or None
    engine: str = "local"
    ray_workers: int | None = None  # actors the Ray engine ran (None with the local engine)
    near_duplicates_dropped: list = field(default_factory=list)  # --drop-cross-split-duplicates, after extraction

    @property
    def images_per_second(self) -> float:
        return self.extracted / self.forward_seconds if self.forward_seconds else 0.0

    def to_dict(self) -> dict:
        data = dict(self.__dict__)
        data["images_per_second"] = round(self.images_per_second, 2)
        return data


def check_dataset_name(name: str) -> None:
    """`UsageError` unless `name` (`--name`) is a plain file-name part: the cache must land inside --cache-dir."""
    if (not name or name in (".", "..") or name.startswith(".") or any(c in name for c in "/\\")
            or not name.isprintable() or len(name) > MAX_NAME_CHARACTERS):
        raise UsageError(f"--name {name!r} cannot be part of a cache file name: use at most {MAX_NAME_CHARACTERS} "
                         "printable characters without '/' or '\\', not starting with '.' (e.g. --name pets)")
