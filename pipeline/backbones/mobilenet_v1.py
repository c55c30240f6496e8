"""MobileNet v1 (alpha 1.0, 224): what tells its genuine ImageNet weights from others.

The family is `keras.applications.mobilenet`. `REFERENCE_VALUES` were recorded from the
TF-slim ImageNet checkpoint `mobilenet_v1_1.0_224` (as shipped in the `nudity` package's frozen
graph, see `pipeline.backbones.sources.nudity_mobilenet`), in Keras layout, keyed by (Keras layer,
index into `get_weights()`, flat index). Batch-norm indices: 0 gamma, 1 beta, 2 moving mean,
3 moving variance; `conv_preds` 0 kernel, 1 bias (without TF-slim's "background" class, so its
bias 0 is the graph's bias 1). Channel 0 of the first layers is avoided: it is dead (about 1e-13)
and would not catch a wrong mapping. `block_of` names the depthwise-separable block of a layer for
`fine-tune --unfreeze` (block N = conv_pad_N, conv_dw_N, conv_pw_N and their BatchNorm and ReLU).
"""

from __future__ import annotations

import re
from pathlib import Path

from pipeline.backbones.layer_weights import file_reference_problems

NAME = "mobilenet"
_BLOCK = re.compile(r"^conv_(?:pad|dw|pw)_(\d+)")
_STEM = re.compile(r"^conv1(?:_|$)")
REFERENCE_VALUES: dict[tuple[str, int, int], float] = {
    ("conv1", 0, 1): 0.31112927198410034,
    ("conv1_bn", 0, 1): 0.6502549052238464,
    ("conv1_bn", 1, 2): 2.180778741836548,
    ("conv1_bn", 2, 1): 0.046194322407245636,
    ("conv_dw_1", 0, 0): -1.188430666923523,
    ("conv_dw_1_bn", 3, 1): 7.187094688415527,
    ("conv_pw_7", 0, 12345): -0.03444794937968254,
    ("conv_dw_13_bn", 2, 2): -3.5049726963043213,
    ("conv_pw_13_bn", 1, 1023): -5.564032077789307,
    ("conv_preds", 0, 1): -0.059972066432237625,
    ("conv_preds", 1, 0): -0.48195135593414307,
    ("conv_preds", 1, 999): 1.3013142347335815,
}


def reference_problems(path: Path) -> list[str]:
    """Disagreements of the weights file at `path` with genuine ImageNet MobileNet v1 (empty: genuine).

    The classifier's values are checked only when the file has the classifier.
    """
    problems = file_reference_problems(path, REFERENCE_VALUES, NAME)
    if problems and all(problem.startswith("conv_preds") and problem.endswith("missing") for problem in problems):
        return []  # a file of the convolutional base only (e.g. Keras' *_no_top.h5)
    return problems


def block_of(layer: str) -> str | None:
    """The separable block of a MobileNet layer, named by its depthwise layer ("conv_pw_13_bn" ->
    "conv_dw_13"); "conv1" for the stem; None for the input."""
    match = _BLOCK.match(layer)
    if match:
        return f"conv_dw_{match.group(1)}"
    return "conv1" if _STEM.match(layer) else None
