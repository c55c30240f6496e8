"""Building a cache file: the one path every cache writer takes.

`extract`, `merge`, `import-npz` and the benchmark's synthetic caches all describe what a cache
should say as a `CacheContents` value and call `write_dataset_cache`, which

1. plans the rows: one feature row per distinct image content (per view of it, for a cache with
   views: `FeatureSpec.views`); with `keep_existing_rows` the rows already in the file keep their
   places (also rows no image uses any more, so adding an image back costs nothing) and new rows
   follow in the order the records first show them;
2. builds the dataset view (which file is which row - and, with views, which row holds each of
   its views - with labels, splits, extra targets, failures and shard positions) and the root
   attributes (provenance plus a digest of the view);
3. keeps the `created` time of the file it replaces, and leaves a current-format file alone
   when it already says exactly this;
4. writes the file atomically (`pipeline.cache.writer`) and removes the finished
   `<cache>.partial/` segments.

See `pipeline.cache.format` for the file format.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from pipeline.cache.format import FORMAT_VERSION, created_of, feature_shape_of, format_version_of, open_cache_file
from pipeline.cache.key import FeatureSpec, now_iso
from pipeline.cache.provenance import DatasetInfo, OriginInfo, WeightsInfo
from pipeline.cache.segments import RowSource
from pipeline.cache.writer import json_attr, remove_partial, write_cache
from pipeline.data.dataset import DatasetIndex, ImageRecord
from pipeline.data.views import ViewSpec, addresses_of


@dataclass(frozen=True)
class CacheContents:
    """What a cache file says, apart from the feature values.

    `index` gives the class names, extra targets, layout, root, notes and split carving;
    `usable` are the records that have features, `failures` the (relpath, reason) of files that
    have none. A shard cache records its `shard` description and `shard_positions` (the
    full-index positions, see `pipeline.cache.shard`); an imported one the npz file it was
    `imported_from`.
    `kept_rows` are addresses whose rows the file keeps although no listed image uses them (images
    dropped after extraction as near-duplicates: a later run finds their rows and computes nothing).
    """

    spec: FeatureSpec
    weights: WeightsInfo
    origin: OriginInfo
    versions: dict
    name: str
    index: DatasetIndex
    usable: Sequence[ImageRecord]
    failures: Sequence[tuple[str, str]]
    shard: dict | None = None
    shard_positions: dict | None = None
    imported_from: str | None = None
    kept_rows: Sequence[str] = ()

    def dataset_info(self) -> DatasetInfo:
        """What the cache's `dataset` attribute says."""
        return DatasetInfo(name=self.name, root=str(Path(self.index.root).resolve()), layout=self.index.layout,
                           notes=tuple(self.index.notes), carving=self.index.carving, shard=self.shard,
                           imported_from=self.imported_from)


def write_dataset_cache(path: Path, contents: CacheContents, sources: Mapping[str, RowSource],
                        keep_existing_rows: bool = True, feature_shape: tuple[int, ...] | None = None) -> bool:
    """Write the cache at `path` (see the module doc); returns False when it was already up to date.

    `sources[address]` says where each row of the usable images is now (this cache, a segment, a
    sibling or shard cache); an address is the sha256, or with views the row address of each view
    (`pipeline.data.views.view_address`). `feature_shape` is only needed when no row is planned.
    The caller holds the cache's lock.
    """
    path = Path(path)
    row_of, plan, kept = _plan_rows(path, contents.usable, sources, keep_existing_rows, contents.spec.views,
                                    contents.kept_rows)
    view = _view(contents, row_of)
    dataset = contents.dataset_info().to_dict()
    digest = _digest(view, dataset)
    if keep_existing_rows and len(plan) == kept and _up_to_date(path, digest):
        remove_partial(path)  # left by a run killed after its last write: all of it is in the cache
        return False
    attrs = {
        "format_version": FORMAT_VERSION,
        "schema_version": contents.spec.schema_version,
        "feature_key": contents.spec.key(),
        "feature_spec": contents.spec.to_json(),
        "weights": json_attr(contents.weights.to_dict()),
        "origin": json_attr(contents.origin.to_dict()),
        "versions": json_attr(contents.versions),
        "dataset": json_attr(dataset),
        "created": created_of(path) or now_iso(),
        "updated": now_iso(),
        "view_digest": digest,
    }
    shape = feature_shape_of(plan[0].path) if plan else tuple(feature_shape or ())
    write_cache(path, attrs, view, plan, shape, contents.spec.store_dtype)
    remove_partial(path)
    return True


def _plan_rows(path: Path, records: Sequence[ImageRecord], sources: Mapping[str, RowSource], keep_existing: bool,
               views: ViewSpec | None, kept_rows: Sequence[str] = ()):
    """(row_of, plan, kept): the row of each address, where each row comes from, how many were already in `path`."""
    row_of: dict[str, int] = {}
    plan: list[RowSource] = []
    if keep_existing:
        own = sorted((source for source in sources.values() if source.path == path), key=lambda source: source.row)
        plan = list(own)
        row_of = {sha: source.row for sha, source in sources.items() if source.path == path}
    kept = len(plan)
    for address in [a for record in records for a in addresses_of(record.sha256, views)] + list(kept_rows):
        if address not in row_of:
            row_of[address] = len(plan)
            plan.append(sources[address])
    return row_of, plan, kept


def _view(contents: CacheContents, row_of: dict) -> dict:
    usable = contents.usable
    view = {
        "classes": list(contents.index.class_names),
        "relpath": [r.relpath for r in usable],
        "label": [r.label for r in usable],
        "split": [r.split for r in usable],
        "sha256": [r.sha256 for r in usable],
        "row": [row_of[r.sha256] for r in usable],
        "size": [r.size for r in usable],
        "mtime_ns": [r.mtime_ns for r in usable],
        "failures": [list(f) for f in contents.failures],
    }
    if contents.spec.views is not None:
        view["view_rows"] = [[row_of[a] for a in addresses_of(r.sha256, contents.spec.views)] for r in usable]
    if contents.index.extra_targets:
        view["targets"] = {
            task: (list(classes), [r.extra_labels[position] for r in usable])
            for position, (task, classes) in enumerate(contents.index.extra_targets.items())
        }
    if contents.shard_positions is not None:
        view["shard"] = contents.shard_positions
    return view


def _digest(view: dict, dataset_attrs: dict) -> str:
    """sha256 of a cache's dataset view and dataset attributes (equal digests: nothing to rewrite)."""
    return hashlib.sha256(json.dumps([view, dataset_attrs], sort_keys=True, default=str).encode()).hexdigest()


def _up_to_date(path: Path, digest: str) -> bool:
    """True when `path` exists in the current format and its view digest is `digest`."""
    if not path.exists():
        return False
    with open_cache_file(path) as handle:
        return format_version_of(handle) == FORMAT_VERSION and handle.attrs.get("view_digest") == digest
