"""Where the backbone is cut: the boundary layer k (frozen, cached) and the tuned layers k+1..n.

`fine-tune --unfreeze BLOCK` names a block (stage) as the backbone names it (`BackboneSpec.block_of`:
VGG16 `block5`, MobileNet `conv_dw_13`, EfficientNet-Lite0 `block7`); `--from-layer NAME` names
the first layer to train. Either way the tuned layers are every layer from there up to the layer
the head was fitted on (n), and the boundary is the one frozen layer whose output they read.

What is refused, with the reason:
- nothing to tune (the block starts after the head's layer) or nothing to cache (the first layer
  to train is the first layer of the network);
- a cut that is not one tensor wide: a tuned layer that also reads the output of a frozen layer
  other than the boundary (a residual connection across the cut), which a cache of one layer's
  output cannot feed;
- `frozen_mode="training"` when the frozen part has layers that compute differently in training
  (Dropout and its kin, BatchNormalization): a cache holds one output per image, their
  inference-mode output, so the frozen part is exact only in inference mode - the standard
  recipe, and what `fine-tune` does by default.
"""

from __future__ import annotations

from dataclasses import dataclass

from pipeline.backbones.registry import BackboneSpec
from pipeline.errors import UsageError

FROZEN_MODES = ("inference", "training")
#: Keras layer classes whose output depends on the `training` flag.
TRAINING_DEPENDENT = ("Dropout", "SpatialDropout1D", "SpatialDropout2D", "SpatialDropout3D", "GaussianDropout",
                      "GaussianNoise", "AlphaDropout", "BatchNormalization")
_SHOWN = 8  # names listed in a refusal


@dataclass(frozen=True)
class Cut:
    """`boundary` is frozen and cached; `tuned` (model order) are trained; `top` is the head's layer."""

    boundary: str
    tuned: tuple[str, ...]
    top: str
    unfrozen: str  # what the user asked: "block5", or the first layer's name

    def to_dict(self) -> dict:
        return {"boundary_layer": self.boundary, "tuned_layers": list(self.tuned), "top_layer": self.top,
                "unfrozen": self.unfrozen}


def blocks_of(spec: BackboneSpec, names: list[str]) -> list[str]:
    """The backbone's block names in model order (empty when it has no block naming)."""
    if spec.block_of is None:
        return []
    found: list[str] = []
    for name in names:
        block = spec.block_of(name)
        if block is not None and block not in found:
            found.append(block)
    return found


def resolve_cut(spec: BackboneSpec, model, top: str, unfreeze: str | None, from_layer: str | None,
                frozen_mode: str = "inference") -> Cut:
    """The `Cut` for `--unfreeze` / `--from-layer` on `model` (the backbone without its classifier)."""
    if (unfreeze is None) == (from_layer is None):
        raise UsageError("pass exactly one of --unfreeze BLOCK (e.g. block5) or --from-layer NAME")
    if frozen_mode not in FROZEN_MODES:
        raise UsageError(f"frozen mode {frozen_mode!r} is not one of {', '.join(FROZEN_MODES)}")
    names = [layer.name for layer in model.layers]
    if top not in names:
        raise UsageError(f"{spec.name} has no layer {top!r}, the layer the head was fitted on")
    end = names.index(top)
    start = _first_tuned(spec, names, unfreeze) if unfreeze is not None else _layer_index(spec, names, from_layer)
    asked = unfreeze if unfreeze is not None else from_layer
    if start > end:
        raise UsageError(f"{asked} comes after {top}, the layer the head was fitted on, so there is nothing to tune; "
                         f"unfreeze a block at or before {top} (blocks of {spec.name}: "
                         f"{', '.join(blocks_of(spec, names)) or 'none named'})")
    if start <= 1:
        raise UsageError(f"tuning from {names[start]} would train every layer, leaving nothing to cache; unfreeze a "
                         "later block")
    tuned = names[start:end + 1]
    boundary = _boundary(model, names, tuned)
    cut = Cut(boundary=boundary, tuned=tuple(tuned), top=top, unfrozen=asked)
    if frozen_mode == "training":
        _refuse_training_mode(spec, model, names[:names.index(boundary) + 1], boundary)
    return cut


def _first_tuned(spec: BackboneSpec, names: list[str], block: str) -> int:
    blocks = blocks_of(spec, names)
    if not blocks:
        raise UsageError(f"{spec.name} has no block names for --unfreeze; name the first layer to train with "
                         "--from-layer (see `layers`)")
    if block not in blocks:
        raise UsageError(f"{spec.name} has no block {block!r}; its blocks are: {', '.join(blocks)}")
    return next(i for i, name in enumerate(names) if spec.block_of(name) == block)


def _layer_index(spec: BackboneSpec, names: list[str], layer: str) -> int:
    if layer not in names:
        raise UsageError(f"{spec.name} has no layer {layer!r}; its last layers are: {', '.join(names[-_SHOWN:])} "
                         "(see `layers` for all)")
    return names.index(layer)


def _boundary(model, names: list[str], tuned: list[str]) -> str:
    """The one frozen layer the tuned layers read; `UsageError` when they read more than one."""
    producer = {id(layer.output): layer.name for layer in model.layers}
    inside = set(tuned)
    readers: dict[str, list[str]] = {}
    for name in tuned:
        inputs = model.get_layer(name).input
        for tensor in inputs if isinstance(inputs, (list, tuple)) else [inputs]:
            source = producer.get(id(tensor))
            if source is not None and source not in inside:
                readers.setdefault(source, []).append(name)
    if len(readers) != 1:
        crossing = "; ".join(f"{', '.join(users)} read{'s' if len(users) == 1 else ''} {source}"
                             for source, users in readers.items())
        raise UsageError(f"the network cannot be cut before {tuned[0]}: the tuned layers read {len(readers)} frozen "
                         f"layers ({crossing}), e.g. across a residual connection, and a cache holds one layer's "
                         "output; unfreeze from the start of a block instead (see `layers`)")
    return next(iter(readers))


def _refuse_training_mode(spec: BackboneSpec, model, frozen: list[str], boundary: str) -> None:
    dependent = [name for name in frozen if type(model.get_layer(name)).__name__ in TRAINING_DEPENDENT]
    if dependent:
        more = f" and {len(dependent) - _SHOWN} more" if len(dependent) > _SHOWN else ""
        shown = ", ".join(dependent[:_SHOWN]) + more
        raise UsageError(
            f"--frozen-mode training cannot be exact from a cache: the frozen part of {spec.name} up to {boundary} "
            f"has {len(dependent)} layers that compute differently in training ({shown}), while a cache holds one "
            "output per image - their inference-mode output. Frozen layers are exact in inference mode only (the "
            "standard recipe): drop --frozen-mode training")
