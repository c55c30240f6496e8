"""`predict`: classify new images with a saved head, through the exact extraction it was fitted on.

The head's sidecar records the feature spec (backbone, layer, input size, resize policy,
preprocessing, precision, pooling, store dtype) and where its weights came from. The same
weights are resolved again and must have the same fingerprint; the features are then computed,
stored-dtype rounded and pooled exactly as the cache did, so predictions match what the head saw.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from pipeline.backbones.registry import get_backbone
from pipeline.backbones.weights import resolve_weights
from pipeline.cache.key import ORIGIN_IMPORTED_NPZ, FeatureSpec
from pipeline.cache.rows import pool_rows
from pipeline.data.images import ResizeSpec
from pipeline.errors import HeadError
from pipeline.heads.features import HEAD_POOLING
from pipeline.heads.store import check_feature_key, load_head
from pipeline.predict.images import DEFAULT_TOP_K, decoded_batches, in_given_order


def predict_images(image_paths, head_path: Path, cache_dir: Path, top_k: int = DEFAULT_TOP_K) -> list[dict]:
    """Top-k (label, probability) for each image; undecodable images get an `error` instead."""
    from pipeline.backbones.forward import FeatureExtractor

    head, sidecar = load_head(head_path)
    spec = FeatureSpec.from_dict(sidecar["feature_spec"])
    check_feature_key(sidecar, spec.key(), "its recorded feature spec")
    if sidecar["origin"]["kind"] == ORIGIN_IMPORTED_NPZ:
        raise HeadError(
            f"head {head_path} was fitted on features imported from an .npz file, made by weights and "
            "preprocessing this tool cannot verify, so new images cannot be featurised the same way. "
            "Extract the dataset (`extract`) and fit a head on that cache to predict"
        )
    backbone = get_backbone(spec.backbone)
    weights = resolve_weights(backbone, sidecar["extraction"]["weights"]["request"], cache_dir, spec.input_size)
    extractor = FeatureExtractor(backbone, spec.layer, spec.input_size, weights, spec.precision, spec.pooling)
    if extractor.fingerprint != spec.weights_fingerprint:
        raise HeadError(
            f"the {spec.backbone} weights available here ({weights.describe()}) differ from the ones head "
            f"{sidecar['_path']} was fitted with; use the same weights source (see `weights`)"
        )
    resize = ResizeSpec(spec.input_size, spec.input_size, spec.resize_policy)
    class_names = sidecar["class_names"]
    results: list[dict] = []
    paths = [Path(p) for p in image_paths]
    for decoded, pixels in decoded_batches(paths, resize, results):
        features = extractor(pixels).astype(spec.store_dtype).astype(np.float32)
        probabilities = head.predict_proba(pool_rows(features, HEAD_POOLING))
        for path, row in zip(decoded, probabilities):
            best = np.argsort(-row)[:top_k]
            results.append({"path": str(path), "predictions": [
                {"label": class_names[i], "probability": float(row[i])} for i in best]})
    return in_given_order(results, paths)
