"""Whole models from pixels to probabilities, as plain Keras graphs.

`head_image_model(extraction)` chains everything a fitted head's predictions depend on:
float pixels in [0, 255] at the head's input size -> the backbone's preprocessing (built-in layers,
`pipeline.backbones.preprocessing`) -> the backbone cut at the cached layer, with the head's
verified weights -> the pooling extraction applied -> rounding to the cache's store dtype -> the head's
pooling -> the head's own layers (`pipeline.heads.graph`; for a fine-tuned model: its tuned layers and head, on
the boundary layer's maps). `imagenet_image_model(spec, weights)` is the same
for a backbone's own 1000-class classifier. Both are differentiable in the pixels (attacks,
class visualisations), trainable in their top layers (fine-tuning) and exportable as they are:
no Lambda layers, so they load in Keras safe mode. The resize to the input size happens before
the model, exactly as in `predict` (`pipeline.data.images`).

The backbone runs in float32 here, whatever precision the cache was extracted in: gradients
through bfloat16 are too coarse for attacks and visualisation, and the difference to the cached
features is within that precision's rounding (the cache key still names the precision used).
"""

from __future__ import annotations

from pipeline.backbones.preprocessing import apply_layers, preprocessing_layers
from pipeline.backbones.registry import BackboneSpec
from pipeline.backbones.tf_runtime import import_keras
from pipeline.backbones.weights import RANDOM_WEIGHTS_SEED, ResolvedWeights, fingerprint_model
from pipeline.heads.graph import consumes_maps, head_layers, head_pool
from pipeline.predict.extraction import HeadExtraction, require_head_weights

#: Name of the input every image model takes: float32 RGB pixels in [0, 255].
PIXELS_INPUT = "pixels"


def backbone_features(spec: BackboneSpec, layer: str, input_size: int, weights: ResolvedWeights):
    """The backbone cut at `layer` as a frozen Keras model (float32), and its weights fingerprint."""
    from pipeline.backbones.models import build_feature_model

    keras = import_keras()
    if weights.is_random:
        keras.utils.set_random_seed(RANDOM_WEIGHTS_SEED)
    model = build_feature_model(spec, layer, input_size, weights.path, "float32")
    return model, fingerprint_model(model)


def head_image_model(extraction: HeadExtraction, name: str = "image_classifier"):
    """pixels (n, size, size, 3) float32 in [0, 255] -> the head's class probabilities (see module doc)."""
    keras = import_keras()

    spec = extraction.spec
    backbone, fingerprint = backbone_features(extraction.backbone, spec.layer, spec.input_size, extraction.weights)
    require_head_weights(extraction, fingerprint)
    inputs = keras.Input(shape=(spec.input_size, spec.input_size, 3), name=PIXELS_INPUT, dtype="float32")
    tensor = backbone(apply_layers(preprocessing_layers(extraction.backbone.preprocessing), inputs), training=False)
    if spec.pooling == "avg":
        tensor = keras.layers.GlobalAveragePooling2D(name="extract_pool")(tensor)
    elif spec.pooling == "max":
        tensor = keras.layers.GlobalMaxPooling2D(name="extract_pool")(tensor)
    if spec.store_dtype != "float32":  # the cache rounded every feature to its store dtype
        tensor = keras.layers.Identity(dtype=spec.store_dtype, name="store_rounding")(tensor)
        tensor = keras.layers.Identity(dtype="float32", name="store_float32")(tensor)
    if not consumes_maps(extraction.head):
        tensor = head_pool(tensor, extraction.pooling)
    for layer in head_layers(extraction.head):
        tensor = layer(tensor)
    return keras.Model(inputs, tensor, name=name)


def imagenet_image_model(spec: BackboneSpec, weights: ResolvedWeights, name: str = "imagenet_classifier"):
    """pixels (n, size, size, 3) float32 in [0, 255] -> ImageNet's 1000 class probabilities."""
    keras = import_keras()

    size = spec.default_input_size
    classifier = spec.build(include_top=True, weights=weights.path, input_size=size, classifier_activation="softmax")
    classifier.trainable = False
    inputs = keras.Input(shape=(size, size, 3), name=PIXELS_INPUT, dtype="float32")
    outputs = classifier(apply_layers(preprocessing_layers(spec.preprocessing), inputs), training=False)
    return keras.Model(inputs, outputs, name=name)
