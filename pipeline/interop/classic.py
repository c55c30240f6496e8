"""The dog-breed notebook's five precomputed bottleneck files, as data.

The notebook hands out one `.npz` per network (`train`, `valid`, `test`; rows in `load_files`
order), all computed with Keras 2.0.x at 224x224 input:

| file                   | row shape  | layer (Keras 2.0)                                      |
|------------------------|------------|--------------------------------------------------------|
| DogVGG16Data.npz       | 7x7x512    | vgg16 block5_pool                                      |
| DogVGG19Data.npz       | 7x7x512    | vgg19 block5_pool                                      |
| DogResnet50Data.npz    | 1x1x2048   | resnet50 avg_pool: conv5_block3_out averaged over 7x7  |
| DogInceptionV3Data.npz | 5x5x2048   | inception_v3 mixed10 at 224 px                         |
| DogXceptionData.npz    | 7x7x2048   | xception block14_sepconv2_act at 224 px                |

Keras 2.2 moved ResNet50's 7x7 `avg_pool` inside `include_top`, so today's ResNet50 without its
classifier ends at `conv5_block3_out` (7x7x2048); the classic file's row is that map averaged over
its 49 positions. `ClassicNetwork.recorded_layer` is the layer an imported file is recorded under
(the Keras 2.0 name), `source_layer` the layer of our backbone an export reads.

`recognise` picks the network of a file: `--backbone` first, then the file name, then the
`backbone` array `export-npz` writes, then the row shape when only one network has it. Whatever
picked it, the row shape must be that network's, or the file is refused with the table.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from pipeline.errors import DatasetError, UsageError

#: Every classic file was computed at this input size.
CLASSIC_INPUT_SIZE = 224


@dataclass(frozen=True)
class ClassicNetwork:
    """One row of the table (see the module doc)."""

    file_name: str
    backbone: str
    row_shape: tuple[int, ...]
    recorded_layer: str
    source_layer: str
    description: str

    @property
    def source_shape(self) -> tuple[int, ...]:
        """The shape of `source_layer` at 224 px: the row shape, or the 7x7 map a 1x1 row averages."""
        return (7, 7, self.row_shape[-1]) if self.averaged else self.row_shape

    @property
    def averaged(self) -> bool:
        """True when the row is the source layer's map averaged to 1x1 (ResNet50)."""
        return self.recorded_layer != self.source_layer


CLASSIC_NETWORKS: tuple[ClassicNetwork, ...] = (
    ClassicNetwork("DogVGG16Data.npz", "vgg16", (7, 7, 512), "block5_pool", "block5_pool", "vgg16 block5_pool"),
    ClassicNetwork("DogVGG19Data.npz", "vgg19", (7, 7, 512), "block5_pool", "block5_pool", "vgg19 block5_pool"),
    ClassicNetwork("DogResnet50Data.npz", "resnet50", (1, 1, 2048), "avg_pool", "conv5_block3_out",
                   "resnet50 avg_pool (Keras 2.0): conv5_block3_out averaged over its 7x7 positions"),
    ClassicNetwork("DogInceptionV3Data.npz", "inception_v3", (5, 5, 2048), "mixed10", "mixed10",
                   "inception_v3 mixed10 at 224 px"),
    ClassicNetwork("DogXceptionData.npz", "xception", (7, 7, 2048), "block14_sepconv2_act", "block14_sepconv2_act",
                   "xception block14_sepconv2_act at 224 px"),
)
#: The backbones of the classic files (what `import-npz --backbone` accepts).
CLASSIC_BACKBONES = tuple(network.backbone for network in CLASSIC_NETWORKS)
#: File-name spellings of each backbone ("DogResnet50Data.npz", "resnet50_bottleneck.npz", ...).
_NAME_TOKENS = {"vgg16": "vgg16", "vgg19": "vgg19", "resnet50": "resnet50", "inceptionv3": "inception_v3",
                "xception": "xception"}


def classic_table() -> str:
    """The table of the module doc, one line per file (for refusals)."""
    return "\n".join(f"  {n.file_name:<24} {_shape_text(n.row_shape):<10} {n.description}" for n in CLASSIC_NETWORKS)


def network_of(backbone: str) -> ClassicNetwork | None:
    """The classic network computed with `backbone`, or None."""
    return next((n for n in CLASSIC_NETWORKS if n.backbone == backbone), None)


def backbone_in_name(file_name: str) -> str | None:
    """The backbone a file name spells (case and separators ignored), or None."""
    squashed = re.sub(r"[^a-z0-9]", "", file_name.lower())
    found = [backbone for token, backbone in _NAME_TOKENS.items() if token in squashed]
    return found[0] if len(found) == 1 else None


def recognise(file_name: str, row_shape: tuple[int, ...], backbone: str | None = None,
              hint: str | None = None) -> tuple[ClassicNetwork, str]:
    """(the network of a file with rows of `row_shape`, how it was recognised); see the module doc.

    `backbone` is `--backbone` (a `UsageError` when it names no classic network), `hint` the
    file's own `backbone` array. Raises `DatasetError` with the table when the shape does not fit.
    """
    row_shape = tuple(int(d) for d in row_shape)
    if backbone is not None:
        chosen = network_of(backbone.lower())
        if chosen is None:
            raise UsageError(f"--backbone {backbone}: the classic files were computed with "
                             f"{', '.join(n.backbone for n in CLASSIC_NETWORKS)} only")
        how = f"--backbone {chosen.backbone}"
    elif backbone_in_name(file_name) is not None:
        chosen, how = network_of(backbone_in_name(file_name)), f"the file name {file_name}"
    elif hint is not None and network_of(hint) is not None:
        chosen, how = network_of(hint), f"the file's backbone entry ({hint})"
    else:
        fitting = [n for n in CLASSIC_NETWORKS if n.row_shape == row_shape]
        if len(fitting) == 1:
            return fitting[0], f"its row shape {_shape_text(row_shape)}"
        if fitting:
            raise DatasetError(
                f"{file_name}: rows of {_shape_text(row_shape)} fit {' and '.join(n.backbone for n in fitting)} "
                f"alike, and the file name does not say which; name the network with "
                f"{' or '.join('--backbone ' + n.backbone for n in fitting)}")
        raise DatasetError(_unknown_shape(file_name, row_shape))
    if chosen.row_shape != row_shape:
        raise DatasetError(
            f"{file_name}: recognised as {chosen.backbone} from {how}, but its rows are {_shape_text(row_shape)} "
            f"where {chosen.file_name} has {_shape_text(chosen.row_shape)}. The classic files are:\n"
            f"{classic_table()}\nName the network that computed the file with --backbone, or extract the "
            "features with `extract` instead")
    return chosen, how


def _unknown_shape(file_name: str, row_shape: tuple[int, ...]) -> str:
    return (f"{file_name}: rows of {_shape_text(row_shape)} match none of the classic files (Keras 2.0, 224 px):\n"
            f"{classic_table()}\nOnly these can be imported (a file of another network or layer would be recorded "
            "under one that did not produce it); extract those features with `extract` instead")


def _shape_text(shape: tuple[int, ...]) -> str:
    return "x".join(str(d) for d in shape)
