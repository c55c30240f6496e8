"""The deployable model of a head, and the metadata that travels inside and beside it.

`build_deployable(head_path, cache_dir)` resolves the head's exact extraction (backbone, layer,
input size, verified weights: `pipeline.predict.with_head.load_head_extraction`, which refuses
heads fitted on imported npz features) and builds `pipeline.predict.image_model.head_image_model`
with one extra, named output: float32 RGB pixels (n, size, size, 3) in [0, 255] named `pixels` ->
(n, classes) probabilities named `probabilities`. Resizing is not in the graph: the caller brings
each photo to size x size with the head's resize policy, exactly as `predict` does
(`pipeline.data.images.decode_image`). Only built-in layers, so a `.keras` file loads in safe mode.

Refused, with the reason, before anything is built: k-NN heads (a vote among stored neighbours is
not a graph), fused heads (several backbones, each fed photos resized its own way, so one pixel
tensor cannot feed them all; export each member) and heads on imported features.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from pipeline.cache.key import library_versions, now_iso
from pipeline.data.images import ResizeSpec
from pipeline.errors import HeadError
from pipeline.heads.fusion import FUSION_KIND
from pipeline.heads.graph import require_differentiable
from pipeline.heads.store import read_sidecar

#: Identifies the metadata document inside and beside every exported artifact.
EXPORT_FORMAT = "bottleneck-export"
EXPORT_FORMAT_VERSION = 1
#: The formats `export` writes.
FORMATS = ("keras", "saved_model", "tflite", "onnx")
#: Name of the output every exported model has: (n, classes) float32 class probabilities.
OUTPUT_NAME = "probabilities"
#: Pixel values the model expects (RGB, not rescaled: the model applies the backbone's preprocessing).
PIXEL_RANGE = (0, 255)


@dataclass(frozen=True)
class Deployable:
    """A head's whole model (Keras, pixels -> probabilities) and its metadata document."""

    model: object
    metadata: dict
    resize: ResizeSpec

    @property
    def class_names(self) -> list[str]:
        return list(self.metadata["class_names"])


def refuse_unexportable(sidecar: dict) -> None:
    """`HeadError` naming the reason when the head cannot be exported as one graph (see module doc)."""
    kind = sidecar.get("kind")
    if kind == FUSION_KIND:
        members = ", ".join(Path(m["sidecar"]).name for m in sidecar.get("members", []))
        raise HeadError(
            f"head {sidecar['_path']} is a fused head over several backbones, each of which is fed photos "
            "resized to its own input size and policy, so no single pixel tensor can feed one exported model; "
            f"export the member heads one by one ({members}) and combine their probabilities as the fused head "
            "does (its sidecar's `members` weights)")
    require_differentiable(kind, "export")


def build_deployable(head_path: Path, cache_dir: Path, exported_format: str) -> Deployable:
    """The model and metadata for the head at `head_path` (see module doc)."""
    from pipeline.backbones.tf_runtime import import_keras
    from pipeline.predict.image_model import head_image_model
    from pipeline.predict.with_head import load_head_extraction

    refuse_unexportable(read_sidecar(head_path))
    extraction = load_head_extraction(Path(head_path), Path(cache_dir))
    keras = import_keras()
    inner = head_image_model(extraction, name="bottleneck_export")
    outputs = keras.layers.Identity(name=OUTPUT_NAME)(inner.output)
    model = keras.Model(inner.input, outputs, name="bottleneck_export")
    return Deployable(model, export_metadata(extraction, exported_format), extraction.resize)


def export_metadata(extraction, exported_format: str) -> dict:
    """What an exported artifact records: classes, input contract, head, feature key, weights, versions."""
    sidecar, spec = extraction.sidecar, extraction.spec
    resize = extraction.resize
    return {
        "format": EXPORT_FORMAT,
        "format_version": EXPORT_FORMAT_VERSION,
        "artifact_format": exported_format,
        "class_names": list(sidecar["class_names"]),
        "input": {
            "name": "pixels", "shape": [None, spec.input_size, spec.input_size, 3], "dtype": "float32",
            "uint8_accepted": exported_format in ("keras", "saved_model"),
            "channels": "RGB", "range": list(PIXEL_RANGE),
            "resize": {"policy": resize.policy, "filter": resize.filter, "height": resize.height,
                       "width": resize.width, "describe": resize.describe()},
            "preprocessing": f"{spec.preprocessing} (inside the model: pass raw pixels)",
        },
        "output": {"name": OUTPUT_NAME, "shape": [None, len(sidecar["class_names"])], "dtype": "float32"},
        "head": {"sidecar": str(Path(sidecar["_path"]).resolve()), "kind": sidecar.get("kind"),
                 "target": sidecar.get("target", "label"), "pooling": extraction.pooling},
        "feature_key": spec.key(),
        "feature_spec": spec.to_dict(),
        "weights": {"fingerprint": spec.weights_fingerprint, "source": extraction.weights.describe()},
        "versions": library_versions(),
        "exported": now_iso(),
    }
