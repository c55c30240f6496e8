"""Reading what the first release wrote: cache format 1 and head sidecar format 1.

Format 1 stored some facts as prose or implied them: the resize policy inside the text
"stretch-bilinear-224x224", the carved-split fractions and seed only in a human note, and "these
features were imported from an npz file" only as a prefix of the weights fingerprint. Newer files
store each as fields (see `pipeline.cache.format`). The functions here recover those fields from
a format-1 file, once, at read time, so the rest of the tool only ever sees the current shapes;
the next `extract` of such a cache rewrites it in the current format (its features are reused:
the key is unchanged, see `pipeline.cache.key`). A format-1 feature spec (its resize as text) is
read by `FeatureSpec.from_dict` itself, so that the key module needs nothing from here.
"""

from __future__ import annotations

import re

from pipeline.cache.key import ORIGIN_EXTRACTED, ORIGIN_IMPORTED_NPZ

FORMAT_1 = 1
#: How format 1 marked imported features: the weights fingerprint of the npz file.
IMPORTED_FINGERPRINT_PREFIX = "imported-npz:sha256:"
#: The note format-1 `extract` stored when it carved splits.
_CARVED_NOTE = re.compile(
    r"^carved (?P<parts>.+?) of the (?P<pool>\d+) images without an official split.*\(seed (?P<seed>-?\d+)\)")
_CARVED_PART = re.compile(r"\b(valid|test) (\d+(?:\.\d+)?)%")
_PERCENT = 100


def origin_v1(weights_fingerprint: str, weights_attrs: dict) -> dict:
    """The origin record of a format-1 cache or head, from its weights fingerprint."""
    if weights_fingerprint.startswith(IMPORTED_FINGERPRINT_PREFIX):
        return {"kind": ORIGIN_IMPORTED_NPZ, "file": weights_attrs.get("path"),
                "sha256": weights_fingerprint[len(IMPORTED_FINGERPRINT_PREFIX):]}
    return {"kind": ORIGIN_EXTRACTED}


def carving_v1(notes) -> dict | None:
    """The carved-split record (see `pipeline.data.splits.SplitCarving.to_dict`) from format-1 notes.

    The note printed fractions as whole percents, which is all a format-1 cache knows of them.
    """
    for note in notes or ():
        match = _CARVED_NOTE.match(str(note))
        if match:
            fractions = {name: float(value) / _PERCENT for name, value in _CARVED_PART.findall(match.group("parts"))}
            return {"valid_fraction": fractions.get("valid", 0.0), "test_fraction": fractions.get("test", 0.0),
                    "seed": int(match.group("seed")), "pool": int(match.group("pool")), "rounded_to_percent": True}
    return None
