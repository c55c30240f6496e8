"""The deployable model of a head, and the metadata that travels inside and beside it.

`build_deployable(head_path, cache_dir)` resolves the head's exact extraction (backbone, layer,
input size, verified weights: `pipeline.predict.extraction.load_head_extraction`, which refuses
heads fitted on imported npz features) and builds `pipeline.predict.image_model.head_image_model`
with one extra, named output: float32 RGB pixels (n, size, size, 3) in [0, 255] named `pixels` ->
(n, classes) probabilities named `probabilities`. Resizing is not in the graph: the caller brings
each photo to size x size with the head's resize policy, exactly as `predict` does
(`pipeline.data.images.decode_image`). Only built-in layers, so a `.keras` file loads in safe mode.

A late-fused head (`fit-head` on several caches, method late or single) becomes one graph with
every member backbone that carries weight: the same pixels feed each member's whole model, and the
weighted sum of their probabilities is the output - what `predict` computes for it
(`pipeline.predict.fused`). That needs one pixel tensor: members whose input size or resize policy
differ are refused, saying so.

Refused, with the reason, before anything is built: k-NN heads (a vote among stored neighbours is
not a graph), early-fused heads (a head on the concatenated features of several backbones: not
built as a graph yet; export each member), and heads on imported features.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from pipeline.cache.key import library_versions, now_iso
from pipeline.data.images import ResizeSpec
from pipeline.errors import HeadError
from pipeline.heads.fusion import EARLY
from pipeline.heads.graph import require_differentiable
from pipeline.heads.record import HeadRecord
from pipeline.heads.registry import FUSION_KIND
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


def refuse_unexportable(record: HeadRecord) -> None:
    """`HeadError` naming the reason when the head cannot be exported as one graph (see module doc)."""
    kind = record.kind
    if kind == FUSION_KIND:
        if record.hyperparameters["method"] == EARLY:
            members = ", ".join(Path(m.sidecar).name for m in record.members)
            raise HeadError(
                f"head {record.path} is an early-fused head (one head on the concatenated features of several "
                "backbones), which export does not build as a graph yet; export the member heads one by one "
                f"({members}), or fit the fused head with late fusion")
        return
    require_differentiable(kind, "export")


def build_deployable(head_path: Path, cache_dir: Path, exported_format: str) -> Deployable:
    """The model and metadata for the head at `head_path` (see module doc)."""
    from pipeline.backbones.tf_runtime import import_keras
    from pipeline.predict.extraction import load_head_extraction
    from pipeline.predict.image_model import head_image_model

    record = read_sidecar(head_path)
    refuse_unexportable(record)
    keras = import_keras()
    if record.kind == FUSION_KIND:
        members = [m for m in record.members if m.weight > 0]
        extractions = [load_head_extraction(Path(m.sidecar), Path(cache_dir)) for m in members]
        _require_one_pixel_tensor(record, extractions)
        inputs = keras.Input(shape=(extractions[0].spec.input_size,) * 2 + (3,), name="pixels", dtype="float32")
        weighted = [keras.layers.Rescaling(member.weight, name=f"member_{i}_weight")(
            head_image_model(extraction, name=f"member_{i}")(inputs))
            for i, (member, extraction) in enumerate(zip(members, extractions))]
        tensor = keras.layers.Add(name="late_fusion")(weighted) if len(weighted) > 1 else weighted[0]
        metadata = export_metadata(extractions[0], exported_format, record)
        metadata["members"] = [{"sidecar": str(Path(m.sidecar).resolve()), "weight": m.weight,
                                "feature_key": e.spec.key(), "backbone": e.spec.backbone,
                                "weights": {"fingerprint": e.spec.weights_fingerprint, "source": e.weights.describe()}}
                               for m, e in zip(members, extractions)]
        metadata["feature_key"] = "+".join(e.spec.key() for e in extractions)
        del metadata["feature_spec"], metadata["weights"]
    else:
        extraction = load_head_extraction(Path(head_path), Path(cache_dir))
        inner = head_image_model(extraction, name="head_model")
        inputs, tensor = inner.input, inner.output
        metadata = export_metadata(extraction, exported_format, record)
        extractions = [extraction]
    outputs = keras.layers.Identity(name=OUTPUT_NAME)(tensor)
    model = keras.Model(inputs, outputs, name="bottleneck_export")
    return Deployable(model, metadata, extractions[0].resize)


def _require_one_pixel_tensor(record: HeadRecord, extractions) -> None:
    resizes = {extraction.resize.describe() for extraction in extractions}
    if len(resizes) > 1:
        raise HeadError(
            f"head {record.path} fuses backbones that take photos resized differently "
            f"({', '.join(sorted(resizes))}), so no single pixel tensor can feed one exported model; export the "
            "member heads one by one and combine their probabilities with the weights in the fused head's "
            "sidecar (`members`)")


def head_precisions(record: HeadRecord) -> set[str]:
    """The compute precisions `predict` runs the head's backbones in (every member's, for a fused head)."""
    if record.kind == FUSION_KIND:
        return set().union(*(head_precisions(read_sidecar(Path(m.sidecar))) for m in record.members))
    return {record.feature_spec.precision}


def export_metadata(extraction, exported_format: str, record: HeadRecord) -> dict:
    """What an exported artifact records: classes, input contract, head, feature key, weights, versions."""
    spec = extraction.spec
    resize = extraction.resize
    return {
        "format": EXPORT_FORMAT,
        "format_version": EXPORT_FORMAT_VERSION,
        "artifact_format": exported_format,
        "class_names": list(record.class_names),
        "input": {
            "name": "pixels", "shape": [None, spec.input_size, spec.input_size, 3], "dtype": "float32",
            "uint8_accepted": exported_format in ("keras", "saved_model"),
            "channels": "RGB", "range": list(PIXEL_RANGE),
            "resize": {"policy": resize.policy, "filter": resize.filter, "height": resize.height,
                       "width": resize.width, "describe": resize.describe()},
            "preprocessing": f"{spec.preprocessing} (inside the model: pass raw pixels)",
        },
        "output": {"name": OUTPUT_NAME, "shape": [None, len(record.class_names)], "dtype": "float32"},
        "head": {"sidecar": str(Path(record.path).resolve()), "kind": record.kind,
                 "target": record.target or "label", "pooling": record.pooling or extraction.pooling},
        "feature_key": spec.key(),
        "feature_spec": spec.to_dict(),
        "weights": {"fingerprint": spec.weights_fingerprint, "source": extraction.weights.describe()},
        "versions": library_versions(),
        "exported": now_iso(),
    }
