"""One writer and one metadata reader per export format; nothing here needs Keras to be read back
except the `.keras` file itself.

Where the metadata document (`artifact.export_metadata`, JSON) lives inside each artifact:
- `.keras`: a zip member `bottleneck_export.json` beside Keras' own `config.json`, `metadata.json`
  and `model.weights.h5` (Keras reads only its own members, so loading is unaffected);
- SavedModel: `assets.extra/bottleneck_export.json` and `assets.extra/labels.txt` (the SavedModel
  folder for files that travel with the model but are not loaded by the graph), and the signatures
  `serve` = `serving_default` (float32 pixels) and `serve_uint8` (uint8 pixels, cast in the graph);
- `.tflite`: a flatbuffer metadata entry named `bottleneck_export` (the model's `metadata` table,
  read with `tensorflow.lite.tools.flatbuffer_utils` or any flatbuffer reader);
- `.onnx`: the model's `metadata_props`, key `bottleneck_export` (onnxruntime:
  `session.get_modelmeta().custom_metadata_map`).

Writers write to the path they are given; the caller (`pipeline.export.run`) gives them a temporary
path and renames it into place only after verification.
"""

from __future__ import annotations

import json
import tempfile
import zipfile
from pathlib import Path

import numpy as np

from pipeline.backbones.tf_runtime import import_tensorflow
from pipeline.errors import PipelineError, UsageError
from pipeline.export.artifact import FORMATS, OUTPUT_NAME, Deployable

#: Name of the metadata document in every artifact (zip member, assets.extra file, tflite/onnx key).
METADATA_NAME = "bottleneck_export"
METADATA_FILE = f"{METADATA_NAME}.json"
#: SavedModel folder for extra files (TensorFlow Serving's convention; not loaded by the graph).
SAVED_MODEL_EXTRA = "assets.extra"
#: SavedModel signatures: float32 pixels, and uint8 pixels cast to float32 inside the graph.
SIGNATURE_FLOAT = "serve"
SIGNATURE_UINT8 = "serve_uint8"
#: ONNX opset: supported by tf2onnx 1.17 and every onnxruntime since 1.12.
ONNX_OPSET = 17
#: File name ending of each format (a SavedModel is a folder, named as given).
SUFFIXES = {"keras": ".keras", "saved_model": "", "tflite": ".tflite", "onnx": ".onnx"}
ONNX_INSTALL_HINT = "pip install 'bottleneck-pipeline[onnx]' (tf2onnx, onnxruntime)"


def artifact_path(out: Path, fmt: str) -> Path:
    """Where `fmt` is written for OUT: OUT with the format's suffix added when it has none."""
    if fmt not in FORMATS:
        raise UsageError(f"unknown export format {fmt!r}; expected one of: {', '.join(FORMATS)}")
    out, suffix = Path(out), SUFFIXES[fmt]
    known = {s for s in SUFFIXES.values() if s}
    if out.suffix in known and out.suffix != suffix:
        raise UsageError(f"{out} ends in {out.suffix} but --format {fmt} writes "
                         f"{'a SavedModel folder' if not suffix else suffix + ' files'}; "
                         f"name the output {out.with_suffix(suffix)} or pick the format that matches")
    return out if not suffix or out.suffix == suffix else out.with_name(out.name + suffix)


def labels_path_of(path: Path) -> Path:
    """The labels and provenance file written beside an artifact: `<artifact name>.json`."""
    return Path(path).with_name(Path(path).name + ".json")


def metadata_text(deployable: Deployable) -> str:
    return json.dumps(deployable.metadata, indent=1)


def write_keras(deployable: Deployable, path: Path) -> None:
    deployable.model.save(path)
    with zipfile.ZipFile(path, "a") as archive:
        archive.writestr(METADATA_FILE, metadata_text(deployable))


def write_saved_model(deployable: Deployable, folder: Path) -> None:
    """A SavedModel with `serve` (float32) and `serve_uint8` signatures, and the metadata in assets.extra."""
    _saved_model(deployable.model, folder, with_uint8=True)
    extra = Path(folder) / SAVED_MODEL_EXTRA
    extra.mkdir(exist_ok=True)
    (extra / METADATA_FILE).write_text(metadata_text(deployable))
    (extra / "labels.txt").write_text("".join(f"{name}\n" for name in deployable.class_names))


def _saved_model(model, folder: Path, with_uint8: bool) -> None:
    """`tf.saved_model.save` of a `tf.Module` holding the model's raw variables and the signatures.

    Not `keras.export.ExportArchive`: on the TensorFlow backend it stores every weight twice (the Keras
    wrappers and the raw variables the traced function captures; keras-team/keras#23553), which doubles
    a VGG16 SavedModel to 118 MB. Tracking only the raw variables stores each once.
    """
    tf = import_tensorflow()

    shape = (None, *model.input.shape[1:])
    module = tf.Module()
    module.model_variables = [variable.value for variable in model.variables]
    module.serve = tf.function(lambda pixels: {OUTPUT_NAME: model(pixels, training=False)},
                               input_signature=[tf.TensorSpec(shape, tf.float32, name="pixels")])
    serve = module.serve.get_concrete_function()
    signatures = {"serving_default": serve, SIGNATURE_FLOAT: serve}
    if with_uint8:
        module.serve_uint8 = tf.function(
            lambda pixels: {OUTPUT_NAME: model(tf.cast(pixels, tf.float32), training=False)},
            input_signature=[tf.TensorSpec(shape, tf.uint8, name="pixels")])
        signatures[SIGNATURE_UINT8] = module.serve_uint8.get_concrete_function()
    tf.saved_model.save(module, str(folder), signatures=signatures)


def write_tflite(deployable: Deployable, path: Path) -> None:
    """A float32 TFLite flatbuffer (no quantisation), converted from a SavedModel of the model."""
    tf = import_tensorflow()

    with tempfile.TemporaryDirectory(prefix="bottleneck-tflite-") as scratch:
        saved = Path(scratch) / "saved_model"
        _saved_model(deployable.model, saved, with_uint8=False)
        converter = tf.lite.TFLiteConverter.from_saved_model(str(saved), signature_keys=[SIGNATURE_FLOAT])
        flatbuffer = converter.convert()
    Path(path).write_bytes(_with_tflite_metadata(flatbuffer, metadata_text(deployable)))


def _with_tflite_metadata(flatbuffer: bytes, text: str) -> bytes:
    import_tensorflow()
    from tensorflow.lite.python import schema_py_generated as schema
    from tensorflow.lite.tools import flatbuffer_utils

    model = flatbuffer_utils.convert_bytearray_to_object(bytearray(flatbuffer))
    buffer = schema.BufferT()
    buffer.data = np.frombuffer(text.encode("utf-8"), dtype=np.uint8)
    model.buffers.append(buffer)
    entry = schema.MetadataT()
    entry.name = METADATA_NAME
    entry.buffer = len(model.buffers) - 1
    model.metadata = list(model.metadata or []) + [entry]
    return bytes(flatbuffer_utils.convert_object_to_bytearray(model))


def write_onnx(deployable: Deployable, path: Path) -> None:
    """ONNX (opset `ONNX_OPSET`) through tf2onnx; the `onnx` extra must be installed."""
    tf = import_tensorflow()

    try:
        import onnx
        import tf2onnx
    except ImportError as error:
        raise PipelineError(f"--format onnx needs tf2onnx and onnx ({error}); {ONNX_INSTALL_HINT}") from error
    model = deployable.model
    signature = (tf.TensorSpec((None, *model.input.shape[1:]), tf.float32, name="pixels"),)
    proto, _ = tf2onnx.convert.from_keras(model, input_signature=signature, opset=ONNX_OPSET)
    outputs = [output.name for output in proto.graph.output]
    if outputs != [OUTPUT_NAME]:  # tf2onnx names outputs after the last layer; make it the documented name
        _rename_output(proto, outputs[0], OUTPUT_NAME)
    onnx.helper.set_model_props(proto, {METADATA_NAME: metadata_text(deployable)})
    Path(path).write_bytes(proto.SerializeToString())


def _rename_output(proto, old: str, new: str) -> None:
    for node in proto.graph.node:
        node.output[:] = [new if name == old else name for name in node.output]
    for output in proto.graph.output:
        if output.name == old:
            output.name = new


WRITERS = {"keras": write_keras, "saved_model": write_saved_model, "tflite": write_tflite, "onnx": write_onnx}


def read_metadata(path: Path, fmt: str) -> dict:
    """The metadata document inside an exported artifact (see module doc)."""
    path = Path(path)
    if fmt == "keras":
        with zipfile.ZipFile(path) as archive:
            return json.loads(archive.read(METADATA_FILE))
    if fmt == "saved_model":
        return json.loads((path / SAVED_MODEL_EXTRA / METADATA_FILE).read_text())
    if fmt == "tflite":
        import_tensorflow()
        from tensorflow.lite.tools import flatbuffer_utils

        model = flatbuffer_utils.read_model(str(path))
        for entry in model.metadata or []:
            name = entry.name.decode() if isinstance(entry.name, bytes) else entry.name
            if name == METADATA_NAME:
                return json.loads(bytes(model.buffers[entry.buffer].data).decode("utf-8"))
        raise PipelineError(f"{path} has no {METADATA_NAME} metadata entry; it was not written by `export`")
    if fmt == "onnx":
        import onnx

        props = {p.key: p.value for p in onnx.load(str(path), load_external_data=False).metadata_props}
        return json.loads(props[METADATA_NAME])
    raise UsageError(f"unknown export format {fmt!r}; expected one of: {', '.join(FORMATS)}")
