"""`predict` with a fused head: every member backbone that carries weight runs on the photos.

Late fusion averages the member heads' probabilities with the fused head's weights; early fusion
concatenates the members' pooled features (in member order) and applies its own head. Each member
is loaded with its own extraction (backbone, weights, input size, resize policy) and refused, as
any head, when its weights are not available here.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from pipeline.backbones.forward import FeatureExtractor
from pipeline.cache.rows import pool_rows
from pipeline.heads.fusion import EARLY, concat_head
from pipeline.heads.record import HeadRecord
from pipeline.predict.extraction import load_head_extraction, require_head_weights
from pipeline.predict.images import decoded_batches, in_given_order


def predict_fused(image_paths, record: HeadRecord, cache_dir: Path, top_k: int) -> list[dict]:
    """Top-k (label, probability) per image from the fused head described by `record`."""
    early = record.hyperparameters["method"] == EARLY
    members = [m for m in record.members if early or m.weight > 0]
    paths = [Path(p) for p in image_paths]
    failures: list[dict] = []
    outputs = []  # per member: {path: pooled features (early) or probabilities (late)}
    for member in members:
        extraction = load_head_extraction(Path(member.sidecar), cache_dir)
        spec = extraction.spec
        extractor = FeatureExtractor(extraction.backbone, spec.layer, spec.input_size, extraction.weights,
                                     spec.precision, spec.pooling)
        require_head_weights(extraction, extractor.fingerprint)
        by_path, errors = {}, []
        for decoded, pixels in decoded_batches(paths, extraction.resize, errors):
            pooled = pool_rows(extractor(pixels).astype(spec.store_dtype).astype(np.float32), extraction.pooling)
            rows = pooled if early else member.weight * extraction.head.predict_proba(pooled)
            by_path.update(zip(map(str, decoded), rows))
        failures = errors  # the same files fail to decode for every member
        outputs.append(by_path)
    head = concat_head(record) if early else None
    class_names = record.class_names
    results = list(failures)
    for path in outputs[0]:
        if early:
            probabilities = head.predict_proba(np.concatenate([out[path] for out in outputs])[None, :])[0]
        else:
            probabilities = sum(out[path] for out in outputs)
        best = np.argsort(-probabilities)[:top_k]
        results.append({"path": path, "predictions": [
            {"label": class_names[i], "probability": float(probabilities[i])} for i in best]})
    return in_given_order(results, paths)

