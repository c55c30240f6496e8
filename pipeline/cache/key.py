"""The feature key: everything that changes the numbers a backbone produces, and provenance helpers.

Two extractions share cached features only when their keys are equal, and the key covers every
field of `FeatureSpec`. File names, paths, labels and dataset names are deliberately absent:
renaming or relabelling never invalidates features. Bump `SCHEMA_VERSION` whenever extraction
code changes what features mean (decoding, resizing, pooling...), so old caches become misses
instead of silently wrong hits.

The key is the sha256 of `FeatureSpec.key_document()`, a canonical JSON document whose shape is
frozen: it renders the resize fields as the one text `<policy>-<filter>-<h>x<w>` that the first
release keyed, so caches written by every release keep their keys (and their hours of features)
while the spec itself stores the policy and filter as separate fields. A field added later enters
the document only when it differs from its default, for the same reason: `views` (the augmented
views of `extract --views K`, `pipeline.data.views.ViewSpec`) is keyed, and stored in `to_dict()`,
only for K > 0, so a cache without views keeps its key and its stored spec byte for byte.

Origin: a cache's features were either extracted here (`ORIGIN_EXTRACTED`) or imported from a
classic npz file (`ORIGIN_IMPORTED_NPZ`); that fact is recorded with the cache and every head as
`{"kind": ..., ...}`, never inferred from other fields.
"""

from __future__ import annotations

import hashlib
import json
import platform
import re
from dataclasses import asdict, dataclass, field, replace
from datetime import datetime, timezone
from importlib import metadata

from pipeline.data.views import ViewSpec
from pipeline.errors import UsageError

SCHEMA_VERSION = 1
#: Poolings `extract --pool` applies before rows are stored ("none" keeps the spatial maps).
EXTRACT_POOLINGS = ("none", "avg", "max")
STORE_DTYPES = ("float32", "float16")
#: What the spec says about a property of imported features that cannot be known.
UNKNOWN = "unknown (imported)"
ORIGIN_EXTRACTED = "extracted"
ORIGIN_IMPORTED_NPZ = "imported-npz"
#: How the first release (format 1) stored the resize fields: one text, e.g. "stretch-bilinear-224x224".
_RESIZE_TEXT = re.compile(r"^(?P<policy>[a-z]+)-(?P<filter>[a-z]+)-(?P<height>\d+)x(?P<width>\d+)$")
_KEY_FIELDS_SHOWN = 10  # hex digits of the key shown in file names
_VERSIONED_PACKAGES = ("bottleneck-pipeline", "tensorflow", "keras", "numpy", "h5py", "pillow", "scikit-learn")


@dataclass(frozen=True)
class FeatureSpec:
    """What determines a cached feature row, apart from the image bytes themselves.

    `resize_policy` is stretch, crop or pad (`pipeline.data.images.RESIZE_POLICIES`) and
    `resize_filter` the interpolation; both are `UNKNOWN`/None for imported features. `views` is
    None for a cache of plain images, else how its augmented views are drawn.
    """

    backbone: str
    weights_fingerprint: str
    layer: str
    input_size: int
    resize_policy: str
    resize_filter: str | None
    preprocessing: str
    precision: str
    pooling: str
    store_dtype: str
    schema_version: int = field(default=SCHEMA_VERSION)
    views: ViewSpec | None = None

    def __post_init__(self):
        if self.pooling not in EXTRACT_POOLINGS:
            raise UsageError(f"pooling {self.pooling!r} is not one of {', '.join(EXTRACT_POOLINGS)}")
        if self.store_dtype not in STORE_DTYPES:
            raise UsageError(f"store dtype {self.store_dtype!r} is not one of {', '.join(STORE_DTYPES)}")

    def resize_text(self) -> str:
        """The resize fields as the key document renders them, e.g. "stretch-bilinear-224x224"."""
        if self.resize_filter is None:
            return self.resize_policy
        return f"{self.resize_policy}-{self.resize_filter}-{self.input_size}x{self.input_size}"

    def key_document(self) -> dict:
        """The canonical document the key is the hash of (its shape is frozen: see the module doc)."""
        return {
            "backbone": self.backbone, "weights_fingerprint": self.weights_fingerprint, "layer": self.layer,
            "input_size": self.input_size, "resize": self.resize_text(), "preprocessing": self.preprocessing,
            "precision": self.precision, "pooling": self.pooling, "store_dtype": self.store_dtype,
            "schema_version": self.schema_version,
        } | ({"views": self.views.to_dict()} if self.views is not None else {})

    def key(self) -> str:
        """sha256 hex of the canonical JSON of `key_document()`."""
        return hashlib.sha256(json.dumps(self.key_document(), sort_keys=True).encode()).hexdigest()

    def to_dict(self) -> dict:
        """The spec's fields (what caches and head sidecars store); `views` only when there are views."""
        fields = asdict(self)
        if self.views is None:
            del fields["views"]
        return fields

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), sort_keys=True)

    @classmethod
    def from_dict(cls, fields: dict) -> FeatureSpec:
        """A spec from `to_dict()` output, or from a first-release spec (which stored `resize` as text)."""
        if "resize" in fields:
            fields = _spec_fields_v1(fields)
        if fields.get("views") is not None:
            fields = {**fields, "views": ViewSpec.from_dict(fields["views"])}
        return cls(**fields)

    @classmethod
    def from_json(cls, text: str) -> FeatureSpec:
        return cls.from_dict(json.loads(text))

    def short_name(self) -> str:
        """Readable, unique file-name stem: backbone, layer, pooling and the first key digits."""
        pool = "" if self.pooling == "none" else f"-{self.pooling}"
        views = "" if self.views is None else f"-views{self.views.count}"
        return f"{self.backbone}-{self.layer}{pool}{views}-{self.key()[:_KEY_FIELDS_SHOWN]}"

    def without_views(self) -> FeatureSpec:
        """The same extraction of the plain images (whose rows are the view-0 rows of this one)."""
        return replace(self, views=None)


def _spec_fields_v1(fields: dict) -> dict:
    """Format-1 `FeatureSpec` fields (`resize` as text) as current fields (`resize_policy`, `resize_filter`)."""
    fields = dict(fields)
    text = fields.pop("resize")
    match = _RESIZE_TEXT.match(text)
    if match is None:  # imported features: "unknown (imported)"
        fields.update(resize_policy=text, resize_filter=None)
    else:
        fields.update(resize_policy=match.group("policy"), resize_filter=match.group("filter"))
    return fields


def library_versions() -> dict[str, str]:
    """Versions of Python and the libraries that shape features and heads (recorded, not keyed)."""
    versions = {"python": platform.python_version()}
    for package in _VERSIONED_PACKAGES:
        try:
            versions[package] = metadata.version(package)
        except metadata.PackageNotFoundError:
            versions[package] = "absent"
    return versions


def now_iso() -> str:
    """The current UTC time, ISO 8601 to the second."""
    return datetime.now(timezone.utc).isoformat(timespec="seconds")
