"""The candidates `search` can try: extraction configurations (backbone, input size, views) x head recipes.

An `Extraction` is one feature cache: a backbone whose genuine ImageNet weights resolve on this
machine, at its native input size or a larger one (fine-grained data gains from resolution, the
FixRes effect), with or without augmented training views. A `Recipe` adds the head fitted on that
cache and the pooling of its spatial maps. Caches keep full maps (`--pool none`, like a default
`extract`), so every head pooling is read from the same cache, and the default recipe's cache
(vgg16 at 224) is the one a plain `extract` already wrote.

Test-time augmentation is a field of `Recipe`: on an extraction with views, every head fitted is
also scored on validation with TTA over its cached views (`pipeline.heads.tta.DEFAULT_VIEW_SET`),
which costs predictions only, and recorded as a candidate of its own ("... tta").

Axes are plain tuples in `SearchSpace`; a new axis is a new field of `Recipe` and `SearchSpace`,
enumerated in `head_recipes`.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from pathlib import Path

from pipeline.backbones.registry import BACKBONES
from pipeline.errors import UsageError, WeightsError
from pipeline.heads.registry import HEADS

#: Input sizes tried above a backbone's native one, capped at `MAX_SIZE_FACTOR` x native.
LARGER_SIZES = (320, 384, 448)
MAX_SIZE_FACTOR = 2.0
#: Augmented views per training image for the views rung (`extract --views`).
DEFAULT_VIEWS = 4
#: Heads that search can fit: single-target heads of the registry (multitask needs extra targets).
SEARCHABLE_HEADS = tuple(kind for kind, entry in HEADS.items() if not entry.options)
#: The heads tried by default: the quick ones on cached features (the Keras heads are opt-in).
DEFAULT_HEADS = ("logreg", "svm", "knn")
#: Head poolings of spatial maps tried: average (the default), and average + max side by side.
SEARCH_POOLINGS = ("avg", "avgmax")
#: Earlier feature layers tried for a backbone, where the choice matters: VGG16's classic bottleneck is
#: block5_pool, and block4_pool (same 512 channels, 2x finer maps) often transfers better to data far
#: from ImageNet (Azizpour et al., 2015). The light backbones' default layers are their last blocks, and
#: their earlier blocks are narrower (MobileNet's conv_pw_11: 512 channels against 1024): not offered.
EARLIER_LAYERS = {"vgg16": ("block4_pool",)}
#: Marks a recipe scored with test-time augmentation (its name's suffix, its record's field).
TTA = "tta"
#: The simplest head: its recipe is the cheapest on each cache and is fitted first.
SIMPLEST_HEAD_ORDER = ("logreg", "knn", "svm", "mlp", "gap-dense")


@dataclass(frozen=True)
class Extraction:
    """One feature cache to extract: `backbone` at `input_size`, with `views` augmented views (0: none), at
    its feature `layer` (None: the backbone's default, the classic bottleneck)."""

    backbone: str
    input_size: int
    views: int = 0
    layer: str | None = None

    @property
    def name(self) -> str:
        return (f"{self.backbone}@{self.input_size}" + (f":{self.layer}" if self.layer else "")
                + (f"+{self.views}views" if self.views else ""))

    def to_dict(self) -> dict:
        return {"backbone": self.backbone, "input_size": self.input_size, "views": self.views} | (
            {"layer": self.layer} if self.layer else {})


@dataclass(frozen=True)
class Recipe:
    """A candidate: an extraction and the head fitted on it (kind and pooling of spatial maps), scored on
    view 0, or with `tta` on the mean over each image's cached views (an extraction with views only)."""

    extraction: Extraction
    head: str
    pooling: str = "avg"
    tta: bool = False

    @property
    def name(self) -> str:
        return (f"{self.extraction.name} {self.head}" + (f" {self.pooling}" if self.pooling != "avg" else "")
                + (f" {TTA}" if self.tta else ""))

    def with_tta(self) -> Recipe:
        return replace(self, tta=True)

    def to_dict(self) -> dict:
        return {**self.extraction.to_dict(), "head": self.head, "pooling": self.pooling} | (
            {TTA: True} if self.tta else {})


@dataclass(frozen=True)
class SearchSpace:
    """The axes of one search.

    `sizes` maps each backbone to its input sizes, native first; `layers` each backbone to the earlier
    feature layers tried at its best extraction (`EARLIER_LAYERS`); `views` is the number of views of
    the views rung (0 switches it off); `tta` whether heads on extractions with views are also
    scored with test-time augmentation; `fusion` whether the best members of different backbones
    are fused at the end.
    """

    backbones: tuple[str, ...]
    heads: tuple[str, ...]
    sizes: dict = field(default_factory=dict)
    layers: dict = field(default_factory=dict)
    poolings: tuple[str, ...] = SEARCH_POOLINGS
    views: int = DEFAULT_VIEWS
    fusion: bool = True
    tta: bool = True

    def native(self, backbone: str) -> Extraction:
        return Extraction(backbone, self.sizes[backbone][0])

    def larger(self, backbone: str) -> list[Extraction]:
        return [Extraction(backbone, size) for size in self.sizes[backbone][1:]]

    def to_dict(self) -> dict:
        return {"backbones": list(self.backbones), "heads": list(self.heads),
                "sizes": {name: list(sizes) for name, sizes in self.sizes.items()},
                "layers": {name: list(layers) for name, layers in self.layers.items()}, "poolings": list(self.poolings),
                "views": self.views, "fusion": self.fusion, "tta": self.tta}


def sizes_for(backbone: str) -> tuple[int, ...]:
    """The native input size of `backbone`, then the larger sizes up to `MAX_SIZE_FACTOR` x native."""
    native = BACKBONES[backbone].default_input_size
    return (native, *(size for size in LARGER_SIZES if native < size <= native * MAX_SIZE_FACTOR))


def weights_problem(backbone: str, cache_dir: Path) -> str:
    """Why genuine ImageNet weights of `backbone` do not resolve here ("" when they do).

    Asks the normal weights resolution (Keras cache, then offline sources; never a download), so
    any backbone added to the registry with a working source is searched.
    """
    from pipeline.backbones.weights import IMAGENET, resolve_weights

    spec = BACKBONES[backbone]
    try:
        resolve_weights(spec, IMAGENET, cache_dir, spec.default_input_size, allow_download=False)
    except WeightsError as error:
        return str(error).splitlines()[0].split(" Tried:")[0]
    return ""


def build_space(cache_dir: Path, backbones: tuple[str, ...] | None = None, heads: tuple[str, ...] | None = None,
                views: int = DEFAULT_VIEWS, fusion: bool = True) -> SearchSpace:
    """The space over the `backbones` (default: every one whose weights resolve) and `heads` filters.

    `UsageError` names the valid choices for an unknown backbone or head, and says which backbones
    have weights here for one whose weights do not resolve.
    """
    chosen_heads = _checked_heads(heads)
    unknown = [name for name in backbones or () if name not in BACKBONES]
    if unknown:
        raise UsageError(f"unknown backbone {', '.join(map(repr, unknown))} in --backbones; valid: "
                         f"{', '.join(BACKBONES)} (`python cli.py weights` says which have weights here)")
    wanted = tuple(dict.fromkeys(backbones)) if backbones else tuple(BACKBONES)
    problems = {name: weights_problem(name, cache_dir) for name in wanted}
    usable = tuple(name for name in wanted if not problems[name])
    if backbones and len(usable) < len(wanted):
        everywhere = [name for name in BACKBONES if name in usable or not weights_problem(name, cache_dir)]
        missing = [name for name in wanted if problems[name]]
        raise UsageError(f"no genuine ImageNet weights resolve here for {', '.join(missing)} "
                         f"({problems[missing[0]]}); search can use: {', '.join(everywhere) or 'none'} "
                         "(see `python cli.py weights`)")
    if not usable:
        raise UsageError("no backbone has genuine ImageNet weights on this machine, so there is nothing to search; "
                         "see `python cli.py weights` for how to install a source")
    return SearchSpace(usable, chosen_heads, {name: sizes_for(name) for name in usable},
                       {name: EARLIER_LAYERS[name] for name in usable if name in EARLIER_LAYERS}, views=views,
                       fusion=fusion)


def _checked_heads(heads: tuple[str, ...] | None) -> tuple[str, ...]:
    if not heads:
        return DEFAULT_HEADS
    unknown = [kind for kind in heads if kind not in SEARCHABLE_HEADS]
    if unknown:
        raise UsageError(f"unknown head {', '.join(map(repr, unknown))} in --heads; valid: "
                         f"{', '.join(SEARCHABLE_HEADS)}")
    return tuple(dict.fromkeys(heads))


def head_recipes(space: SearchSpace, extraction: Extraction) -> list[Recipe]:
    """The head recipes tried on one extraction, simplest first (`SIMPLEST_HEAD_ORDER`, then pooling)."""
    order = {kind: i for i, kind in enumerate(SIMPLEST_HEAD_ORDER)}
    kinds = sorted(space.heads, key=lambda kind: order.get(kind, len(order)))
    return [Recipe(extraction, kind, pooling) for kind in kinds for pooling in space.poolings]
