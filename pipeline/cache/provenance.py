"""A cache's provenance attributes as values: where the weights came from, which dataset, which origin.

The cache file stores each as a JSON attribute (`weights`, `dataset`, `origin`; see
`pipeline.cache.format`); this module is the one place that turns them into frozen values
(`from_dict`, used by `read_cache_info`) and back (`to_dict`, used by `pipeline.cache.builder`).
The JSON is unchanged from what earlier releases wrote, so every cache they wrote still reads,
format 1 included (`pipeline.cache.legacy` recovers the origin and carving it lacked).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from pipeline.cache.key import ORIGIN_EXTRACTED, ORIGIN_IMPORTED_NPZ
from pipeline.data.dataset import SplitCarving

if TYPE_CHECKING:
    from pipeline.backbones.weights import ResolvedWeights


def _object(fields, what: str) -> dict:
    """`fields` when it is a JSON object; `TypeError` (read as a damaged cache) otherwise."""
    if not isinstance(fields, dict):
        raise TypeError(f"the {what} attribute is {type(fields).__name__}, not a JSON object")
    return fields


@dataclass(frozen=True)
class WeightsInfo:
    """The weights the features were computed with: `request` as given (imagenet, none, a file), the
    `source` that supplied them, the file's `path` (None for random ones), whether they were
    `verified` against the ImageNet reference values (None: no reference known), and a one-line
    `description` for summaries."""

    source: str | None
    path: str | None
    verified: bool | None
    request: str | None
    description: str | None

    @classmethod
    def of(cls, weights: ResolvedWeights) -> WeightsInfo:
        return cls(source=weights.source, path=weights.path, verified=weights.verified, request=weights.request,
                   description=weights.describe())

    @classmethod
    def from_dict(cls, fields) -> WeightsInfo:
        fields = _object(fields, "weights")
        return cls(source=fields.get("source"), path=fields.get("path"), verified=fields.get("verified"),
                   request=fields.get("request"), description=fields.get("description"))

    def to_dict(self) -> dict:
        return {"source": self.source, "path": self.path, "verified": self.verified, "request": self.request,
                "description": self.description}


@dataclass(frozen=True)
class OriginInfo:
    """Whether the features were extracted here (`ORIGIN_EXTRACTED`) or imported from a classic npz
    file (`ORIGIN_IMPORTED_NPZ`, with that `file` and its `sha256`)."""

    kind: str
    file: str | None = None
    sha256: str | None = None

    @classmethod
    def extracted(cls) -> OriginInfo:
        return cls(ORIGIN_EXTRACTED)

    @property
    def is_imported(self) -> bool:
        return self.kind == ORIGIN_IMPORTED_NPZ

    @classmethod
    def from_dict(cls, fields) -> OriginInfo:
        fields = _object(fields, "origin")
        return cls(kind=fields["kind"], file=fields.get("file"), sha256=fields.get("sha256"))

    def to_dict(self) -> dict:
        """`{"kind": ...}`, with `file` and `sha256` for imported features (as the heads' sidecars record it)."""
        if self.kind == ORIGIN_EXTRACTED:
            return {"kind": self.kind}
        return {"kind": self.kind, "file": self.file, "sha256": self.sha256}


@dataclass(frozen=True)
class DatasetInfo:
    """The dataset a cache describes: its `name` (in the file name), `root` folder, `layout`, the
    index's `notes`, how missing splits were `carving`-ed (None: none were), and for a shard cache
    its `shard` attributes (`pipeline.cache.shard.ShardView.attributes`), for an imported cache the
    npz file it was `imported_from`."""

    name: str | None
    root: str | None
    layout: str | None
    notes: tuple[str, ...] = ()
    carving: SplitCarving | None = None
    shard: dict | None = None
    imported_from: str | None = None

    @classmethod
    def from_dict(cls, fields) -> DatasetInfo:
        fields = _object(fields, "dataset")
        return cls(name=fields.get("name"), root=fields.get("root"), layout=fields.get("layout"),
                   notes=tuple(fields.get("notes") or ()), carving=SplitCarving.from_dict(fields.get("carving")),
                   shard=fields.get("shard"), imported_from=fields.get("imported_from"))

    def to_dict(self) -> dict:
        """The `dataset` attribute: `shard` and `imported_from` only where they apply."""
        fields = {"name": self.name, "root": self.root, "layout": self.layout, "notes": list(self.notes),
                  "carving": self.carving.to_dict() if self.carving is not None else None}
        if self.shard is not None:
            fields["shard"] = self.shard
        if self.imported_from is not None:
            fields["imported_from"] = self.imported_from
        return fields
