"""A fitted head as a Keras graph: cached features in, class probabilities out.

`head_model(head, feature_shape)` takes features shaped as the cache stores them - (h, w, c)
maps, average-pooled first as every head is fitted, or (c,) vectors - and ends in the head's own
layers (`keras_layers()`: a linear head is one Dense softmax with its standardisation and
temperature folded in; gap-dense and mlp are their trained layers). The graph computes what
`predict_proba` computes, within float32 rounding, and is differentiable end to end, which is
what attacks, class visualisations, fine-tuning and export build on. A head whose decision is
not a differentiable function of its input (k-NN) is refused with the reason. A fine-tuned model
(`consumes_maps`) takes the boundary layer's full maps, so nothing pools them before it.
"""

from __future__ import annotations

from pipeline.backbones.tf_runtime import import_keras
from pipeline.cache.rows import HEAD_POOLINGS
from pipeline.errors import HeadError
from pipeline.heads.features import DEFAULT_HEAD_POOLING
from pipeline.heads.registry import saved_kind_entry


def require_differentiable(kind: str, purpose: str) -> None:
    """`HeadError` when heads of `kind` cannot be expressed as a differentiable graph."""
    if not saved_kind_entry(kind).differentiable:
        usable = ", ".join(k for k, e in _heads().items() if e.differentiable)
        raise HeadError(f"{purpose} needs a head that is a differentiable function of the image, but a {kind} head "
                        f"decides by a vote among stored neighbours, which has no gradient; fit one of {usable} "
                        "on the same cache and use it instead")


def head_layers(head) -> list:
    """The head's layers on pooled features (see the module doc)."""
    require_differentiable(head.kind, "building the head as a Keras graph")
    return head.keras_layers()


def head_model(head, feature_shape: tuple[int, ...], pooling: str = DEFAULT_HEAD_POOLING, name: str = "head"):
    """A Keras model: features shaped `feature_shape` -> (n, classes) probabilities."""
    keras = import_keras()

    inputs = keras.Input(shape=tuple(feature_shape), name="features")
    tensor = inputs if consumes_maps(head) else head_pool(inputs, pooling)
    for layer in head_layers(head):
        tensor = layer(tensor)
    return keras.Model(inputs, tensor, name=name)


def head_pool(tensor, pooling: str):
    """Spatial maps (n, h, w, c) pooled as a head was fitted (`HEAD_POOLINGS`); vectors pass through."""
    keras = import_keras()

    if len(tensor.shape) != 4:
        return tensor
    average = keras.layers.GlobalAveragePooling2D(name="head_avg_pool")
    maximum = keras.layers.GlobalMaxPooling2D(name="head_max_pool")
    if pooling == "avg":
        return average(tensor)
    if pooling == "max":
        return maximum(tensor)
    if pooling == "avgmax":
        return keras.layers.Concatenate(name="head_avgmax_pool")([average(tensor), maximum(tensor)])
    raise HeadError(f"unknown head pooling {pooling!r}; expected one of: {', '.join(HEAD_POOLINGS)}")


def consumes_maps(head) -> bool:
    """True for heads that take (h, w, c) maps as they are (fine-tuned models), False for pooled-feature heads."""
    return getattr(head, "consumes_maps", False)


def _heads():
    from pipeline.heads.registry import HEADS

    return HEADS
