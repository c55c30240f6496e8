"""The map: a 2-D embedding of the pooled features, PCA then t-SNE (scikit-learn), seeded.

PCA to `PCA_COMPONENTS` dimensions first (standard practice: it removes noise and makes t-SNE
faster); t-SNE (Barnes-Hut) then places similar images together. Above `MAP_MAX_POINTS` images a
seeded sample is embedded, flagged images always included, so the map stays quick to compute and
to draw.
"""

from __future__ import annotations

import numpy as np

#: PCA dimensions before t-SNE, t-SNE's perplexity (capped for small sets), seed, and the point cap.
PCA_COMPONENTS = 50
PERPLEXITY = 30.0
MAP_SEED = 0
MAP_MAX_POINTS = 5000
_MIN_POINTS = 4


def map_sample(count: int, always: np.ndarray, limit: int = MAP_MAX_POINTS, seed: int = MAP_SEED) -> np.ndarray:
    """Sorted indexes of the images to embed: all when `count` <= `limit`, else `always` plus a seeded sample."""
    if count <= limit:
        return np.arange(count)
    always = np.unique(np.asarray(always, dtype=np.int64))[:limit]
    rest = np.setdiff1d(np.arange(count), always)
    drawn = np.random.default_rng(seed).choice(rest, size=limit - len(always), replace=False)
    return np.sort(np.concatenate([always, drawn]))


def embed_2d(units: np.ndarray, seed: int = MAP_SEED) -> np.ndarray:
    """(n, 2) float32 coordinates scaled to [0, 1] on both axes (a line or a point for tiny sets)."""
    n = len(units)
    if n < _MIN_POINTS:
        coordinates = np.column_stack([np.linspace(0, 1, n), np.full(n, 0.5)]) if n > 1 else np.full((n, 2), 0.5)
        return coordinates.astype(np.float32)
    from sklearn.decomposition import PCA
    from sklearn.manifold import TSNE

    reduced = PCA(n_components=min(PCA_COMPONENTS, n, units.shape[1]), random_state=seed).fit_transform(units)
    perplexity = min(PERPLEXITY, (n - 1) / 3)
    coordinates = TSNE(n_components=2, perplexity=perplexity, init="pca", random_state=seed).fit_transform(reduced)
    low, high = coordinates.min(axis=0), coordinates.max(axis=0)
    return ((coordinates - low) / np.maximum(high - low, 1e-12)).astype(np.float32)
