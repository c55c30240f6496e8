"""ImageNet's own predictions: a backbone with its 1000-class classifier, top-k labels for photos.

Class names come from `imagenet_classes.json` next to this module (Keras' class-index order; index
i is the i-th of the 1000 ILSVRC-2012 classes). Keras downloads `imagenet_class_index.json` at
run time, which fails offline, so the tool ships its own list: taken from the npm package
`@tensorflow-models/mobilenet@2.1.1` (Apache-2.0), file `dist/imagenet_classes.js` (sha256
2b077246aef6959d0714d3a454aac148aa71581236ba3233c839ca50307cee1b), parsed as text. "crane"
appears twice (134, the bird; 517, the machine), as in ImageNet itself.

`ImageNetClassifier` runs uint8 pixels through the backbone's own `preprocess_input` and the
whole network with its classifier, in one compiled function, and returns softmax probabilities.
Its weights come from `resolve_weights(..., with_classifier=True)`: offline for MobileNet v1 and
EfficientNet-Lite0, from the Keras cache or download for the other families.
"""

from __future__ import annotations

import json
from functools import cache
from pathlib import Path

import numpy as np

from pipeline.backbones.models import dtype_policy, preprocess_function
from pipeline.backbones.registry import BackboneSpec
from pipeline.backbones.tf_runtime import import_tensorflow
from pipeline.backbones.weights import ResolvedWeights

CLASS_NAMES_FILE = Path(__file__).with_name("imagenet_classes.json")
IMAGENET_CLASS_COUNT = 1000


@cache
def imagenet_class_names() -> tuple[str, ...]:
    """The 1000 ImageNet class names, in Keras' class-index order."""
    names = tuple(json.loads(CLASS_NAMES_FILE.read_text(encoding="utf-8")))
    if len(names) != IMAGENET_CLASS_COUNT:
        raise RuntimeError(f"{CLASS_NAMES_FILE} lists {len(names)} classes, not {IMAGENET_CLASS_COUNT}; "
                           "the installation is damaged: reinstall the package")
    return names


class ImageNetClassifier:
    """`spec` with its ImageNet classifier: (n, size, size, 3) uint8 -> (n, 1000) float32 probabilities."""

    def __init__(self, spec: BackboneSpec, weights: ResolvedWeights, precision: str = "float32"):
        tf = import_tensorflow()
        self.spec, self.weights = spec, weights
        self.input_size = spec.default_input_size
        with dtype_policy(precision):
            model = spec.build(include_top=True, weights=weights.path, input_size=self.input_size,
                               classifier_activation="softmax")
        preprocess = preprocess_function(spec)

        def forward(pixels):
            return tf.cast(model(preprocess(tf.cast(pixels, tf.float32)), training=False), tf.float32)

        signature = [tf.TensorSpec((None, self.input_size, self.input_size, 3), tf.uint8)]
        self._forward = tf.function(forward, input_signature=signature)

    def __call__(self, pixels: np.ndarray) -> np.ndarray:
        return self._forward(pixels).numpy()


def top_k(probabilities: np.ndarray, k: int) -> list[dict]:
    """The `k` most probable classes of one row: [{"class_id", "label", "probability"}], best first."""
    names = imagenet_class_names()
    best = np.argsort(-probabilities)[:k]
    return [{"class_id": int(i), "label": names[i], "probability": float(probabilities[i])} for i in best]
