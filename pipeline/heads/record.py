"""The head record: what a head's JSON sidecar says, as one frozen value passed between stages.

Every stage that uses a saved head (predict, report, export, fine-tune, search, audit, the API)
reads a `HeadRecord`, and every writer (fit-head, fusion, fine-tune, `api.record`) builds one;
only this module knows the JSON layout. `HeadRecord.from_json` upgrades older formats
(`HEAD_FORMAT_VERSION` history below) and `to_json` writes the current one, key for key as the
format defines it: a format-2 file read and written again holds the same keys and values.

Format history: 1 (release 0.1.0) stored the feature spec's resize as one text and no `origin`;
2 added `origin` and the structured feature spec. Version-1 files are upgraded on reading.

The JSON is untrusted: `pipeline.heads.checks.check_sidecar` checks it (`pipeline.heads.store.read_sidecar`
does) before `from_json` builds the record, which then only converts.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from pipeline.cache import legacy
from pipeline.cache.key import FeatureSpec
from pipeline.heads.registry import FINE_TUNED, FUSION_KIND

HEAD_FORMAT = "bottleneck-head"
#: 2 added `origin` and the structured feature spec; version-1 sidecars are upgraded by `from_json`.
HEAD_FORMAT_VERSION = 2


@dataclass(frozen=True)
class CacheRef:
    """The cache a head was fitted on: its path when fitted, dataset name and images per split."""

    path: str | None = None
    dataset: str | None = None
    split_sizes: dict | None = None

    @classmethod
    def from_json(cls, document: dict) -> CacheRef:
        return cls(document.get("path"), document.get("dataset"), document.get("split_sizes"))

    def to_json(self) -> dict:
        return {"path": self.path, "dataset": self.dataset, "split_sizes": self.split_sizes}


@dataclass(frozen=True)
class FusedMember:
    """One member head of a fused head: its name in results, its sidecar, features, cache and weight."""

    name: str
    sidecar: str
    feature_key: str | None
    cache: str | None
    weight: float

    @classmethod
    def from_json(cls, document: dict) -> FusedMember:
        return cls(document.get("name", ""), document["sidecar"], document.get("feature_key"), document.get("cache"),
                   document.get("weight", 0.0))

    def to_json(self) -> dict:
        return {"name": self.name, "sidecar": self.sidecar, "feature_key": self.feature_key, "cache": self.cache,
                "weight": self.weight}


@dataclass(frozen=True)
class ConcatHead:
    """Early fusion's own head on the concatenated features, saved beside the fused sidecar."""

    kind: str
    model_file: str
    hyperparameters: dict

    @classmethod
    def from_json(cls, document: dict) -> ConcatHead:
        return cls(document.get("kind", ""), document.get("model_file", ""), document.get("hyperparameters") or {})

    def to_json(self) -> dict:
        return {"kind": self.kind, "model_file": self.model_file, "hyperparameters": self.hyperparameters}


@dataclass(frozen=True)
class HeadRecord:
    """A saved head as its sidecar describes it (see the module doc).

    Every head: `kind`, `class_names`, `feature_key`, `metrics` (split -> `classification_metrics`),
    `hyperparameters`, `files`, `versions`; a head with a model of its own `model_file` and
    `feature_spec`. `target` and `pooling` (JSON `head_pooling`) are None where not recorded
    (fine-tuned models), read as the main label and average pooling. Fused heads: `members`,
    `feature_keys`, `concat_head` (early fusion); member heads: `member_of`; external heads:
    `external_name`; fine-tuned models: `listed_with`, `fine_tuning`, `comparison`, `warning`.
    `tta` holds `fit-head --tta` scores, `tta_views` the views `predict` averages over (None: view 0 only).

    `path` is where the record was read from (None for one not read from a file) and
    `format_version` the format of that file; neither is written (a file is always written in the
    current format).
    """

    kind: str
    class_names: tuple[str, ...]
    feature_key: str
    name: str | None = None
    created: str | None = None
    fit_seconds: float | None = None
    versions: dict | None = None
    metrics_note: str | None = None
    metrics: dict = field(default_factory=dict)
    hyperparameters: dict = field(default_factory=dict)
    search: list | None = None
    model_file: str | None = None
    concat_head: ConcatHead | None = None
    files: tuple[str, ...] | None = None
    external_name: str | None = None
    members: tuple[FusedMember, ...] = ()
    feature_spec: FeatureSpec | None = None
    feature_keys: tuple[str, ...] = ()
    origin: dict | None = None
    target: str | None = None
    pooling: str | None = None
    head_input: str | None = None
    extraction: dict | None = None
    cache: CacheRef | None = None
    listed_with: str | None = None
    fine_tuning: dict | None = None
    comparison: dict | None = None
    warning: str | None = None
    member_of: tuple[str, ...] = ()
    metrics_by_target: dict | None = None
    implied_targets: dict | None = None
    views: str | None = None
    tta: dict | None = None
    tta_views: tuple[int, ...] | None = None
    path: Path | None = field(default=None, compare=False)
    format_version: int = field(default=HEAD_FORMAT_VERSION, compare=False)

    @property
    def stem(self) -> Path:
        """The path of the sidecar without `.json`: model files sit next to it as `<stem>.*`."""
        return Path(self.path).with_suffix("")

    @property
    def cache_path(self) -> str | None:
        """The path of the cache the head was fitted on, when recorded (it may have moved since)."""
        return self.cache.path if self.cache is not None else None

    @property
    def boundary_cache(self) -> str | None:
        """A fine-tuned model's boundary cache (None for any other head)."""
        return (self.fine_tuning or {}).get("boundary_cache")

    @property
    def tuned_from(self) -> str | None:
        """The name of the head a fine-tuned model started from (None for any other head)."""
        start = (self.fine_tuning or {}).get("from_head")
        return start.get("name") if isinstance(start, dict) else None

    @classmethod
    def from_json(cls, document: dict, path: Path | None = None) -> HeadRecord:
        """The record of a checked sidecar document (`check_sidecar`), upgraded from older formats."""
        version = document.get("format_version", HEAD_FORMAT_VERSION)
        if version == legacy.FORMAT_1:
            document = _upgrade_v1(document)
        values = {}
        for name, (key, read, _) in _FIELDS.items():
            if document.get(key) is not None:
                values[name] = read(document[key])
        return cls(**values, path=Path(path) if path is not None else None, format_version=version)

    def to_json(self) -> dict:
        """The sidecar document, in the current format (fields not recorded are left out; see `_WRITTEN_NULL`)."""
        document = {"format": HEAD_FORMAT, "format_version": HEAD_FORMAT_VERSION}
        always = _WRITTEN_NULL.get(self.kind, ()) + _WRITTEN_NULL[None]
        for name, (key, _, write) in _FIELDS.items():
            value = getattr(self, name)
            if value is None:
                if name in always:
                    document[key] = None
            elif value != () or name in _KEPT_EMPTY:
                document[key] = write(value)
        return document


def _same(value):
    return value


def _texts(value) -> tuple[str, ...]:
    return tuple(str(item) for item in value)


def _list(value) -> list:
    return list(value)


#: attribute -> (JSON key, read, write), in the order a sidecar lists them.
_FIELDS = {
    "kind": ("kind", str, _same),
    "name": ("name", str, _same),
    "created": ("created", str, _same),
    "fit_seconds": ("fit_seconds", _same, _same),
    "versions": ("versions", _same, _same),
    "metrics_note": ("metrics_note", str, _same),
    "metrics": ("metrics", _same, _same),
    "hyperparameters": ("hyperparameters", _same, _same),
    "search": ("search", _list, _list),
    "model_file": ("model_file", str, _same),
    "concat_head": ("concat_head", ConcatHead.from_json, ConcatHead.to_json),
    "files": ("files", _texts, _list),
    "external_name": ("external_name", str, _same),
    "members": ("members", lambda items: tuple(FusedMember.from_json(item) for item in items),
                lambda members: [member.to_json() for member in members]),
    "feature_key": ("feature_key", str, _same),
    "feature_keys": ("feature_keys", _texts, _list),
    "feature_spec": ("feature_spec", FeatureSpec.from_dict, FeatureSpec.to_dict),
    "origin": ("origin", _same, _same),
    "target": ("target", str, _same),
    "pooling": ("head_pooling", str, _same),
    "head_input": ("head_input", str, _same),
    "extraction": ("extraction", _same, _same),
    "cache": ("cache", CacheRef.from_json, CacheRef.to_json),
    "listed_with": ("listed_with", str, _same),
    "fine_tuning": ("fine_tuning", _same, _same),
    "comparison": ("comparison", _same, _same),
    "warning": ("warning", str, _same),
    "class_names": ("class_names", _texts, _list),
    "member_of": ("member_of", _texts, _list),
    "metrics_by_target": ("metrics_by_target", _same, _same),
    "implied_targets": ("implied_targets", _same, _same),
    "views": ("views", str, _same),
    "tta": ("tta", _same, _same),
    "tta_views": ("tta_views", lambda views: tuple(int(view) for view in views), _list),
}
#: Fields written as null when not recorded, by kind (None: every kind): a head without a model
#: file says so, a late-fused head has no concatenated head, a fine-tuned model with no warning.
_WRITTEN_NULL = {None: ("model_file",), FUSION_KIND: ("concat_head",), FINE_TUNED: ("warning",)}
#: Sequence fields written even when empty (other empty sequences are left out).
_KEPT_EMPTY = frozenset({"search", "files", "class_names"})
#: Attributes that are not written: where the record was read from, and that file's format.
UNWRITTEN = frozenset({"path", "format_version"})


def written_fields() -> dict:
    """attribute -> JSON key of every field a sidecar may hold (all attributes but `UNWRITTEN`)."""
    return {name: key for name, (key, _, _) in _FIELDS.items()}


def _upgrade_v1(document: dict) -> dict:
    """A version-1 sidecar in the current shape: structured feature spec and an origin record."""
    spec = FeatureSpec.from_dict(document["feature_spec"])
    weights = (document.get("extraction") or {}).get("weights") or {}
    return {**document, "feature_spec": spec.to_dict(), "origin": legacy.origin_v1(spec.weights_fingerprint, weights)}
