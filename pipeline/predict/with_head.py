"""`predict`: classify new images with a saved head, through the exact extraction it was fitted on.

The head's extraction (`pipeline.predict.extraction`) is resolved again with the same weights;
the features are then computed, stored-dtype rounded and pooled exactly as the cache did, so
predictions match what the head saw. A fused head goes to `pipeline.predict.fused`.
A fine-tuned model (`fine-tune`) records its boundary cache's spec: the frozen layers run up to
the boundary layer, and its tuned layers and head take the full maps from there.
A head fitted with test-time augmentation (`fit-head --tta`, or a `search` winner with TTA) predicts
on the mean over the views it recorded (`pipeline.predict.tta`) unless `tta=False`; each result then
says how many views it averaged (`views_averaged`).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from pipeline.cache.rows import pool_rows
from pipeline.errors import HeadError
from pipeline.heads.graph import consumes_maps
from pipeline.heads.registry import FUSION_KIND
from pipeline.heads.store import read_sidecar
from pipeline.heads.tta import HeadTTA, head_tta
from pipeline.predict.extraction import load_head_extraction, require_head_weights
from pipeline.predict.images import DEFAULT_TOP_K, decoded_batches, in_given_order
from pipeline.predict.tta import require_view_spec, tta_probabilities


def predict_tta(head_path: Path, tta: bool = True) -> HeadTTA | None:
    """The views `predict_images(..., tta=tta)` averages for the head at `head_path` (None: the plain view)."""
    return head_tta(read_sidecar(head_path)) if tta else None


def predict_images(image_paths, head_path: Path, cache_dir: Path, top_k: int = DEFAULT_TOP_K,
                   tta: bool = True) -> list[dict]:
    """Top-k (label, probability) for each image; undecodable images get an `error` instead.

    A head fitted with test-time augmentation averages its recorded views unless `tta` is False (see module doc).
    """
    from pipeline.backbones.forward import FeatureExtractor

    record = read_sidecar(head_path)
    if record.kind == FUSION_KIND:
        from pipeline.predict.fused import predict_fused

        return predict_fused(image_paths, record, cache_dir, top_k)
    extraction = load_head_extraction(head_path, cache_dir)
    spec, head = extraction.spec, extraction.head
    extractor = FeatureExtractor(extraction.backbone, spec.layer, spec.input_size, extraction.weights,
                                 spec.precision, spec.pooling)
    require_head_weights(extraction, extractor.fingerprint)
    class_names = extraction.record.class_names
    views = head_tta(extraction.record) if tta else None
    view_spec = require_view_spec(spec.views, head_path) if views else None

    def features_of(pixels: np.ndarray) -> np.ndarray:
        features = extractor(pixels).astype(spec.store_dtype).astype(np.float32)
        return features if consumes_maps(head) else pool_rows(features, extraction.pooling)

    results: list[dict] = []
    paths = [Path(p) for p in image_paths]
    for decoded, pixels in decoded_batches(paths, extraction.resize, results):
        if views:
            probabilities, averaged = tta_probabilities(decoded, extraction.resize, view_spec, views,
                                                        lambda batch: head.predict_proba(features_of(batch)))
        else:
            probabilities = head.predict_proba(features_of(pixels))
        _require_finite(probabilities, head_path)
        # A multi-task head's other targets are predicted on the plain view.
        by_target = head.predict_all(features_of(pixels)) if hasattr(head, "predict_all") else {}
        for position, (path, row) in enumerate(zip(decoded, probabilities)):
            result = {"path": str(path), "predictions": _ranked(row, class_names, top_k)}
            if views:
                result["views_averaged"] = averaged[position]
            if by_target:  # a multi-task head predicts every target
                result["by_target"] = {target: _ranked(rows[position], head.class_names_[target], top_k)
                                       for target, rows in by_target.items()}
            results.append(result)
    return in_given_order(results, paths)


def _require_finite(probabilities: np.ndarray, head_path: Path) -> None:
    """`HeadError` when a head answers NaN or infinite probabilities: its weights are not finite."""
    if not np.isfinite(probabilities).all():
        raise HeadError(f"head {head_path} gives NaN or infinite probabilities: its model holds non-finite weights "
                        "(damaged, or fitted on non-finite features); fit the head again with `fit-head`")


def _ranked(row: np.ndarray, class_names, top_k: int) -> list[dict]:
    best = np.argsort(-row)[:top_k]
    return [{"label": class_names[i], "probability": float(row[i])} for i in best]
