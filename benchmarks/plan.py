"""What the benchmark runs: sizes and settings of every scenario, full and smoke.

The full plan is sized to finish in about 45 minutes on 2 CPU cores where VGG16 at 224x224
float32 runs at 3-4 images/s (10 minutes where it runs at 16 images/s). Choices, each stated in the report:
- Everything at full size uses photo-sized JPEGs (500x375) at VGG16's own 224x224 input,
  float32, batch 32.
- Target 1 alternates bare forward rounds with end-to-end extraction of chunks of JPEGs in one
  process (`pipeline_worker.py`), so both see the same machine load.
- Caching and memory at full size use one 1,000-image dataset: first run, naive script, re-run,
  +10%. Speed against the naive script alternates whole runs A B B A on a smaller dataset, so
  that load drifting over the minutes cancels.
- Memory is compared at 1,000 vs 10,000 images; 10,000 images at 224 px would take 50 minutes,
  so that scenario (and its naive counterpart) runs VGG16 at 64x64 and caches `block3_pool`
  (8x8x256 = 64 KB per image in float32): rows large enough that keeping them in memory would
  show plainly, at 1/12 of the compute.
- Heads run on a synthetic cache with the dog-breed shapes (`feature_cache.py`).
- Precision accuracy and storage use the real photos in ../shared/data/catsdogs when present.
- Fine-tuning (target 8) alternates epochs of block5 fine-tuning from the block4_pool cache (A)
  and from the JPEGs through the frozen block1-block4 (B), A B B A, in one process
  (`finetune_worker.py`), on the naive-speed photos, float32, batch `finetune_batch_size`.

The smoke plan runs every scenario on a handful of tiny images with random weights, for CI.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from benchmarks.common import BACKBONE_NAME
from benchmarks.feature_cache import DOG_CLASSES, DOG_SPLITS, VGG16_BOTTLENECK
from benchmarks.photos import PHOTO_SIZE
from pipeline.backbones.registry import get_backbone

#: The backbone of every scenario: its own input size and default layer are the full plan's.
BACKBONE = get_backbone(BACKBONE_NAME)


@dataclass(frozen=True)
class Plan:
    mode: str
    weights: str  # "imagenet" (verified VGG16) or "none" (random, smoke only)
    classes: int
    photo_size: tuple  # (width, height) of the generated JPEGs
    photos: int  # images of the throughput / caching / naive dataset
    added_fraction: float  # images added for the incremental re-run
    input_size: int
    batch_size: int
    forward_images: int  # images timed per variant by the bare forward-pass worker
    forward_variants: tuple
    pipeline_chunks: int  # end-to-end chunks alternated with bare rounds (target 1)
    pipeline_chunk_images: int
    pipeline_bare_images: int
    naive_speed_images: int  # dataset of the alternated runs against the naive script
    naive_speed_order: str  # "ABBA": ours, naive, naive, ours
    head_repeats: int  # each head is fitted this many times, interleaved; the median counts
    memory_sizes: tuple  # (small, large) image counts
    memory_input_size: int
    memory_layer: str
    heads_classes: int
    heads_splits: dict = field(default_factory=dict)
    heads_feature_shape: tuple = VGG16_BOTTLENECK
    use_real_photos: bool = True
    finetune_batch_size: int = 16
    finetune_order: str = "ABBA"  # epochs from the cache (A) and from the images (B)

    @property
    def added(self) -> int:
        return max(1, round(self.photos * self.added_fraction))

    def ranges(self) -> dict:
        """Which generated images each dataset uses (disjoint, except the memory sets)."""
        start, ranges = 0, {}
        for name, count in (("photos", self.photos), ("added", self.added),
                            ("chunks", self.pipeline_chunks * self.pipeline_chunk_images),
                            ("naive-speed", self.naive_speed_images)):
            ranges[name] = range(start, start + count)
            start += count
        for count in self.memory_sizes:
            ranges[f"memory-{count}"] = range(count)
        return ranges

    @property
    def images_needed(self) -> int:
        return max(r.stop for r in self.ranges().values())


FULL = Plan(
    mode="full", weights="imagenet", classes=6, photo_size=PHOTO_SIZE, photos=1000, added_fraction=0.10,
    input_size=BACKBONE.default_input_size, batch_size=32, forward_images=64,
    forward_variants=("float32", "bfloat16", "float32+xla"),
    pipeline_chunks=4, pipeline_chunk_images=96, pipeline_bare_images=64, naive_speed_images=256,
    naive_speed_order="ABBA", head_repeats=3,
    memory_sizes=(1000, 10000), memory_input_size=64, memory_layer="block3_pool",
    heads_classes=DOG_CLASSES, heads_splits=dict(DOG_SPLITS),
)

SMOKE = Plan(
    mode="smoke", weights="none", classes=2, photo_size=(64, 48), photos=10, added_fraction=0.10,
    input_size=32, batch_size=4, forward_images=4, forward_variants=("float32", "bfloat16"),
    pipeline_chunks=2, pipeline_chunk_images=4, pipeline_bare_images=4, naive_speed_images=4,
    naive_speed_order="AB", head_repeats=1,
    memory_sizes=(6, 12), memory_input_size=32, memory_layer=BACKBONE.default_layer,
    heads_classes=4, heads_splits={"train": 40, "valid": 12, "test": 12}, heads_feature_shape=(2, 2, 8),
    use_real_photos=False, finetune_batch_size=2, finetune_order="AB",
)
