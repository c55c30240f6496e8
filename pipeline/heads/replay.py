"""Replaying a saved head on its cache: per-image probabilities of a split, from the cached features.

Sidecars keep metrics, not per-image predictions (those would be large: 836 test images x 133
classes for the dog-breed example). What per-image views need - the top losses of a report - is
recomputed here from the cache, with the head's own target and pooling: a tool head applies its
model, a fused head its members (late fusion: their weighted average; early fusion: its head on
the concatenated features). An outside model recorded through `pipeline.api` has no model here,
and replaying it returns None.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from pipeline.heads.features import DEFAULT_HEAD_POOLING, load_feature_set
from pipeline.heads.store import EXTERNAL_KIND, FUSED_KIND, load_head, read_sidecar


def split_probabilities(sidecar: dict, cache_path: Path, split: str):
    """(probabilities (n, classes), labels (n,), relpaths) of `split` by the head `sidecar` describes,
    or None when the head has no model here (external) or the cache has no such split."""
    kind = sidecar.get("kind")
    if kind == EXTERNAL_KIND:
        return None
    if kind == FUSED_KIND:
        return _fused(sidecar, split)
    target = sidecar.get("target")
    features = load_feature_set(cache_path, target=target, pooling=sidecar.get("head_pooling", DEFAULT_HEAD_POOLING))
    if split not in features.splits:
        return None
    head, _ = load_head(Path(sidecar["_path"]))
    data = features.splits[split]
    return head.predict_proba(data.x), data.y, data.relpaths


def _fused(sidecar: dict, split: str):
    from pipeline.heads.fusion import EARLY, aligned_feature_sets

    params = sidecar["hyperparameters"]
    members = sidecar["members"]
    sets = aligned_feature_sets([Path(m["cache"]) for m in members], sidecar.get("target"),
                                sidecar.get("head_pooling", DEFAULT_HEAD_POOLING))
    if split not in sets[0].splits:
        return None
    data = sets[0].splits[split]
    if params["method"] == EARLY:
        from pipeline.predict.fused import concat_head

        x = np.concatenate([features.splits[split].x for features in sets], axis=1)
        return concat_head(sidecar).predict_proba(x), data.y, data.relpaths
    probabilities = 0.0
    for member, features in zip(members, sets):
        if member["weight"] > 0:
            head, _ = load_head(Path(read_sidecar(Path(member["sidecar"]))["_path"]))
            probabilities = probabilities + member["weight"] * head.predict_proba(features.splits[split].x)
    return probabilities, data.y, data.relpaths
