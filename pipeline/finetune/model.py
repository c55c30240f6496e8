"""The model `fine-tune` trains: layers k+1..n of the backbone, with its weights, then the head.

`build_backbone` builds the backbone exactly as extraction did (same family, same weights file,
float32 variables) and checks that its weights, cut at the head's layer, have the fingerprint the
head's cache recorded: the tuned layers start from the very weights the head's features came
from. `tuned_model` takes the layers after the boundary out of that same model (a Keras model
from the boundary's output to the head's layer: the same layer objects and weights, not copies),
then pools as the head's cache did (global average, or max for a `--pool max` cache) and ends in
the head's own layers (`pipeline.heads.graph.head_layers`: a linear head is one Dense softmax
with its standardisation folded in).

The model is trained on the objective of the head it starts from. A cross-entropy head (logreg,
gap-dense, mlp) keeps the cross-entropy of its probabilities. A one-vs-rest squared-hinge SVM keeps
its own objective (`SquaredHinge`: the squared hinge of its scores plus its L2 penalty at its C,
per training image), for the cross-entropy of its temperature-scaled softmax has nothing to learn
from: the SVM separates its training images by a margin, and with the temperature fitted on
validation their probabilities are saturated (training losses of 1e-4 and below, printed as
0.0000; exactly 0 once validation is perfect and the temperature at its floor), so training can
only sharpen them, while the hinge still sees every training image within its margin. Its last
layer is then split into the scores (`logits`: scores over the temperature) and a softmax, so the
saved model still gives the same probabilities.

BatchNormalization layers among the tuned layers stay frozen, in inference mode (their
statistics and scale are the backbone's), as the fine-tuning recipes do; Dropout among them (the
drop-connect of EfficientNet-Lite blocks) trains as the network was trained. Training runs in
float32 whatever precision the boundary cache was extracted in.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from pipeline.backbones.registry import BackboneSpec
from pipeline.backbones.tf_runtime import import_keras, import_tensorflow
from pipeline.backbones.weights import RANDOM_WEIGHTS_SEED, ResolvedWeights, fingerprint_model
from pipeline.errors import HeadError
from pipeline.finetune.cut import Cut
from pipeline.heads.graph import head_layers

#: Names given to the parts of the saved model.
INPUT_NAME, TUNED_NAME, POOL_NAME, SOFTMAX_NAME = "boundary_features", "tuned_layers", "tuned_pool", "head_softmax"
#: The training objectives, by what the head was fitted with.
CROSS_ENTROPY, SQUARED_HINGE = "cross-entropy", "squared hinge + L2 penalty (the SVM's own objective)"


@dataclass(frozen=True)
class SquaredHinge:
    """A one-vs-rest squared-hinge SVM's objective (`pipeline.heads.kinds.svm_solver`) divided by C and by
    the n training images: mean_i sum_k max(0, 1 - t_ik s_ik)^2 + ||W||^2 / (2 C n), t_ik = +1 for the true
    class else -1, s = temperature * logits its scores, W = kernel * weight_scale[:, None] its weights on
    standardised features (the intercept is not penalised)."""

    temperature: float
    weight_scale: np.ndarray  # (features,): standardiser scale x temperature
    penalty: float  # 1 / (2 C n)

    def loss_function(self):
        """loss(labels, logits, kernel) -> the objective, in TensorFlow ops (TensorFlow resolved here, before
        any tracing)."""
        tf = import_tensorflow()
        weight_scale = tf.constant(self.weight_scale[:, None], dtype=tf.float32)

        def loss(labels, logits, kernel):
            scores = logits * self.temperature
            signs = 2.0 * tf.one_hot(labels, tf.shape(scores)[-1], dtype=scores.dtype) - 1.0
            hinge = tf.reduce_mean(tf.reduce_sum(tf.square(tf.nn.relu(1.0 - signs * scores)), axis=-1))
            return hinge + self.penalty * tf.reduce_sum(tf.square(kernel * weight_scale))

        return loss


@dataclass(frozen=True)
class TunedModel:
    """`model`: boundary maps -> probabilities; `backbone_variables` and `head_variables` split its trainables.
    With an SVM head, `logits` (maps -> scores over the temperature, the same layers) and `hinge` (its
    objective, on `kernel`, the head's weights) are what training minimises; else both are None."""

    model: object
    base: object  # the whole backbone (its layers after the boundary are the tuned ones)
    backbone_variables: list
    head_variables: list
    logits: object = None
    hinge: SquaredHinge | None = None
    kernel: object = None

    @property
    def objective(self) -> str:
        return CROSS_ENTROPY if self.hinge is None else SQUARED_HINGE


def build_backbone(spec: BackboneSpec, weights: ResolvedWeights, input_size: int):
    """The backbone without its classifier, float32, with `weights` (seeded random for --weights none)."""
    keras = import_keras()

    if weights.is_random:
        keras.utils.set_random_seed(RANDOM_WEIGHTS_SEED)
    return spec.build(include_top=False, weights=weights.path, input_size=input_size)


def cut_fingerprint(base, layer: str) -> str:
    """The weights fingerprint of `base` cut at `layer`, as a cache of that layer records it."""
    keras = import_keras()

    return fingerprint_model(keras.Model(base.inputs, base.get_layer(layer).output))


def check_start_weights(base, layer: str, expected: str, head_name: str) -> None:
    """`HeadError` unless `base` cut at `layer` has the fingerprint the head's features were computed with."""
    if cut_fingerprint(base, layer) != expected:
        raise HeadError(f"the backbone weights available here differ from the ones head {head_name} was fitted with "
                        "(their fingerprints differ); use the same weights source (see `weights`)")


def tuned_model(base, cut: Cut, head, pooling: str, train_images: int = 1) -> TunedModel:
    """The trainable model on boundary maps (see the module doc); `train_images` scales an SVM's penalty."""
    keras = import_keras()

    top = keras.Model(base.get_layer(cut.boundary).output, base.get_layer(cut.top).output, name=TUNED_NAME)
    for layer in top.layers:
        if isinstance(layer, keras.layers.BatchNormalization):
            layer.trainable = False
    inputs = keras.Input(shape=tuple(base.get_layer(cut.boundary).output.shape[1:]), name=INPUT_NAME)
    tensor = top(inputs)
    if len(tensor.shape) == 4:
        pool = keras.layers.GlobalMaxPooling2D if pooling == "max" else keras.layers.GlobalAveragePooling2D
        tensor = pool(name=POOL_NAME)(tensor)
    layers = head_layers(head)
    hinge = _squared_hinge(head, train_images)
    if hinge is not None:
        layers[-1] = _scores_layer(layers[-1])
    for layer in layers:
        tensor = layer(tensor)
    logits = None
    if hinge is not None:
        logits = keras.Model(inputs, tensor, name="fine_tuned_scores")
        tensor = keras.layers.Softmax(name=SOFTMAX_NAME)(tensor)
    model = keras.Model(inputs, tensor, name="fine_tuned")
    backbone = list(top.trainable_variables)
    ids = {id(variable) for variable in backbone}
    return TunedModel(model, base, backbone, [v for v in model.trainable_variables if id(v) not in ids], logits,
                      hinge, layers[-1].kernel if hinge is not None else None)


def _squared_hinge(head, train_images: int) -> SquaredHinge | None:
    """The SVM objective of a squared-hinge head (`objective` == "squared-hinge"), else None."""
    if getattr(head, "objective", None) != "squared-hinge":
        return None
    temperature = float(head.temperature_)
    scale = np.asarray(head.scaler_.scale, dtype=np.float64) * temperature
    return SquaredHinge(temperature, scale.astype(np.float32), 1.0 / (2.0 * head.params_["C"] * max(1, train_images)))


def _scores_layer(dense):
    """A linear Dense with the weights of the head's Dense(softmax): its logits, the softmax split off."""
    keras = import_keras()

    linear = keras.layers.Dense(dense.units, name=dense.name, dtype="float32")
    linear.build((None, dense.kernel.shape[0]))
    linear.set_weights(dense.get_weights())
    return linear
