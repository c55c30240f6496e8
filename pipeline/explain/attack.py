"""Projected gradient descent (PGD) with an L-infinity budget, in pixel space [0, 255].

The contract:
- Pixels are the classifier's input: (n, size, size, 3), originals as uint8. The classifier's
  model maps float32 pixels in [0, 255] to probabilities with the backbone's preprocessing inside
  the graph, so the gradient is taken with respect to the raw pixels a user would save.
- A budget `eps` is in pixel levels of the 0..255 range (`parse_eps`: "8/255" is a fraction of
  the range, 8 levels; a plain number is levels). The float iterate is projected onto
  [x - eps, x + eps] and onto [0, 255] after every step.
- What is judged is never the float iterate: every step the iterate is rounded onto the integer
  grid inside the budget (`quantize`: round, then clip to x +- floor(eps) and [0, 255]), so the
  uint8 image the caller saves is within the budget exactly, and the probabilities and gradient of
  that step are those of the rounded candidate. One forward + backward pass per image and step.
- Targeted: descend the cross-entropy of the target class; success when the target is top-1.
  Untargeted (`targets=None`): ascend the cross-entropy of the original top-1; success when the
  top-1 changes. With early stopping an image leaves the batch at the first rounded candidate that
  succeeds (`steps_used` counts the gradient steps taken before it); without, it runs every step.
- Random start (optional, seeded) draws the first iterate uniformly inside the budget.

Madry et al. 2018, "Towards Deep Learning Models Resistant to Adversarial Attacks", is the method;
the default step size 2.5 * eps / steps is theirs.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from fractions import Fraction

import numpy as np

from pipeline.errors import UsageError

#: The pixel range attacks work in.
PIXEL_MAX = 255
#: The default L-infinity budget, as the user writes it: 8 levels of 255.
DEFAULT_EPS = "8/255"
#: Gradient steps per image by default (each is one forward + backward pass).
DEFAULT_STEPS = 10
#: Default step size = STEP_FACTOR * eps / steps (Madry et al.): enough to reach the budget's edge and move along it.
STEP_FACTOR = 2.5
#: Added to a probability before its logarithm, so a saturated softmax still gives a finite loss.
PROBABILITY_FLOOR = 1e-30
#: Floating-point slack when the integer part of a budget is taken (8/255 * 255 is 8, not 7.999...).
_LEVEL_SLACK = 1e-9


@dataclass(frozen=True)
class Budget:
    """An L-infinity budget: `levels` of the 0..255 pixel range (float), and the text it was given as."""

    levels: float
    text: str

    @property
    def fraction(self) -> float:
        """The budget as a fraction of the pixel range (8 levels -> 0.0314)."""
        return self.levels / PIXEL_MAX

    @property
    def integer_levels(self) -> int:
        """The largest change a uint8 pixel can take within the budget (floor of `levels`)."""
        return math.floor(self.levels + _LEVEL_SLACK)

    @property
    def label(self) -> str:
        """Short text for file names and tables: "8" for 8 levels, "2.5" for 2.5."""
        return f"{self.levels:g}"

    def describe(self) -> str:
        """E.g. "8/255 (8 pixel levels)"."""
        return f"{self.levels:g}/255 ({self.levels:g} pixel levels)"


def parse_levels(text: str, what: str = "step") -> Budget:
    """Pixel levels from "A/B" (a fraction of the 255 range: "8/255" -> 8) or a plain number of levels.

    `UsageError` for text that is not a number or fraction, and for values outside (0, 255].
    """
    raw = str(text).strip()
    try:
        parts = [Fraction(part.strip()) for part in raw.split("/")]
        if len(parts) > 2:
            raise ValueError(raw)
        levels = parts[0] / parts[1] * PIXEL_MAX if len(parts) == 2 else parts[0]
    except (ValueError, ZeroDivisionError):
        raise UsageError(f"{what} {raw!r} is not a number: write a fraction of the pixel range such as 8/255, "
                         "or a number of pixel levels such as 8") from None
    value = float(levels)
    if value <= 0:
        raise UsageError(f"{what} {raw!r} is {value:g} pixel levels; it must be above 0")
    if value > PIXEL_MAX:
        raise UsageError(f"{what} {raw!r} is {value:g} pixel levels, more than the whole 0..255 range; "
                         f"use at most {PIXEL_MAX} (255/255)")
    return Budget(levels=value, text=raw)


def parse_eps(text: str, what: str = "eps") -> Budget:
    """An L-infinity budget (`parse_levels`) of at least one pixel level: a uint8 image cannot change by less."""
    budget = parse_levels(text, what)
    if budget.levels < 1 - _LEVEL_SLACK:
        raw, value = budget.text, budget.levels
        hint = (f"; if you meant {value:g} of the pixel range, that is {value * PIXEL_MAX:g} levels: write "
                f"{value * PIXEL_MAX:g} or {value * PIXEL_MAX:g}/255" if "/" not in raw else "")
        raise UsageError(f"{what} {raw!r} is {value:g} pixel levels, less than one, so a uint8 image could not "
                         f"change at all{hint}")
    return budget


@dataclass(frozen=True)
class PGDSettings:
    """How to attack: budget and step in pixel levels, steps, early stopping, seeded random start."""

    eps: float
    step: float
    steps: int
    early_stop: bool = True
    random_start: bool = False
    seed: int = 0

    def __post_init__(self):
        if self.eps < 1 - _LEVEL_SLACK or self.eps > PIXEL_MAX:
            raise UsageError(f"eps must be between 1 and {PIXEL_MAX} pixel levels, got {self.eps:g}")
        if not self.step > 0:
            raise UsageError(f"step must be positive, got {self.step:g}")
        if self.steps < 1:
            raise UsageError(f"steps must be at least 1, got {self.steps}")


def default_step(eps: float, steps: int) -> float:
    """The default step size in pixel levels: `STEP_FACTOR` * eps / steps."""
    return STEP_FACTOR * eps / steps


@dataclass(frozen=True)
class PGDOutcome:
    """Per image: the final rounded candidate (uint8), probabilities before/after, steps used, goal reached."""

    adversarial: np.ndarray
    probabilities_before: np.ndarray
    probabilities_after: np.ndarray
    steps_used: np.ndarray
    reached: np.ndarray
    goal_classes: np.ndarray


def project(pixels: np.ndarray, original: np.ndarray, eps: float) -> np.ndarray:
    """Float pixels clipped into [original - eps, original + eps] and into [0, 255]."""
    base = original.astype(np.float64)
    return np.clip(np.clip(pixels, base - eps, base + eps), 0, PIXEL_MAX)


def quantize(pixels: np.ndarray, original: np.ndarray, eps: float) -> np.ndarray:
    """Float pixels rounded onto the uint8 grid inside the budget: |result - original| <= floor(eps) exactly."""
    levels = math.floor(eps + _LEVEL_SLACK)
    base = original.astype(np.int32)
    rounded = np.rint(np.asarray(pixels, dtype=np.float64)).astype(np.int32)
    return np.clip(np.clip(rounded, base - levels, base + levels), 0, PIXEL_MAX).astype(np.uint8)


def goal_reached(probabilities: np.ndarray, goal_classes: np.ndarray, targeted: bool) -> np.ndarray:
    """Targeted: top-1 is the goal class; untargeted: top-1 is no longer the goal (original) class."""
    top1 = np.argmax(probabilities, axis=1)
    return top1 == goal_classes if targeted else top1 != goal_classes


def cross_entropy_gradient(model, pixels: np.ndarray, classes: np.ndarray | None) -> tuple[np.ndarray, np.ndarray]:
    """(probabilities (n, C), d[-log p(class)] / d pixels (n, h, w, 3)) at float32 `pixels`.

    `classes` None means each image's own top-1 class at these pixels.
    """
    from pipeline.backbones.tf_runtime import import_tensorflow

    tf = import_tensorflow()
    inputs = tf.convert_to_tensor(np.asarray(pixels, dtype=np.float32))
    with tf.GradientTape() as tape:
        tape.watch(inputs)
        probabilities = model(inputs, training=False)
        chosen = (tf.argmax(probabilities, axis=1, output_type=tf.int32) if classes is None
                  else tf.constant(np.asarray(classes), dtype=tf.int32))
        picked = tf.gather(probabilities, chosen, batch_dims=1)
        loss = -tf.math.log(picked + PROBABILITY_FLOOR)
    gradient = tape.gradient(loss, inputs)
    return np.asarray(probabilities, dtype=np.float64), np.asarray(gradient, dtype=np.float64)


def probabilities_of(model, pixels: np.ndarray) -> np.ndarray:
    """(n, C) float64 probabilities of pixels (any dtype, values in [0, 255])."""
    return np.asarray(model(np.asarray(pixels, dtype=np.float32), training=False), dtype=np.float64)


def pgd_attack(model, original: np.ndarray, targets: np.ndarray | None, settings: PGDSettings,
               progress: Callable[[int, int], None] | None = None) -> PGDOutcome:
    """Attack a batch of uint8 images (see the module doc); `targets` (n,) class indices, or None (untargeted).

    `progress(done, total)` is called in image-steps (total = n * steps); images that stop early
    count their remaining steps as done.
    """
    original = np.asarray(original)
    if original.dtype != np.uint8 or original.ndim != 4:
        raise ValueError(f"original must be uint8 (n, h, w, 3), got {original.dtype} {original.shape}")
    n, eps = len(original), settings.eps
    targeted = targets is not None
    iterate = original.astype(np.float64)
    before = None
    if settings.random_start:
        rng = np.random.default_rng(settings.seed)
        iterate = project(iterate + rng.uniform(-eps, eps, iterate.shape), original, eps)
        before = probabilities_of(model, original)
    goal = np.asarray(targets, dtype=np.int64) if targeted else (None if before is None else before.argmax(axis=1))

    adversarial, after = original.copy(), None
    steps_used, reached = np.zeros(n, dtype=np.int64), np.zeros(n, dtype=bool)
    finished = np.zeros(n, dtype=bool)
    active = np.arange(n)
    direction = -1.0 if targeted else 1.0  # descend the target's loss, or ascend the original class's
    for step in range(settings.steps + 1):
        candidate = quantize(iterate[active], original[active], eps)
        if step == settings.steps:  # the last candidate is only judged: no gradient needed
            probabilities, gradient = probabilities_of(model, candidate), None
        else:
            probabilities, gradient = cross_entropy_gradient(model, candidate, None if goal is None else goal[active])
        if before is None:  # step 0 without a random start: the candidate is the original
            before = probabilities.copy()
        if goal is None:
            goal = before.argmax(axis=1)
        if after is None:
            after = np.zeros_like(before)
        adversarial[active], after[active], steps_used[active] = candidate, probabilities, step
        success = goal_reached(probabilities, goal[active], targeted)
        reached[active] = success
        if step == settings.steps:
            break
        stop = success if settings.early_stop else np.zeros(len(active), dtype=bool)
        finished[active[stop]] = True
        if progress is not None:
            progress(int(np.where(finished, settings.steps, steps_used).sum()), n * settings.steps)
        active, gradient = active[~stop], gradient[~stop]
        if not len(active):
            break
        iterate[active] = project(iterate[active] + direction * settings.step * np.sign(gradient),
                                  original[active], eps)
    if progress is not None:
        progress(n * settings.steps, n * settings.steps)
    return PGDOutcome(adversarial=adversarial, probabilities_before=before, probabilities_after=after,
                      steps_used=steps_used, reached=reached, goal_classes=goal)
