"""The feature key: everything that changes the numbers a backbone produces.

Two extractions share cached features only when every field of `FeatureSpec` is equal. File
names, paths, labels and dataset names are deliberately absent: renaming or relabelling never
invalidates features. Bump `SCHEMA_VERSION` whenever extraction code changes what features mean
(decoding, resizing, pooling...), so old caches become misses instead of silently wrong hits.
"""

from __future__ import annotations

import hashlib
import json
import platform
from dataclasses import asdict, dataclass, field
from importlib import metadata
from pipeline.errors import UsageError

SCHEMA_VERSION = 1
POOLINGS = ("none", "avg", "max")
STORE_DTYPES = ("float32", "float16")
_KEY_FIELDS_SHOWN = 10  # hex digits of the key shown in file names
_VERSIONED_PACKAGES = ("bottleneck-pipeline", "tensorflow", "keras", "numpy", "h5py", "pillow", "scikit-learn")


@dataclass(frozen=True)
class FeatureSpec:
    """What determines a cached feature row, apart from the image bytes themselves."""

    backbone: str
    weights_fingerprint: str
    layer: str
    input_size: int
    resize: str
    preprocessing: str
    precision: str
    pooling: str
    store_dtype: str
    schema_version: int = field(default=SCHEMA_VERSION)

    def __post_init__(self):
        if self.pooling not in POOLINGS:
            raise UsageError(f"pooling {self.pooling!r} is not one of {', '.join(POOLINGS)}")
        if self.store_dtype not in STORE_DTYPES:
            raise UsageError(f"store dtype {self.store_dtype!r} is not one of {', '.join(STORE_DTYPES)}")

    def to_json(self) -> str:
        """Canonical JSON (sorted keys) - the exact text the key is computed from."""
        return json.dumps(asdict(self), sort_keys=True)

    @classmethod
    def from_json(cls, text: str) -> "FeatureSpec":
        return cls(**json.loads(text))

    def key(self) -> str:
        """sha256 hex of the canonical JSON."""
        return hashlib.sha256(self.to_json().encode()).hexdigest()

    def short_name(self) -> str:
        """Readable, unique file-name stem: backbone, layer, pooling and the first key digits."""
        pool = "" if self.pooling == "none" else f"-{self.pooling}"
        return f"{self.backbone}-{self.layer}{pool}-{self.key()[:_KEY_FIELDS_SHOWN]}"


def library_versions() -> dict[str, str]:
    """Versions of Python and the libraries that shape features and heads (recorded, not keyed)."""
    versions = {"python": platform.python_version()}
    for package in _VERSIONED_PACKAGES:
        try:
            versions[package] = metadata.version(package)
        except metadata.PackageNotFoundError:
            versions[package] = "absent"
    return versions
