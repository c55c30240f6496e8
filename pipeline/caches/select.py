"""Choosing one cache among those of a folder by what it holds, not by its hashed file name.

A cache is described by its properties (`PROPERTIES`): dataset, backbone, layer, input size,
resize policy, extraction pooling, precision, store dtype and views. A selection is a mapping
{property: value}; on the command line it is written as a spec in place of a CACHE argument:

    pets                        dataset
    pets/mobilenet              dataset/backbone
    pets/vgg16/block4_pool      dataset/backbone/layer
    pets/vgg16/resize=crop      any property as name=value; `*` skips a positional part
    backbone=mobilenet          the only mobilenet cache of the folder

Rules, in order:
- shard caches (`extract --shard`) are never candidates (`merge` them first);
- the caches whose properties equal every selected value are the matches;
- among several matches, the ones the tool made for itself are set aside: quickstart's demo
  cache (`DEMO_DATASET`) and fine-tune's boundary caches (named by a fine-tuned head's sidecar);
  they are chosen only when they alone match;
- still several: `CacheError` listing each candidate with the properties in which they differ
  and the spec (and API keywords) that picks it.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from pipeline.cache.format import (
    CACHE_SUFFIX,
    CacheInfo,
    find_caches,
    is_shard_cache_name,
    read_cache_info,
    resolve_cache_argument,
)
from pipeline.errors import CacheError, UsageError
from pipeline.heads.store import list_sidecars

#: Every property a cache can be selected by, in the order specs and messages show them.
PROPERTIES = ("dataset", "backbone", "layer", "input_size", "resize", "pool", "precision", "store_dtype", "views")
#: The properties a spec's parts give by position (`dataset/backbone/layer`).
POSITIONAL = ("dataset", "backbone", "layer")
#: A positional part that selects nothing.
ANY = "*"
#: The dataset `quickstart` generates inside the cache folder: a demo, set aside when other caches match.
DEMO_DATASET = "quickstart-shapes"
#: Why a cache is set aside among several matches.
ROLE_DEMO = "quickstart demo"
ROLE_BOUNDARY = "fine-tune boundary"


@dataclass(frozen=True)
class Candidate:
    """A cache of the folder with its properties and, for caches the tool made for itself, their role."""

    path: Path
    properties: dict
    role: str | None = None


def cache_properties(info: CacheInfo) -> dict[str, str]:
    """The selectable properties of a cache, as text (what specs compare against)."""
    spec = info.spec
    return {"dataset": str(info.dataset.name), "backbone": spec.backbone, "layer": spec.layer,
            "input_size": str(spec.input_size), "resize": spec.resize_policy, "pool": spec.pooling,
            "precision": spec.precision, "store_dtype": spec.store_dtype,
            "views": str(spec.views.count if spec.views is not None else 0)}


def parse_spec(text: str) -> dict[str, str]:
    """`dataset/backbone/layer` with `name=value` parts anywhere -> {property: value}; `UsageError` if malformed."""
    selection: dict[str, str] = {}
    positions = iter(POSITIONAL)
    for part in (p.strip() for p in str(text).split("/")):
        if not part:
            continue
        name, is_named, value = part.partition("=")
        if not is_named:
            name, value = next(positions, None), part
            if name is None:
                raise UsageError(f"cache spec {text!r} has more than {len(POSITIONAL)} positional parts "
                                 f"({'/'.join(POSITIONAL)}); give the others as name=value ({', '.join(PROPERTIES)})")
        name, value = name.strip(), value.strip()
        if name not in PROPERTIES:
            raise UsageError(f"cache spec {text!r}: no property {name!r}; use {', '.join(PROPERTIES)}")
        if value and value != ANY:
            selection[name] = value
    return selection


def selection_text(selection: dict) -> str:
    return ", ".join(f"{name}={value}" for name, value in selection.items())


def check_selection(selection: dict) -> dict[str, str]:
    """The selection with values as text; `UsageError` naming the properties that do not exist."""
    unknown = sorted(set(selection) - set(PROPERTIES))
    if unknown:
        raise UsageError(f"caches cannot be selected by {', '.join(unknown)}; the properties are "
                         f"{', '.join(PROPERTIES)}")
    return {name: str(value) for name, value in selection.items() if value is not None}


def boundary_caches(folder: Path) -> dict[Path, list[str]]:
    """{resolved boundary cache path: [file names of the caches whose fine-tuned heads read it]} in `folder`."""
    users: dict[Path, list[str]] = {}
    for path in find_caches(folder):
        for record in list_sidecars(path):
            boundary = record.boundary_cache
            if boundary and path.name not in users.setdefault(Path(boundary).resolve(), []):
                users[Path(boundary).resolve()].append(path.name)
    return users


def candidates(folder: Path) -> tuple[list[Candidate], list[tuple[Path, str]]]:
    """The whole-dataset caches of `folder` as candidates, and the unreadable ones with the reason."""
    boundaries = boundary_caches(folder)
    found, damaged = [], []
    for path in find_caches(folder):
        if is_shard_cache_name(path.name):
            continue
        try:
            info = read_cache_info(path)
        except CacheError as error:
            damaged.append((path, str(error).splitlines()[0]))
            continue
        properties = cache_properties(info)
        role = (ROLE_BOUNDARY if path.resolve() in boundaries
                else ROLE_DEMO if properties["dataset"] == DEMO_DATASET else None)
        found.append(Candidate(path, properties, role))
    return found, damaged


def select_cache(target: Path, selection: dict | None = None) -> Path:
    """The cache at `target` (a file, or a folder to choose in) that `selection` picks; `CacheError` otherwise."""
    target, selection = Path(target), check_selection(selection or {})
    if not target.is_dir():
        path = resolve_cache_argument(target)
        if selection:
            _require_match(path, selection)
        return path
    found, damaged = candidates(target)
    if (not found and not damaged) or (not selection and len(found) + len(damaged) == 1):
        return resolve_cache_argument(target)  # none, only shards, or one: its messages say what to do
    matches = [c for c in found if all(c.properties[name] == value for name, value in selection.items())]
    if not matches:
        what = f"matches {selection_text(selection)}" if selection else "can be read"
        raise CacheError(f"no cache in {target} {what}; its caches:{_listing(found, PROPERTIES)}"
                         f"{_damaged_text(damaged)}")
    own = [c for c in matches if c.role is None]
    chosen = own if own else matches
    if len(chosen) == 1:
        return chosen[0].path
    differing = [name for name in PROPERTIES if len({c.properties[name] for c in chosen}) > 1]
    aside = len(matches) - len(chosen)
    where = f" matching {selection_text(selection)}" if selection else ""
    differ = (f"they differ in {', '.join(differing)}" if differing
              else "they differ only in weights or preprocessing; pass the file itself")
    raise CacheError(
        f"{target} holds {len(chosen)} caches{where}; {differ}:{_listing(chosen, differing, with_spec=True)}\n"
        "choose one: pass its spec in place of CACHE (command line), or open_cache(folder, name=value, ...) "
        "with the same properties (Python)"
        + (f"; {aside} cache(s) made by quickstart or fine-tune were set aside" if aside else ""))


def resolve_cache_spec(argument, cache_dir: Path) -> Path:
    """A command's CACHE argument: none -> chosen in `cache_dir`; a file, or a folder holding caches, as given (a
    folder chosen in); anything else is a spec (module doc) chosen in `cache_dir`, so `pets` means the pets cache
    even beside a data folder named pets."""
    if argument is None:
        return select_cache(cache_dir)
    path = Path(argument)
    if path.is_file() or path.suffix == CACHE_SUFFIX or (path.is_dir() and find_caches(path)):
        return select_cache(path)
    if path.is_dir() and not Path(cache_dir).is_dir():
        return select_cache(path)  # an empty folder and no cache folder: say there is no cache in it
    return select_cache(cache_dir, parse_spec(str(argument)))


def spec_of(candidate: Candidate, differing) -> str:
    """The shortest readable spec that picks `candidate` among caches differing in `differing`."""
    props = candidate.properties
    parts = [props[name] for name in POSITIONAL]
    parts += [f"{name}={props[name]}" for name in differing if name not in POSITIONAL]
    return "/".join(parts)


def _listing(found: list[Candidate], shown, with_spec: bool = False) -> str:
    lines = []
    for candidate in found:
        text = "  ".join(f"{name}={candidate.properties[name]}" for name in shown)
        spec = f"  -> {spec_of(candidate, shown)}" if with_spec else ""
        role = f"  ({candidate.role})" if candidate.role else ""
        lines.append(f"\n  {candidate.path.name}  {text}{role}{spec}")
    return "".join(lines) or "\n  (none)"


def _damaged_text(damaged) -> str:
    return "".join(f"\n  {path.name}  unreadable: {reason}" for path, reason in damaged)


def _require_match(path: Path, selection: dict) -> None:
    properties = cache_properties(read_cache_info(path))
    wrong = {name: value for name, value in selection.items() if properties[name] != value}
    if wrong:
        raise CacheError(f"{path.name} does not match {selection_text(wrong)}: it has "
                         + ", ".join(f"{name}={properties[name]}" for name in wrong))
