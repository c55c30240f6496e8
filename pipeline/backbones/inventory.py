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
    SOURCE_KERAS_CACHE,
    FingerprintMemo,
    ResolvedWeights,
    available_sources,
    fingerprint_model,
    keras_cache_file,
    official_file_problems,
    official_file_verified,
    resolve_weights,
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
    try:
        if source == SOURCE_KERAS_CACHE:
            path = keras_cache_file(spec, size)
            problems = official_file_problems(spec, path, size)
            if problems:
                return {"verified": False, "error": f"refused: {problems[0]}"}
            resolved = ResolvedWeights(spec.name, IMAGENET, SOURCE_KERAS_CACHE, str(path),
                                       official_file_verified(spec, size))
        else:  # resolve through this offline source only, converting it if needed
            resolved = resolve_weights(spec, IMAGENET, cache_dir, size, allow_download=False, use_keras_cache=False,
                                       only_source=source)
    except WeightsError as error:
        return {"verified": False, "error": first_line(error)}
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
