"""Resolving what features a run computes: backbone, layer, size, resize, precision, weights -> key.

The weights fingerprint comes from a memo when possible, so an unchanged re-run finds its cache
without importing TensorFlow; otherwise the backbone is built once here to fingerprint it, and
handed on so the run does not build it twice.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

from pipeline.backbones.precision import resolve_precision
from pipeline.backbones.registry import BackboneSpec, get_backbone
from pipeline.backbones.weights import FingerprintMemo, ResolvedWeights, resolve_weights
from pipeline.cache.key import FeatureSpec
from pipeline.data.images import ResizeSpec
from pipeline.errors import PipelineError
from pipeline.extract.options import ExtractOptions

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Setup:
    """The resolved feature configuration of a run."""

    backbone: BackboneSpec
    resize: ResizeSpec
    weights: ResolvedWeights
    precision_reason: str
    feature_spec: FeatureSpec


def resolve_setup(options: ExtractOptions, cache_dir: Path):
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
        extractor = build_extractor(backbone, layer, size, weights, precision, options.pool)
        fingerprint = extractor.fingerprint
        try:
            memo.put(weights.identity(layer), fingerprint)
        except OSError as error:  # only a speed-up for the next run (e.g. the disk is full)
            log.warning("could not save the weights fingerprint in %s: %s", memo.path, error)
    spec = FeatureSpec(
        backbone=backbone.name, weights_fingerprint=fingerprint, layer=layer, input_size=size,
        resize_policy=resize.policy, resize_filter=resize.filter, preprocessing=backbone.preprocessing,
        precision=precision, pooling=options.pool, store_dtype=options.store_dtype, views=options.view_spec(),
    )
    return Setup(backbone, resize, weights, reason, spec), extractor


def build_extractor(backbone: BackboneSpec, layer: str, size: int, weights: ResolvedWeights, precision: str,
                    pooling: str):
    """The `FeatureExtractor` for these settings (imports TensorFlow)."""
    from pipeline.backbones.forward import FeatureExtractor

    return FeatureExtractor(backbone, layer, size, weights, precision, pooling)


def refuse_changed_weights(extractor, spec: FeatureSpec) -> None:
    """Refuse an extractor whose weights are not the ones the key was computed from."""
    if extractor.fingerprint != spec.weights_fingerprint:
        raise PipelineError(
            "the weights file changed while this run was starting (its fingerprint differs from the "
            "recorded one); run the command again"
        )
