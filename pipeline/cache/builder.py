"""What a cache file says about its dataset, built the same way by every writer.

`extract`, `merge`, `import-npz` and the benchmark's synthetic caches all write a cache through
`cache_writer.write_cache(path, attrs, view, plan, ...)`; this module builds the three inputs
they share: the row plan (one feature row per distinct image content), the dataset view (which
file is which row, with labels, splits and failures) and the root attributes (provenance plus a
digest of the view, so an unchanged dataset is never rewritten). See `pipeline.cache.format` for the
file format.
"""

from __future__ import annotations

import hashlib
import json
from typing import Iterable, Mapping

from pipeline.cache import writer as cache_writer
from pipeline.data.dataset import DatasetIndex, ImageRecord
from pipeline.cache.key import FeatureSpec


def plan_rows(records: Iterable[ImageRecord], source_of: Mapping[str, cache_writer.RowSource]):
    """(row_of, plan): one row per distinct sha256, numbered in the order `records` first show it.

    `source_of[sha256]` says where that content's features are now; `plan[row]` is that source.
    """
    row_of: dict[str, int] = {}
    plan: list[cache_writer.RowSource] = []
    for record in records:
        if record.sha256 not in row_of:
            row_of[record.sha256] = len(plan)
            plan.append(source_of[record.sha256])
    return row_of, plan


def cache_view(index: DatasetIndex, usable: list[ImageRecord], row_of: dict, failures) -> dict:
    """The dataset view written with a cache: the `usable` records (rows from `row_of`) and `failures`."""
    view = {
        "classes": list(index.class_names),
        "relpath": [r.relpath for r in usable],
        "label": [r.label for r in usable],
        "split": [r.split for r in usable],
        "sha256": [r.sha256 for r in usable],
        "row": [row_of[r.sha256] for r in usable],
        "size": [r.size for r in usable],
        "mtime_ns": [r.mtime_ns for r in usable],
        "failures": [list(f) for f in failures],
    }
    if index.extra_targets:
        view["targets"] = {
            task: (list(classes), [r.extra_labels[position] for r in usable])
            for position, (task, classes) in enumerate(index.extra_targets.items())
        }
    return view


def view_digest(view: dict, dataset_attrs: dict) -> str:
    """sha256 of a cache's dataset view and dataset attributes (stored; equal digests = nothing to rewrite)."""
    return hashlib.sha256(json.dumps([view, dataset_attrs], sort_keys=True, default=str).encode()).hexdigest()


def cache_attributes(spec: FeatureSpec, weights: dict, versions: dict, dataset_attrs: dict, digest: str,
                     created: str) -> dict:
    """The root attributes of a cache file (see `pipeline.cache.format`), serialised for `write_cache`."""
    return {
        "schema_version": spec.schema_version,
        "feature_key": spec.key(),
        "feature_spec": spec.to_json(),
        "weights": cache_writer.json_attr(weights),
        "versions": cache_writer.json_attr(versions),
        "dataset": cache_writer.json_attr(dataset_attrs),
        "created": created,
        "updated": cache_writer.now_iso(),
        "view_digest": digest,
    }
