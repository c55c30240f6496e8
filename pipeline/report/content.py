"""What the HTML report shows, gathered from a cache and its heads as plain JSON-able values.

`report_content(cache)` returns:

- `cache`: provenance - backbone, weights (source, verification, fingerprint), layer, input size,
  resize, precision, pooling, store dtype, origin, dataset name/layout/root, counts per split and
  class, failures (with reasons), notes;
- `leaderboard`: the rows of `report` (best validation top-1 first), with fit times;
- `heads`: per head, in leaderboard order: metrics per split, the confusion matrix and the
  most-confused class pairs of the last scored split (test, else valid), per-class accuracy
  (worst first), and the top losses - the images of that split the head got most wrong (highest
  -log p(true class)), with thumbnails of the files when they are still on disk; per-target
  metrics and implied-target consistency for multi-task heads; members and weights for fused ones;
  test-time augmentation metrics for heads fitted with `--tta`;
- `searches`: the `search` records that used this cache (`pipeline.search.record.report_sections`);
- `visuals`: PNGs made for the cache's heads (ideal class images, adversarial examples, feature
  maps), found through the JSON sidecars the `visualize`, `attack` and `features` commands write;
- `audit`: what `audit` found, with leakage-aware test scores and the map (`report.audit_section`).

Head folders travel, so what their files say is not trusted: a visual is embedded only when it
lies inside its result's own folder (symbolic links resolved) and decodes as an image; anything
else is skipped with a note. Top-loss thumbnails are read only inside the dataset root the cache
records, under the same rule.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from pipeline.cache.format import CacheInfo, read_cache_info
from pipeline.cache.key import now_iso
from pipeline.heads.caveats import caveats_of
from pipeline.heads.record import HeadRecord
from pipeline.heads.replay import split_probabilities, why_not_replayed
from pipeline.heads.store import heads_dir_of, list_sidecars
from pipeline.report.audit_section import audit_content
from pipeline.report.leaderboard import leaderboard
from pipeline.report.thumbnails import inside, png_uri, thumbnail_uri
from pipeline.search.record import report_sections

#: Images shown per head in "top losses", and class pairs in "most confused".
TOP_LOSSES = 12
CONFUSED_PAIRS = 10
#: Largest visual embedded, in pixels on its longest side.
VISUAL_PIXELS = 640
_PROBABILITY_FLOOR = 1e-12
#: Folder (under a cache's heads folder) and sidecar key of what the explain commands write.
VISUALS_SUBDIR = "explain"
VISUAL_IMAGES_KEY = "images"


def report_content(cache_path: Path, top_losses: int = TOP_LOSSES) -> dict:
    """Everything the report shows about the cache at `cache_path` (see the module doc)."""
    cache_path = Path(cache_path)
    info = read_cache_info(cache_path)
    info.require_whole_dataset()
    rows = leaderboard(cache_path)
    records = {str(record.path): record for record in list_sidecars(cache_path)}
    heads = [_head_section(records[row["path"]], cache_path, info, top_losses) for row in rows]
    return {"title": f"{info.dataset.name or cache_path.stem}: {info.spec.backbone} {info.spec.layer}",
            "generated": now_iso(), "cache": provenance(info), "leaderboard": rows, "heads": heads,
            "visuals": visuals(cache_path), "searches": report_sections(cache_path),
            "audit": audit_content(cache_path, info)}


def provenance(info: CacheInfo) -> dict:
    """Where the features came from and what the dataset holds."""
    spec = info.spec
    class_counts = {}
    for split in ("train", "valid", "test"):
        labels = info.images.label[info.images.in_split(split)]
        if len(labels):
            counts = np.bincount(labels, minlength=len(info.class_names))
            class_counts[split] = {name: int(n) for name, n in zip(info.class_names, counts)}
    return {
        "file": str(info.path), "feature_key": info.key, "backbone": spec.backbone, "layer": spec.layer,
        "input_size": spec.input_size, "resize": spec.resize_text(), "preprocessing": spec.preprocessing,
        "precision": spec.precision, "pooling": spec.pooling, "store_dtype": spec.store_dtype,
        "weights": info.weights.to_dict(), "weights_fingerprint": spec.weights_fingerprint,
        "origin": info.origin.to_dict(),
        "feature_shape": list(info.feature_shape), "rows": info.row_count, "created": info.created,
        "updated": info.updated, "versions": info.versions,
        "dataset": {"name": info.dataset.name, "layout": info.dataset.layout,
                    "root": info.dataset.root, "notes": list(info.dataset.notes),
                    "split_sizes": info.split_sizes(), "class_counts": class_counts},
        "failures": [{"path": path, "reason": reason} for path, reason in info.failures],
    }


def most_confused(matrix, class_names, count: int = CONFUSED_PAIRS) -> list[dict]:
    """The `count` largest off-diagonal cells of a confusion matrix: true class, predicted class, images."""
    matrix = np.asarray(matrix)
    pairs = [(int(matrix[i, j]), i, j) for i in range(len(matrix)) for j in range(len(matrix))
             if i != j and matrix[i, j] > 0]
    pairs.sort(key=lambda pair: (-pair[0], pair[1], pair[2]))
    totals = matrix.sum(axis=1)
    return [{"true": class_names[i], "predicted": class_names[j], "images": n,
             "share_of_true": float(n / totals[i]) if totals[i] else 0.0} for n, i, j in pairs[:count]]


def top_loss_items(probabilities: np.ndarray, labels: np.ndarray, relpaths, class_names, root: Path | None,
                   count: int = TOP_LOSSES) -> list[dict]:
    """The `count` images with the highest -log p(true class), worst first, each with a thumbnail."""
    picked = probabilities[np.arange(len(labels)), labels]
    losses = -np.log(np.clip(picked, _PROBABILITY_FLOOR, 1.0))
    items = []
    for i in np.argsort(-losses, kind="stable")[:count]:
        predicted = int(np.argmax(probabilities[i]))
        path = Path(root) / relpaths[i] if root is not None else None
        if path is not None and not inside(path, root):
            path = None  # a relpath climbing out of the dataset: a tampered cache (`cache verify` says so)
        items.append({"path": relpaths[i], "true": class_names[labels[i]], "predicted": class_names[predicted],
                      "probability_true": float(picked[i]), "probability_predicted": float(probabilities[i, predicted]),
                      "loss": float(losses[i]),
                      "thumbnail": thumbnail_uri(path) if path is not None and path.is_file() else None})
    return items


def visuals(cache_path: Path) -> list[dict]:
    """The PNGs the explain commands made for this cache's heads, with what their sidecars say."""
    folder = heads_dir_of(cache_path) / VISUALS_SUBDIR
    found = []
    for sidecar_path in sorted(folder.rglob("*.json")) if folder.is_dir() else []:
        if not inside(sidecar_path, folder):  # reached through a symbolic link out of the heads folder
            continue
        try:
            sidecar = json.loads(sidecar_path.read_text())
        except (OSError, ValueError):
            continue
        if not isinstance(sidecar, dict):
            continue
        names = sidecar.get(VISUAL_IMAGES_KEY, [])
        embedded, notes = [], []
        for name in names if isinstance(names, list) else []:
            uri, note = _visual_uri(sidecar_path.parent, name)
            embedded += [uri] if uri else []
            notes += [note] if note else []
        if embedded or notes:
            found.append({"title": str(sidecar.get("title") or sidecar_path.stem), "command": sidecar.get("command"),
                          "summary": sidecar.get("summary"), "images": embedded, "notes": notes})
    return found


def _visual_uri(folder: Path, name) -> tuple[str | None, str | None]:
    """(data URI, None) for an image inside `folder`, else (None, why it was skipped)."""
    if not isinstance(name, str) or not name:
        return None, f"skipped {name!r}: not a file name"
    path = folder / name
    if not inside(path, folder):
        return None, f"skipped {name!r}: outside the result's folder {folder}"
    uri = png_uri(path, VISUAL_PIXELS)
    if uri is None:
        return None, f"skipped {name!r}: missing, or not an image"
    return uri, None


def _head_section(record: HeadRecord, cache_path: Path, info: CacheInfo, top_losses: int) -> dict:
    metrics = record.metrics
    final = "test" if "test" in metrics else "valid" if "valid" in metrics else None
    names = list(record.class_names)
    section = {"name": record.name, "kind": record.kind, "target": record.target or "label",
               "pooling": record.pooling or "avg", "hyperparameters": record.hyperparameters,
               "fit_seconds": record.fit_seconds, "created": record.created,
               "metrics": {split: _summary(values) for split, values in metrics.items()}, "final_split": final,
               "class_names": names, "metrics_by_target": {t: {s: _summary(v) for s, v in by.items()}
                                                           for t, by in (record.metrics_by_target or {}).items()},
               "implied_targets": record.implied_targets or {},
               "caveats": [caveat.text for caveat in caveats_of(metrics)],
               "members": [{"name": m.name, "weight": m.weight} for m in record.members]}
    if record.tta:  # `fit-head --tta`: the same splits scored on the mean over cached views
        tta = record.tta
        section["tta"] = {"view_set": tta.get("view_set"), "views_per_image": tta.get("views_per_image"),
                          "metrics": {split: _summary(values) for split, values in tta.get("metrics", {}).items()}}
    if final is None:
        return section
    matrix = metrics[final]["confusion_matrix"]
    section["confusion_matrix"] = matrix
    section["most_confused"] = most_confused(matrix, names)
    per_class = metrics[final].get("per_class_accuracy", {})
    section["per_class_accuracy"] = sorted(({"class": name, "accuracy": value} for name, value in per_class.items()
                                            if value is not None), key=lambda row: (row["accuracy"], row["class"]))
    replayed = split_probabilities(record, cache_path, final)
    if replayed is None:
        section["top_losses_note"] = why_not_replayed(record, cache_path)
    else:
        probabilities, labels, relpaths = replayed
        section["top_losses"] = top_loss_items(np.asarray(probabilities), labels, relpaths, names,
                                               info.data_root, top_losses)
    return section


def _summary(values: dict) -> dict:
    keys = ("n", "top1", "top5", "mean_per_class_accuracy", "macro_f1", "log_loss")
    return {key: values.get(key) for key in keys if key in values}
