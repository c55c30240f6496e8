"""Feature maps: what one layer of a backbone responds to in one image, as a grid of its strongest channels.

`feature_source(...)` picks the backbone, weights, input size and resize policy: a fitted head's
exact extraction (`--head`), or a backbone with `--weights` (`--backbone`). `run_features` runs
the image through preprocessing and the backbone cut at `layer`, ranks the layer's channels by
their mean activation over the image, and draws the input beside the `channels` strongest maps,
each scaled to its own range (`features.png`, plus `result.json` with every channel's mean and
maximum). Layer names are those `layers BACKBONE` lists; an unknown one is a `UsageError`
naming them all.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from pipeline.data.images import ResizeSpec, decode_given_image
from pipeline.errors import UsageError
from pipeline.explain.classifier import EXPLAIN_SUBDIR
from pipeline.explain.outputs import new_result_dir, write_sidecar
from pipeline.explain.plotting import Panel, captioned_grid

COMMAND = "features"
#: Channels drawn by default (a 4 x 4 grid beside the input).
DEFAULT_CHANNELS = 16
#: Panels per row of the grid.
GRID_COLUMNS = 6
#: Colour map of the activation panels.
ACTIVATION_CMAP = "viridis"
FIGURE_NAME = "features.png"


@dataclass(frozen=True)
class FeatureSource:
    """Where the activations come from: a backbone spec, resolved weights, input size, resize, and a record."""

    backbone: object
    weights: object
    resize: ResizeSpec
    default_layer: str
    output_dir: Path
    record: dict

    @property
    def input_size(self) -> int:
        return self.resize.height


def feature_source(cache_dir: Path, head: Path | None = None, backbone: str | None = None,
                   weights: str = "imagenet", input_size: int | None = None) -> FeatureSource:
    """The head's extraction (`head`) or `backbone` with `weights` at `input_size` (exactly one of the two)."""
    if (head is None) == (backbone is None):
        raise UsageError("give either --backbone BACKBONE or --head HEAD (the head's own backbone and weights)")
    if head is not None:
        from pipeline.predict.extraction import load_head_extraction

        extraction = load_head_extraction(Path(head), Path(cache_dir))
        return FeatureSource(extraction.backbone, extraction.weights, extraction.resize, extraction.spec.layer,
                             Path(head).parent / EXPLAIN_SUBDIR,
                             {"kind": "head", "head": str(head), "backbone": extraction.backbone.name,
                              "weights": extraction.weights.describe()})
    from pipeline.backbones.registry import get_backbone
    from pipeline.backbones.weights import resolve_weights

    spec = get_backbone(backbone)
    size = input_size or spec.default_input_size
    resolved = resolve_weights(spec, weights, Path(cache_dir), size)
    return FeatureSource(spec, resolved, ResizeSpec(size, size, "stretch"), spec.default_layer,
                         Path(cache_dir) / EXPLAIN_SUBDIR / f"features-{spec.name}",
                         {"kind": "backbone", "backbone": spec.name, "weights": resolved.describe()})


def check_layer(source: FeatureSource, layer: str) -> None:
    """`UsageError` listing every layer of the backbone when `layer` is not one of them."""
    from pipeline.backbones.models import list_layers

    names = [row["name"] for row in list_layers(source.backbone, source.input_size)]
    if layer not in names:
        raise UsageError(f"{source.backbone.name} has no layer {layer!r}; its layers (as `layers "
                         f"{source.backbone.name}` lists them) are: {', '.join(names)}")


def activations(source: FeatureSource, layer: str, pixels: np.ndarray) -> np.ndarray:
    """The layer's activations (h, w, c) float32 for uint8 pixels (size, size, 3), preprocessing included."""
    from pipeline.backbones.preprocessing import apply_layers, preprocessing_layers
    from pipeline.backbones.tf_runtime import import_keras
    from pipeline.predict.image_model import backbone_features

    keras = import_keras()
    cut, _ = backbone_features(source.backbone, layer, source.input_size, source.weights)
    inputs = keras.Input(shape=(source.input_size, source.input_size, 3), dtype="float32")
    model = keras.Model(inputs, cut(apply_layers(preprocessing_layers(source.backbone.preprocessing), inputs),
                                    training=False))
    maps = np.asarray(model(pixels[None].astype(np.float32), training=False))[0]
    if maps.ndim != 3:
        raise UsageError(f"layer {layer!r} outputs shape {maps.shape}, not spatial maps (h, w, channels); "
                         "pick a convolution or pooling layer from `layers`")
    return maps


def strongest_channels(maps: np.ndarray, count: int) -> list[int]:
    """Indices of the `count` channels with the highest mean activation, strongest first (ties: lower index)."""
    means = maps.reshape(-1, maps.shape[-1]).mean(axis=0)
    return [int(i) for i in np.argsort(-means, kind="stable")[:count]]


def run_features(image: Path, source: FeatureSource, layer: str | None = None, channels: int = DEFAULT_CHANNELS,
                 out_dir: Path | None = None) -> dict:
    """Draw `channels` strongest maps of `layer` (default: the source's feature layer) for `image`; the result."""
    if channels < 1:
        raise UsageError(f"--channels must be at least 1, got {channels}")
    layer = layer or source.default_layer
    check_layer(source, layer)
    pixels = decode_given_image(image, source.resize, "the image")
    maps = activations(source, layer, pixels)
    ranked = strongest_channels(maps, min(channels, maps.shape[-1]))
    means, maxima = maps.reshape(-1, maps.shape[-1]).mean(axis=0), maps.reshape(-1, maps.shape[-1]).max(axis=0)
    result_dir = new_result_dir(out_dir or source.output_dir, COMMAND)
    shape = "x".join(str(d) for d in maps.shape)
    panels = [Panel(pixels, f"input ({source.input_size}x{source.input_size})")]
    panels += [Panel(maps[:, :, c], f"channel {c}  mean {means[c]:.2f}", ACTIVATION_CMAP) for c in ranked]
    rows = [panels[i:i + GRID_COLUMNS] for i in range(0, len(panels), GRID_COLUMNS)]
    title = (f"{source.backbone.name} {layer} ({shape}): the {len(ranked)} strongest of {maps.shape[-1]} channels "
             f"for {Path(image).name}; each map scaled to its own range")
    captioned_grid(result_dir / FIGURE_NAME, rows, title)
    outcome = {"result_dir": str(result_dir), "figure": str(result_dir / FIGURE_NAME), "layer": layer,
               "shape": list(maps.shape), "image": str(image),
               "channels": [{"channel": c, "mean": float(means[c]), "max": float(maxima[c])} for c in ranked],
               "grid_rows": math.ceil(len(panels) / GRID_COLUMNS)}
    write_sidecar(result_dir, COMMAND, {"layer": layer, "channels": channels, "input_size": source.input_size,
                                        "resize": source.resize.describe(), "image": str(image)},
                  source.record, outcome, [FIGURE_NAME], f"{layer} feature maps of {Path(image).name}",
                  f"{source.backbone.name} {layer} {shape}; strongest channels "
                  + ", ".join(str(c) for c in ranked[:5]) + (" ..." if len(ranked) > 5 else ""))
    return outcome
