"""The attack's pictures, rendered to uint8 arrays (the caller saves them with `outputs.save_png`).

`side_by_side` puts original | adversarial | amplified difference in one row, each captioned
(top-1 label and probability; the gain and the L-infinity distance under the difference).
`difference_image` maps a signed change of +-levels to the full grey range around mid-grey 128,
so an 8-level perturbation is visible. `curve_image` plots success rate and the share of images
that keep their original top-1 (robustness) against the budget.
"""

from __future__ import annotations

import numpy as np

from pipeline.heads.plots import pyplot

#: Mid-grey: what an unchanged pixel looks like in the difference image.
DIFFERENCE_ZERO = 128
#: Half the grey range the largest change is stretched to.
DIFFERENCE_HALF_RANGE = 127
#: Figure geometry: inches per panel (square) plus room for captions, and the dpi.
PANEL_INCHES = 2.6
CAPTION_INCHES = 0.75
DPI = 100
CAPTION_POINTS = 9
CURVE_INCHES = (5.6, 3.6)


def difference_gain(levels: int) -> float:
    """How much the difference image multiplies a change so that +-`levels` fills the grey range."""
    return DIFFERENCE_HALF_RANGE / max(1, int(levels))


def difference_image(original: np.ndarray, adversarial: np.ndarray, levels: int) -> np.ndarray:
    """uint8 (h, w, 3): 128 + gain * (adversarial - original), clipped to [0, 255]."""
    change = adversarial.astype(np.float64) - original.astype(np.float64)
    return np.clip(np.rint(DIFFERENCE_ZERO + difference_gain(levels) * change), 0, 255).astype(np.uint8)


def side_by_side(original: np.ndarray, adversarial: np.ndarray, levels: int,
                 captions: tuple[str, str, str], title: str = "") -> np.ndarray:
    """uint8 (H, W, 3): the three panels with `captions` (original, adversarial, difference) under them."""
    plt = pyplot()
    panels = (original, adversarial, difference_image(original, adversarial, levels))
    figure, axes = plt.subplots(1, 3, figsize=(3 * PANEL_INCHES, PANEL_INCHES + CAPTION_INCHES), dpi=DPI)
    for axis, panel, caption in zip(axes, panels, captions):
        axis.imshow(panel, interpolation="nearest")
        axis.set_xticks([])
        axis.set_yticks([])
        axis.set_xlabel(caption, fontsize=CAPTION_POINTS)
    if title:
        figure.suptitle(title, fontsize=CAPTION_POINTS + 1)
    figure.tight_layout(pad=0.4)
    return _render(figure)


def curve_image(levels: list[float], success_rates: list[float], kept_rates: list[float], title: str,
                success_label: str) -> np.ndarray:
    """uint8 (H, W, 3): success rate and original-top-1-kept rate against eps (in levels of 255)."""
    plt = pyplot()
    figure, axis = plt.subplots(figsize=CURVE_INCHES, dpi=DPI)
    axis.plot(levels, success_rates, marker="o", label=success_label, color="tab:red")
    axis.plot(levels, kept_rates, marker="s", label="original top-1 kept (robust accuracy)", color="tab:blue")
    for x, y in zip(levels, success_rates):
        axis.annotate(f"{y:.0%}", (x, y), textcoords="offset points", xytext=(0, 6), ha="center", fontsize=8)
    axis.set_xticks(levels)
    axis.set_xticklabels([f"{value:g}/255" for value in levels])
    axis.set_xlabel("L\u221e budget eps (pixel levels of 255)")
    axis.set_ylabel("fraction of images")
    axis.set_ylim(-0.03, 1.1)
    axis.grid(alpha=0.3)
    axis.legend(fontsize=8, loc="center right")
    axis.set_title(title, fontsize=10)
    figure.tight_layout()
    return _render(figure)


def _render(figure) -> np.ndarray:
    plt = pyplot()
    figure.canvas.draw()
    pixels = np.asarray(figure.canvas.buffer_rgba())[..., :3].copy()
    plt.close(figure)
    return pixels
