"""The exact extraction a saved head was fitted on, again: its backbone, its verified weights, its spec.

The head's sidecar records the feature spec (backbone, layer, input size, resize policy,
preprocessing, precision, pooling, store dtype) and where its weights came from. The same
weights are resolved again and must have the same fingerprint, so the features of new images
are computed as the cache computed them. `predict`, fused heads' members, `export` and the
explain commands all start from a `HeadExtraction`.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from pipeline.backbones.registry import BackboneSpec, get_backbone
from pipeline.backbones.weights import ResolvedWeights, resolve_weights
from pipeline.cache.key import ORIGIN_IMPORTED_NPZ, FeatureSpec
from pipeline.data.images import ResizeSpec
from pipeline.errors import HeadError
from pipeline.heads.features import DEFAULT_HEAD_POOLING
from pipeline.heads.kinds.base import Head
from pipeline.heads.record import HeadRecord
from pipeline.heads.store import check_feature_key, load_head


@dataclass(frozen=True)
class HeadExtraction:
    """A loaded head and the exact extraction it was fitted on: spec, backbone, verified weights."""

    head: Head
    record: HeadRecord
    spec: FeatureSpec
    backbone: BackboneSpec
    weights: ResolvedWeights

    @property
    def resize(self) -> ResizeSpec:
        return ResizeSpec(self.spec.input_size, self.spec.input_size, self.spec.resize_policy)

    @property
    def pooling(self) -> str:
        """How the head pools spatial maps (heads saved before it was a choice pooled by average)."""
        return self.record.pooling or DEFAULT_HEAD_POOLING


def load_head_extraction(head_path: Path, cache_dir: Path) -> HeadExtraction:
    """The head at `head_path` with its backbone and weights resolved again; `HeadError` when new images
    cannot be featurised the way its features were (imported features)."""
    head, record = load_head(head_path)
    spec = record.feature_spec
    check_feature_key(record, spec.key(), "its recorded feature spec")
    if record.origin["kind"] == ORIGIN_IMPORTED_NPZ:
        raise HeadError(
            f"head {head_path} was fitted on features imported from an .npz file, made by weights and "
            "preprocessing this tool cannot verify, so new images cannot be featurised the same way. "
            "Extract the dataset (`extract`) and fit a head on that cache to predict"
        )
    backbone = get_backbone(spec.backbone)
    weights = resolve_weights(backbone, record.extraction["weights"]["request"], cache_dir, spec.input_size)
    return HeadExtraction(head, record, spec, backbone, weights)


def require_head_weights(extraction: HeadExtraction, fingerprint: str) -> None:
    """`HeadError` unless the weights loaded here are the ones the head's features were computed with."""
    if fingerprint != extraction.spec.weights_fingerprint:
        raise HeadError(
            f"the {extraction.spec.backbone} weights available here ({extraction.weights.describe()}) differ from "
            f"the ones head {extraction.record.path} was fitted with; use the same weights source (see `weights`)"
        )
