"""A synthetic feature cache the size of the classic dog-breed bottleneck, for timing heads.

133 classes, 6,680 / 835 / 836 train / valid / test rows of 7x7x512 features (what VGG16
`block5_pool` gives the dogImages dataset), written with the library's own cache writer so heads
read it exactly as they read a real cache. Extracting the real thing would take hours on a CPU,
and the heads' cost depends only on these shapes and on how hard the problem is.

The features imitate post-ReLU activations: every class shares a sparse non-negative channel
profile and differs from the others by a small class-specific offset (breeds look alike); an image
adds image-level variation (which pooling keeps, so classes overlap and a linear head reaches
roughly 0.7 test accuracy, like real breeds) and per-position noise, spread over the 7x7 grid
with a random spatial pattern, and is rectified.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np

from pipeline.cache.builder import CacheContents, write_dataset_cache
from pipeline.cache.format import cache_file_name, partial_dir_of
from pipeline.cache.key import FeatureSpec, library_versions
from pipeline.cache.provenance import OriginInfo, WeightsInfo
from pipeline.cache.segments import SegmentWriter, existing_rows
from pipeline.data.dataset import DatasetIndex, ImageRecord

DOG_SPLITS = {"train": 6680, "valid": 835, "test": 836}
DOG_CLASSES = 133
VGG16_BOTTLENECK = (7, 7, 512)
#: Sparsity of the shared channel profile (gamma shape < 1: many near-zero channels, like ReLU outputs).
_PROFILE_SHAPE = 0.5
#: Class-specific offsets and image-level variation: their ratio sets how much classes overlap.
_CLASS_SPREAD = 0.22
_IMAGE_NOISE = 1.0
_POSITION_NOISE = 1.0
_BLOCK_ROWS = 256


def write_feature_cache(cache_dir: Path, name: str = "synthetic-dogs", classes: int = DOG_CLASSES,
                        split_sizes: dict = DOG_SPLITS, feature_shape=VGG16_BOTTLENECK,
                        store_dtype: str = "float32", seed: int = 0) -> Path:
    """Write the cache and return its path (rows identical for any `store_dtype`, up to rounding)."""
    spec = FeatureSpec(backbone="vgg16", weights_fingerprint="synthetic-benchmark-features", layer="block5_pool",
                       input_size=224, resize_policy="stretch", resize_filter="bilinear", preprocessing="caffe",
                       precision="float32", pooling="none", store_dtype=store_dtype)
    path = Path(cache_dir) / cache_file_name(name, spec)
    rng = np.random.default_rng(seed)
    channels = feature_shape[-1]
    profile = rng.gamma(_PROFILE_SHAPE, 1.0, channels)
    prototypes = (profile + _CLASS_SPREAD * rng.standard_normal((classes, channels))).astype(np.float32)
    records = []
    for split, count in split_sizes.items():
        for i in range(count):
            label = int(rng.integers(classes))
            sha = hashlib.sha256(f"{seed}:{split}:{i}".encode()).hexdigest()
            records.append(ImageRecord(f"{split}/{label:03d}/{i:05d}.jpg", label, split, sha, size=0, mtime_ns=0))

    writer = SegmentWriter(partial_dir_of(path), spec.key(), tuple(feature_shape), store_dtype)
    for start in range(0, len(records), _BLOCK_ROWS):
        block = records[start:start + _BLOCK_ROWS]
        labels = np.array([r.label for r in block])
        writer.add([r.sha256 for r in block], _features(prototypes[labels], feature_shape, rng).astype(store_dtype))
    writer.flush()

    index = DatasetIndex(Path(cache_dir) / name, "generic", tuple(f"class_{c:03d}" for c in range(classes)),
                         tuple(records), notes=("synthetic benchmark features (benchmarks/feature_cache.py)",))
    weights = WeightsInfo(source="synthetic", path=None, verified=None, request="synthetic",
                          description="synthetic features, no backbone")
    contents = CacheContents(spec=spec, weights=weights, origin=OriginInfo.extracted(), versions=library_versions(),
                             name=name, index=index, usable=records, failures=[])
    write_dataset_cache(path, contents, existing_rows(path, spec.key()))
    return path


def _features(prototypes: np.ndarray, shape, rng: np.random.Generator) -> np.ndarray:
    """(n, h, w, c) rectified maps whose spatial mean follows each row of `prototypes` (n, c)."""
    n, channels = prototypes.shape
    height, width = shape[0], shape[1]
    image_level = prototypes + _IMAGE_NOISE * rng.standard_normal((n, channels), dtype=np.float32)
    spatial = rng.gamma(2.0, 0.5, (n, height, width, 1)).astype(np.float32)
    maps = image_level[:, None, None, :] * spatial
    maps += _POSITION_NOISE * rng.standard_normal((n, height, width, channels), dtype=np.float32)
    return np.maximum(maps, 0.0)
