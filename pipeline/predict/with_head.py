"""`predict`: classify new images with a saved head, through the exact extraction it was fitted on.

The head's sidecar records the feature spec (backbone, layer, input size, resize policy,
preprocessing, precision, pooling, store dtype) and where its weights came from. The same
weights are resolved again and must have the same fingerprint; the features are then computed,
stored-dtype rounded and pooled exactly as the cache did, so predictions match what the head saw.
A fine-tuned model (`fine-tune`) records its boundary cache's spec: the frozen layers run up to
the boundary layer, and its tuned layers and head take the full maps from there.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from pipeline.backbones.registry import BackboneSpec, get_backbone
from pipeline.backbones.weights import ResolvedWeights, resolve_weights
from pipeline.cache.key import ORIGIN_IMPORTED_NPZ, FeatureSpec
from pipeline.cache.rows import pool_rows
from pipeline.data.images import ResizeSpec
from pipeline.errors import HeadError
from pipeline.heads.features import DEFAULT_HEAD_POOLING
from pipeline.heads.fusion import FUSION_KIND
from pipeline.heads.graph import consumes_maps
from pipeline.heads.store import check_feature_key, load_head, read_sidecar
from pipeline.predict.images import DEFAULT_TOP_K, decoded_batches, in_given_order


@dataclass(frozen=True)
class HeadExtraction:
    """A loaded head and the exact extraction it was fitted on: spec, backbone, verified weights."""

    head: object
    sidecar: dict
    spec: FeatureSpec
    backbone: BackboneSpec
    weights: ResolvedWeights

    @property
    def resize(self) -> ResizeSpec:
        return ResizeSpec(self.spec.input_size, self.spec.input_size, self.spec.resize_policy)

    @property
    def pooling(self) -> str:
        """How the head pools spatial maps (heads saved before it was a choice pooled by average)."""
        return self.sidecar.get("head_pooling", DEFAULT_HEAD_POOLING)


def load_head_extraction(head_path: Path, cache_dir: Path) -> HeadExtraction:
    """The head at `head_path` with its backbone and weights resolved again; `HeadError` when new images
    cannot be featurised the way its features were (imported features)."""
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
    return HeadExtraction(head, sidecar, spec, backbone, weights)


def check_fingerprint(extraction: HeadExtraction, fingerprint: str) -> None:
    """`HeadError` unless the weights loaded here are the ones the head's features were computed with."""
    if fingerprint != extraction.spec.weights_fingerprint:
        raise HeadError(
            f"the {extraction.spec.backbone} weights available here ({extraction.weights.describe()}) differ from "
            f"the ones head {extraction.sidecar['_path']} was fitted with; use the same weights source (see `weights`)"
        )


def predict_images(image_paths, head_path: Path, cache_dir: Path, top_k: int = DEFAULT_TOP_K) -> list[dict]:
    """Top-k (label, probability) for each image; undecodable images get an `error` instead."""
    from pipeline.backbones.forward import FeatureExtractor

    sidecar = read_sidecar(head_path)
    if sidecar["kind"] == FUSION_KIND:
        from pipeline.predict.fused import predict_fused

        return predict_fused(image_paths, sidecar, cache_dir, top_k)
    extraction = load_head_extraction(head_path, cache_dir)
    spec, head = extraction.spec, extraction.head
    extractor = FeatureExtractor(extraction.backbone, spec.layer, spec.input_size, extraction.weights,
                                 spec.precision, spec.pooling)
    check_fingerprint(extraction, extractor.fingerprint)
    class_names = extraction.sidecar["class_names"]
    results: list[dict] = []
    paths = [Path(p) for p in image_paths]
    for decoded, pixels in decoded_batches(paths, extraction.resize, results):
        features = extractor(pixels).astype(spec.store_dtype).astype(np.float32)
        pooled = features if consumes_maps(head) else pool_rows(features, extraction.pooling)
        probabilities = head.predict_proba(pooled)
        _require_finite(probabilities, head_path)
        by_target = head.predict_all(pooled) if hasattr(head, "predict_all") else {}
        for position, (path, row) in enumerate(zip(decoded, probabilities)):
            result = {"path": str(path), "predictions": _ranked(row, class_names, top_k)}
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
