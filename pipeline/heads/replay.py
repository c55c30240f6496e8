"""Replaying a saved head on its cache: per-image probabilities of a split, from the cached features.

Sidecars keep metrics, not per-image predictions (those would be large: 836 test images x 133
classes for the dog-breed example). What per-image views need - the top losses of a report - is
recomputed here from the cache, with the head's own target and pooling: a tool head applies its
model, a fused head its members (late fusion: their weighted average; early fusion: its head on
the concatenated features). A fine-tuned model reads the boundary layer's full maps, so it is
replayed on the boundary cache its sidecar names (view 0 of each image of the split, streamed in
blocks), found beside the cache first and refused unless its feature key is the model's. An
outside model recorded through `pipeline.api` has no model here, and replaying it returns None,
as does a fine-tuned model whose boundary cache was removed; `why_not_replayed` says which.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from pipeline.cache.format import CacheInfo, read_cache_info
from pipeline.cache.rows import RowReader
from pipeline.errors import CacheError
from pipeline.heads.features import DEFAULT_HEAD_POOLING, load_feature_set
from pipeline.heads.record import HeadRecord
from pipeline.heads.registry import EXTERNAL_KIND, FINE_TUNED, FUSION_KIND
from pipeline.heads.store import load_head

#: Boundary maps replayed per forward pass (VGG16 block4_pool: 400 KB per image).
MAPS_BLOCK_ROWS = 64


def split_probabilities(record: HeadRecord, cache_path: Path, split: str):
    """(probabilities (n, classes), labels (n,), relpaths) of `split` by the head `record` describes,
    or None when the head has no model here (external) or the cache has no such split."""
    kind = record.kind
    if kind == EXTERNAL_KIND:
        return None
    if kind == FUSION_KIND:
        return _fused(record, split)
    if kind == FINE_TUNED:
        return _on_boundary_maps(record, cache_path, split)
    features = load_feature_set(cache_path, target=record.target, pooling=record.pooling or DEFAULT_HEAD_POOLING)
    if split not in features.splits:
        return None
    head, _ = load_head(record.path)
    data = features.splits[split]
    return head.predict_proba(data.x), data.y, data.relpaths


def _fused(record: HeadRecord, split: str):
    from pipeline.heads.fusion import EARLY, aligned_feature_sets, concat_head

    params = record.hyperparameters
    members = record.members
    sets = aligned_feature_sets([Path(m.cache) for m in members], record.target,
                                record.pooling or DEFAULT_HEAD_POOLING)
    if split not in sets[0].splits:
        return None
    data = sets[0].splits[split]
    if params["method"] == EARLY:
        x = np.concatenate([features.splits[split].x for features in sets], axis=1)
        return concat_head(record).predict_proba(x), data.y, data.relpaths
    probabilities = 0.0
    for member, features in zip(members, sets):
        if member.weight > 0:
            head, _ = load_head(Path(member.sidecar))
            probabilities = probabilities + member.weight * head.predict_proba(features.splits[split].x)
    return probabilities, data.y, data.relpaths


def why_not_replayed(record: HeadRecord, cache_path: Path) -> str:
    """Why `split_probabilities` returned None for this head (for a report's note)."""
    if record.kind == FINE_TUNED and boundary_cache_of(record, cache_path) is None:
        return (f"no per-image predictions: the boundary cache this fine-tuned model reads "
                f"({Path(record.cache_path or '?').name}) is not beside {Path(cache_path).name} any "
                "more; re-running the same fine-tune command rebuilds it")
    return "no per-image predictions: this head's model is not in the tool"


def boundary_cache_of(record: HeadRecord, cache_path: Path) -> CacheInfo | None:
    """The boundary cache a fine-tuned model was trained on: beside `cache_path` (the folder may have
    moved) or where it was saved, and only with the model's feature key; None when neither is there."""
    recorded = Path(record.cache_path or "")
    for candidate in (Path(cache_path).parent / recorded.name, recorded):
        if not recorded.name or not candidate.is_file():
            continue
        try:
            info = read_cache_info(candidate)
        except CacheError:
            continue
        if info.key == record.feature_key:
            return info
    return None


def _on_boundary_maps(record: HeadRecord, cache_path: Path, split: str):
    boundary = boundary_cache_of(record, cache_path)
    if boundary is None:
        return None
    images = boundary.images
    members = images.in_split(split)
    if not len(members):
        return None
    rows = images.view_rows[members, 0] if images.view_rows is not None else images.row[members]
    head, _ = load_head(record.path)
    with RowReader(boundary.path) as reader:
        blocks = [head.predict_proba(reader.read(rows[start:start + MAPS_BLOCK_ROWS]))
                  for start in range(0, len(rows), MAPS_BLOCK_ROWS)]
    return (np.concatenate(blocks), images.label[members].astype(np.int64),
            tuple(images.relpath[i] for i in members))
