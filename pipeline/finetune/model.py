"""The model `fine-tune` trains: layers k+1..n of the backbone, with its weights, then the head.

`build_backbone` builds the backbone exactly as extraction did (same family, same weights file,
float32 variables) and checks that its weights, cut at the head's layer, have the fingerprint the
head's cache recorded: the tuned layers start from the very weights the head's features came
from. `tuned_model` takes the layers after the boundary out of that same model (a Keras model
from the boundary's output to the head's layer: the same layer objects and weights, not copies),
then pools as the head's cache did (global average, or max for a `--pool max` cache) and ends in
the head's own layers (`pipeline.heads.graph.head_layers`: a linear head is one Dense softmax
with its standardisation folded in).

BatchNormalization layers among the tuned layers stay frozen, in inference mode (their
statistics and scale are the backbone's), as the fine-tuning recipes do; Dropout among them (the
drop-connect of EfficientNet-Lite blocks) trains as the network was trained. Training runs in
float32 whatever precision the boundary cache was extracted in.
"""

from __future__ import annotations

from dataclasses import dataclass

from pipeline.backbones.registry import BackboneSpec
from pipeline.backbones.tf_runtime import import_keras
from pipeline.backbones.weights import RANDOM_WEIGHTS_SEED, ResolvedWeights, fingerprint_model
from pipeline.errors import HeadError
from pipeline.finetune.cut import Cut
from pipeline.heads.graph import head_layers

#: Names given to the parts of the saved model.
INPUT_NAME, TUNED_NAME, POOL_NAME = "boundary_features", "tuned_layers", "tuned_pool"


@dataclass(frozen=True)
class TunedModel:
    """`model`: boundary maps -> probabilities; `backbone_variables` and `head_variables` split its trainables."""

    model: object
    base: object  # the whole backbone (its layers after the boundary are the tuned ones)
    backbone_variables: list
    head_variables: list


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


def tuned_model(base, cut: Cut, head, pooling: str) -> TunedModel:
    """The trainable model on boundary maps (see the module doc)."""
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
    for layer in head_layers(head):
        tensor = layer(tensor)
    model = keras.Model(inputs, tensor, name="fine_tuned")
    backbone = list(top.trainable_variables)
    ids = {id(variable) for variable in backbone}
    return TunedModel(model, base, backbone, [v for v in model.trainable_variables if id(v) not in ids])
