"""Ideal class images: gradient ascent on the input of a differentiable classifier.

`ideal_image(classifier, class_index, settings)` optimises an image (a `parameterization`) so
that the classifier's score for the class rises, while a total-variation penalty (and a small L2
pull towards grey) keeps it smooth:

    loss = -score(classifier(transform(image)))[class] + tv * TV(image) + l2 * L2(image)

`score` is the class's logit (`logit`: log p_c minus the mean log-probability, which is the
softmax's input up to the constant it ignores, so it keeps rising instead of saturating at
p = 1) or its log-probability (`logprob`). The transform is a fresh random shift and scale each
step (`transforms`). With `scales` > 1 the image is first optimised small and upsampled between
stages (each stage gets an equal share of the steps), which grows large structures first. The
classifier always sees its own input size: an image of another `size` is resized to it inside the
graph (bilinearly, so gradients flow), and the saved image is judged the same way `predict` would
judge it (resized by the classifier's resize policy).
"""

from __future__ import annotations

import contextlib
import logging
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass

import numpy as np

from pipeline.backbones.tf_runtime import import_keras, import_tensorflow
from pipeline.errors import UsageError
from pipeline.explain.optimizer import adam
from pipeline.explain.parameterization import PARAMETERIZATIONS, make_image
from pipeline.explain.regularizers import l2_penalty_tf, total_variation_tf
from pipeline.explain.transforms import Jitter, apply_transforms

logger = logging.getLogger(__name__)

OBJECTIVES = ("logit", "logprob")
#: Default number of gradient steps per image (about 2 minutes per image for VGG16 on 2 CPU cores).
DEFAULT_STEPS = 100
#: Default parameterisation: the Fourier one gave the most natural VGG16 images (docs/explain-visualize.md).
DEFAULT_PARAM = "fft"
#: Default total-variation weight by parameterisation (per unit of mean absolute neighbour difference, in
#: [0, 1] pixels): measured on VGG16, smaller weights left the pixel images as noisy as without the term; the
#: Fourier parameterisation is smooth by itself and needs less.
DEFAULT_TV = {"pixels": 150.0, "fft": 30.0}
#: Default L2 weight (per unit of mean squared distance from grey).
DEFAULT_L2 = 0.0
#: Default shift jitter, in pixels, and scale jitter (relative).
DEFAULT_JITTER = 8
DEFAULT_SCALE_JITTER = 0.1
#: Adam's step size by parameterisation: pixel units for `pixels`, spectrum units for `fft`.
DEFAULT_LEARNING_RATES = {"pixels": 2.0, "fft": 0.05}
#: Each multi-scale stage is this much larger than the one before.
OCTAVE_RATIO = 1.5
#: Smallest image side a multi-scale stage may start at.
MIN_STAGE_SIZE = 16
#: Floor under probabilities before their log (float32 probabilities underflow to 0).
PROBABILITY_FLOOR = 1e-37

#: progress(done_steps, total_steps)
Progress = Callable[[int, int], None]


@dataclass(frozen=True)
class VisualizeSettings:
    """Every setting an ideal image depends on (recorded in the sidecar).

    `size` None is the classifier's input size; `lr` and `tv` None are the parameterisation's defaults.
    """

    steps: int = DEFAULT_STEPS
    size: int | None = None
    lr: float | None = None
    tv: float | None = None
    l2: float = DEFAULT_L2
    jitter: int = DEFAULT_JITTER
    scale_jitter: float = DEFAULT_SCALE_JITTER
    scales: int = 1
    param: str = DEFAULT_PARAM
    objective: str = "logit"
    seed: int = 0

    def __post_init__(self):
        checks = [(self.steps >= 1, f"--steps must be at least 1, got {self.steps}"),
                  (self.size is None or self.size >= MIN_STAGE_SIZE,
                   f"--size must be at least {MIN_STAGE_SIZE} pixels, got {self.size}"),
                  (self.lr is None or self.lr > 0, f"--lr must be positive, got {self.lr}"),
                  (self.tv is None or self.tv >= 0, f"--tv must be 0 or more, got {self.tv}"),
                  (self.l2 >= 0, f"--l2 must be 0 or more, got {self.l2}"),
                  (self.scales >= 1, f"--scales must be at least 1, got {self.scales}"),
                  (self.param in PARAMETERIZATIONS,
                   f"--param {self.param!r} is not one of {', '.join(PARAMETERIZATIONS)}"),
                  (self.objective in OBJECTIVES,
                   f"--objective {self.objective!r} is not one of {', '.join(OBJECTIVES)}")]
        for ok, message in checks:
            if not ok:
                raise UsageError(message)
        Jitter(self.jitter, self.scale_jitter)

    @property
    def tv_weight(self) -> float:
        """`tv`, or the parameterisation's default."""
        return self.tv if self.tv is not None else DEFAULT_TV[self.param]

    @property
    def learning_rate(self) -> float:
        """`lr`, or the parameterisation's default."""
        return self.lr if self.lr is not None else DEFAULT_LEARNING_RATES[self.param]

    def to_dict(self) -> dict:
        """The settings as JSON values, with the learning rate actually used."""
        return {**asdict(self), "lr": self.learning_rate, "tv": self.tv_weight}


@dataclass(frozen=True)
class Optimised:
    """One optimised image: float pixels (size, size, 3) in [0, 255], the last step's score, seconds taken."""

    pixels: np.ndarray
    final_score: float
    seconds: float


def stage_sizes(size: int, scales: int) -> list[int]:
    """The image side of each multi-scale stage, smallest first, ending at `size`."""
    sizes = [max(MIN_STAGE_SIZE, round(size / OCTAVE_RATIO ** k)) for k in range(scales - 1, -1, -1)]
    return sizes


def stage_steps(steps: int, stages: int) -> list[int]:
    """`steps` split as evenly as possible over `stages` (later stages get the remainder)."""
    base, extra = divmod(steps, stages)
    return [base + (1 if k >= stages - extra else 0) for k in range(stages)]


def class_score(outputs, class_index: int, objective: str, logits: bool = False):
    """The per-image score (n,) that gradient ascent maximises (see the module doc).

    `outputs` are the logits (`logits=True`, inside `logits_output`) or probabilities, whose log
    is floored at `PROBABILITY_FLOOR`: there the score stops rising once the other classes'
    probabilities underflow float32, which is why the logits are used wherever they can be found.
    """
    tf = import_tensorflow()
    log_p = tf.nn.log_softmax(outputs, axis=1) if logits else tf.math.log(tf.maximum(outputs, PROBABILITY_FLOOR))
    if objective == "logprob":
        return log_p[:, class_index]
    return log_p[:, class_index] - tf.reduce_mean(log_p, axis=1)


@contextlib.contextmanager
def logits_output(model):
    """Make `model` output its final softmax's input (the logits) inside the block; restored after.

    Yields True when the model ends in a layer with a softmax activation (a head's Dense, an
    ImageNet classifier's `predictions`, nested models followed to their last layer), else False
    and the model is untouched (the score then works on floored probabilities).
    """
    keras = import_keras()
    layer = _final_softmax_layer(model)
    if layer is None:
        yield False
        return
    previous = layer.activation
    layer.activation = keras.activations.linear
    try:
        yield True
    finally:
        layer.activation = previous


def _final_softmax_layer(model):
    layer = model.layers[-1] if getattr(model, "layers", None) else None
    while getattr(layer, "layers", None):  # a nested model: its own last layer
        layer = layer.layers[-1]
    activation = getattr(layer, "activation", None)
    return layer if getattr(activation, "__name__", "") == "softmax" else None


def ideal_image(classifier, class_index: int, settings: VisualizeSettings, start: np.ndarray | None = None,
                tv: float | None = None, progress: Progress | None = None) -> Optimised:
    """Optimise one image for `class_index` (see the module doc); `tv` overrides `settings.tv`.

    `start` (size, size, 3) pixels replace the noise start; `progress(done, steps)` is called after
    every step. The same settings and seed give the same image.
    """
    tf = import_tensorflow()
    tv_weight = settings.tv_weight if tv is None else tv
    size = settings.size or classifier.input_size
    rng = np.random.default_rng(settings.seed)
    tf.random.set_seed(settings.seed)
    jitter = Jitter(settings.jitter, settings.scale_jitter)
    sizes = stage_sizes(size, settings.scales)
    started, done, score = time.perf_counter(), 0, float("nan")
    pixels = None if start is None else np.asarray(start, dtype=np.float64)
    with _quiet_tracing(), logits_output(classifier.model) as logits:
        for side, count in zip(sizes, stage_steps(settings.steps, len(sizes))):
            pixels, score = _run_stage(classifier, class_index, settings, tv_weight, logits, side, count, pixels,
                                       rng, jitter, lambda step, _count, o=done: progress and progress(o + step,
                                                                                                   settings.steps))
            done += count
            logger.info("stage %dpx: %d steps, score %.3f", side, count, score)
    return Optimised(pixels=pixels, final_score=score, seconds=time.perf_counter() - started)


def _run_stage(classifier, class_index: int, settings: VisualizeSettings, tv_weight: float, logits: bool, side: int,
               count: int, pixels: np.ndarray | None, rng: np.random.Generator, jitter: Jitter,
               progress: Progress) -> tuple[np.ndarray, float]:
    """`count` steps on a `side`-pixel image started from `pixels` (None: noise); its pixels and last score."""
    tf = import_tensorflow()
    image = make_image(settings.param, (side, side), rng, None if pixels is None else _resized(pixels, side))
    optimizer = adam(settings.learning_rate)
    gradients = _gradient_function(classifier, image, class_index, settings, tv_weight, logits)
    score = float("nan")
    for step in range(1, count + 1):
        dy, dx, factor = jitter.draw(rng)
        grads, score_tensor = gradients(tf.constant(dy), tf.constant(dx), factor)
        optimizer.apply_gradients(zip(grads, image.variables))
        image.after_step()
        score = float(score_tensor)
        progress(step, count)
    return image.pixels(), score


@contextlib.contextmanager
def _quiet_tracing():
    """Hide TensorFlow's retracing warnings: one trace per scale choice is by design (`_gradient_function`)."""
    tf_logger = logging.getLogger("tensorflow")
    previous = tf_logger.level
    tf_logger.setLevel(logging.ERROR)
    try:
        yield
    finally:
        tf_logger.setLevel(previous)


def _gradient_function(classifier, image, class_index: int, settings: VisualizeSettings, tv_weight: float,
                       logits: bool):
    """A compiled step: (shift down, shift right, scale factor) -> (gradients of the loss, the score).

    The shifts are tensors; each scale factor (one of `transforms.SCALE_CHOICES`) changes the
    shapes inside, so it gets its own compiled function, traced once on first use. The traced graph
    runs about a third faster than eager execution.
    """
    tf = import_tensorflow()
    compiled = {}

    def gradients(dy, dx, factor):
        with tf.GradientTape() as tape:
            rendered = image.render()
            seen = apply_transforms(rendered, (dy, dx, factor), classifier.input_size)
            score = class_score(classifier.model(seen, training=False), class_index, settings.objective, logits)[0]
            loss = -score + tv_weight * total_variation_tf(rendered)[0] + settings.l2 * l2_penalty_tf(rendered)[0]
        return tape.gradient(loss, image.variables), score

    def run(dy, dx, factor):
        if factor not in compiled:
            compiled[factor] = tf.function(lambda y, x: gradients(y, x, factor), autograph=False)
        return compiled[factor](dy, dx)

    return run


def _resized(pixels: np.ndarray, side: int) -> np.ndarray:
    """Float pixels (h, w, 3) resized bilinearly to (side, side, 3)."""
    if pixels.shape[:2] == (side, side):
        return pixels
    tf = import_tensorflow()
    return np.asarray(tf.image.resize(pixels[None].astype(np.float32), [side, side])[0], dtype=np.float64)
