"""The `weights` listing: per backbone, each ImageNet source, whether it verifies, its fingerprint.

The Keras-cache source carries Keras' pin of the official file (`pin`: algorithm, digest, origin;
None where Keras publishes none) and, when the file is present, whether it matches.
"""

from __future__ import annotations

from pathlib import Path

from pipeline.backbones.models import build_feature_model
from pipeline.backbones.registry import get_backbone
from pipeline.backbones.weights import (
    IMAGENET,
    FingerprintMemo,
    ResolvedWeights,
    WeightsQuery,
    available_sources,
    fingerprint_model,
    weights_sources,
)
from pipeline.errors import WeightsError, first_line


def weights_table(backbone_names, cache_dir: Path, with_fingerprints: bool) -> list[dict]:
    """One entry per backbone: {backbone, default_layer, sources: [{source, available, path, verified,
    fingerprint}]}."""
    rows = []
    for name in backbone_names:
        spec = get_backbone(name)
        size = spec.default_input_size
        sources = []
        for source in available_sources(spec, cache_dir, size):
            entry = dict(source)
            if source["available"]:
                entry.update(_inspect(spec, source["source"], cache_dir, size, with_fingerprints))
            sources.append(entry)
        rows.append({"backbone": spec.name, "default_layer": spec.default_layer, "sources": sources})
    return rows


def _inspect(spec, source: str, cache_dir: Path, size: int, with_fingerprints: bool) -> dict:
    """Ask the one source named `source` (an offline one converts if needed); never downloads."""
    [asked] = [candidate for candidate in weights_sources(spec, allow_download=False) if candidate.name == source]
    try:
        attempt = asked.attempt(WeightsQuery(spec, Path(cache_dir), size))
    except WeightsError as error:
        return {"verified": False, "error": first_line(error)}
    if attempt.path is None:
        return {"verified": False, "error": "; ".join(attempt.notes)}
    resolved = ResolvedWeights(spec.name, IMAGENET, source, str(attempt.path), attempt.verified, attempt.notes)
    entry = {"path": resolved.path, "verified": resolved.verified}
    if with_fingerprints:
        entry["fingerprint"] = _fingerprint(spec, resolved, cache_dir, size)
    return entry


def _fingerprint(spec, resolved: ResolvedWeights, cache_dir: Path, size: int) -> str:
    memo = FingerprintMemo(cache_dir)
    identity = resolved.identity(spec.default_layer)
    known = memo.get(identity)
    if known is None:
        model = build_feature_model(spec, spec.default_layer, size, resolved.path, "float32")
        known = fingerprint_model(model)
        memo.put(identity, known)
    return known
