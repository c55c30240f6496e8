"""Miniature inputs shared by several test modules (test modules never import from each other)."""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np

from pipeline.heads.features import FeatureSet, SplitData


def feature_set(classes=5, per_class=(40, 10, 10), dims=16, noise=1.0, seed=0, shape=None):
    """Gaussian blobs as a FeatureSet: `classes` centres, `per_class` rows per class in train/valid/test."""
    rng = np.random.default_rng(seed)
    centres = rng.normal(size=(classes, dims)) * 3

    def split(n):
        y = np.repeat(np.arange(classes), n)
        x = (centres[y] + rng.normal(size=(len(y), dims)) * noise).astype(np.float32)
        return SplitData(x, y, tuple(str(i) for i in range(len(y))))

    info = SimpleNamespace(class_names=tuple(f"c{i}" for i in range(classes)), feature_shape=shape or (dims,))
    return FeatureSet(info, dict(zip(("train", "valid", "test"), (split(n) for n in per_class))))
