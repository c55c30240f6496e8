"""The classifier the explain commands differentiate: pixels [0, 255] -> class probabilities.

`load_classifier(head=...)` wraps a fitted head of ours (`pipeline.predict.image_model.head_image_model`:
the head's exact extraction, weights verified against its fingerprint; k-NN refused with the
reason); `load_classifier(imagenet=BACKBONE)` wraps a backbone's own 1000-class classifier. Both
give a `Classifier`: the Keras model, its class names, the input size and resize policy images
are brought to, a description of where it came from (recorded in every sidecar), and the folder
where results go by default: `<heads dir>/explain/` beside a head (so `report --html` shows them),
`<cache dir>/explain/imagenet-<backbone>/` for an ImageNet classifier.
"""

from __future__ import annotations

import difflib
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from pipeline.data.images import ResizeSpec
from pipeline.errors import UsageError

#: Folder (beside a head, or under the cache dir for ImageNet) that explain results go to.
EXPLAIN_SUBDIR = "explain"
#: Close matches suggested when a class name is unknown.
_SUGGESTIONS = 5


@dataclass(frozen=True)
class Classifier:
    """A differentiable image classifier (see the module doc). `model(pixels)` -> (n, classes) probabilities."""

    model: object
    class_names: list[str]
    input_size: int
    resize: ResizeSpec
    source: dict
    output_dir: Path
    name: str = field(default="classifier")

    def class_index(self, name: str) -> int:
        """The index of class `name`: exact, then case-insensitive, then one of a class's comma-separated
        synonyms (ImageNet's "tabby, tabby cat" answers to "tabby cat"); `UsageError` naming close matches."""
        if name in self.class_names:
            return self.class_names.index(name)
        lowered = [c.lower() for c in self.class_names]
        if name.lower() in lowered:
            return lowered.index(name.lower())
        synonyms = [i for i, c in enumerate(lowered) if name.lower().strip() in (s.strip() for s in c.split(","))]
        if len(synonyms) == 1:
            return synonyms[0]
        close = difflib.get_close_matches(name.lower(), lowered, n=_SUGGESTIONS, cutoff=0.5)
        hint = (f"; did you mean {', '.join(repr(self.class_names[lowered.index(c)]) for c in close)}?" if close
                else f"; its classes are {', '.join(self.class_names[:10])}"
                     + (f" ... ({len(self.class_names)} in all)" if len(self.class_names) > 10 else ""))
        raise UsageError(f"{self.name} has no class {name!r}{hint}")

    def probabilities(self, pixels: np.ndarray) -> np.ndarray:
        """(n, classes) float64 probabilities of float pixels (n, size, size, 3) in [0, 255]."""
        return np.asarray(self.model(np.asarray(pixels, dtype=np.float32), training=False), dtype=np.float64)


def load_classifier(head: Path | None = None, imagenet: str | None = None,
                    cache_dir: Path = Path("cache")) -> Classifier:
    """The classifier for a saved head (its sidecar's path) or a backbone's ImageNet classifier (exactly one)."""
    if (head is None) == (imagenet is None):
        raise UsageError("give either a head (the .json path `fit-head` printed) or --imagenet BACKBONE, not both")
    if head is not None:
        return _head_classifier(Path(head), Path(cache_dir))
    return _imagenet_classifier(imagenet, Path(cache_dir))


def _head_classifier(head_path: Path, cache_dir: Path) -> Classifier:
    from pipeline.predict.extraction import load_head_extraction
    from pipeline.predict.image_model import head_image_model

    extraction = load_head_extraction(head_path, cache_dir)
    record = extraction.record
    model = head_image_model(extraction)
    names = list(record.class_names)
    source = {"kind": "head", "head": str(head_path), "head_kind": record.kind,
              "target": record.target or "label", "feature_key": extraction.spec.key(),
              "backbone": extraction.spec.backbone, "layer": extraction.spec.layer,
              "weights": extraction.weights.describe(), "weights_fingerprint": extraction.spec.weights_fingerprint}
    return Classifier(model=model, class_names=names, input_size=extraction.spec.input_size,
                      resize=extraction.resize, source=source, output_dir=head_path.parent / EXPLAIN_SUBDIR,
                      name=f"head {head_path.name}")


def _imagenet_classifier(backbone: str, cache_dir: Path) -> Classifier:
    from pipeline.backbones.imagenet import imagenet_class_names
    from pipeline.backbones.registry import get_backbone
    from pipeline.backbones.weights import IMAGENET, resolve_weights
    from pipeline.predict.image_model import imagenet_image_model

    spec = get_backbone(backbone)
    size = spec.default_input_size
    weights = resolve_weights(spec, IMAGENET, cache_dir, size, with_classifier=True)
    model = imagenet_image_model(spec, weights)
    source = {"kind": "imagenet", "backbone": spec.name, "weights": weights.describe()}
    return Classifier(model=model, class_names=list(imagenet_class_names()), input_size=size,
                      resize=ResizeSpec(size, size, "stretch"), source=source,
                      output_dir=cache_dir / EXPLAIN_SUBDIR / f"imagenet-{spec.name}",
                      name=f"the {spec.name} ImageNet classifier")
