"""Verification: the written artifact, loaded with its own runtime, must predict what `predict` predicts.

Sample photos (given, or up to `DEFAULT_SAMPLES` of the head's cache's test images still on disk,
then valid, then train) are decoded exactly as `predict` decodes them (`decode_image` with the
head's resize policy: uint8 RGB at the input size). `predict`'s full probability rows are the
reference. Each artifact is loaded the way a user would load it - `.keras` with
`keras.saving.load_model(safe_mode=True)`, a SavedModel with `tf.saved_model.load` (both the
float32 and the uint8 signature are run), `.tflite` with `tf.lite.Interpreter`, `.onnx` with
`onnxruntime.InferenceSession` - and run on the same pixels. The largest absolute difference of
any probability is measured and reported; above the tolerance the export is refused.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from pipeline.backbones.tf_runtime import import_tensorflow, quiet_native_stderr
from pipeline.errors import HeadError, PipelineError
from pipeline.export.artifact import OUTPUT_NAME
from pipeline.export.formats import ONNX_INSTALL_HINT, SIGNATURE_FLOAT, SIGNATURE_UINT8, read_metadata
from pipeline.heads.record import HeadRecord
from pipeline.predict.images import decoded_batches

#: Largest absolute probability difference accepted between the artifact and `predict` by default, for
#: a head of a float32 cache (the exported graphs measured at most about 1e-6 on the real photos).
DEFAULT_TOLERANCE = 1e-4
#: The default for a head of a bfloat16 or float16 cache: `predict` runs the backbone in that precision,
#: the exported model in float32, so they differ by that precision's rounding (bfloat16 keeps 8
#: significant bits). Measured with bfloat16 (docs/export.md): 1.9e-3 for a confident VGG16 catsdogs
#: head, up to 0.034 for the quickstart's head and an EfficientNet-Lite0 oxford-pets-mini head, whose
#: probabilities sit where rounding moves them most.
REDUCED_PRECISION_TOLERANCE = 5e-2
#: Sample images taken from the head's cache when none are given.
DEFAULT_SAMPLES = 16
#: Images per forward pass while verifying.
VERIFY_BATCH_SIZE = 8
_SPLITS_TRIED = ("test", "valid", "train")
#: The SavedModel's uint8 and float32 signatures run one graph on equal values: they must agree to rounding.
SIGNATURES_AGREE = 1e-6


class ExportRefused(HeadError):
    """The artifact's predictions differ from `predict`'s by more than the tolerance; nothing was written."""


@dataclass(frozen=True)
class Verification:
    """What verification measured: images compared, the largest difference and where, the tolerance."""

    images: tuple[str, ...]
    max_abs_diff: float
    worst_image: str
    tolerance: float
    top1_agree: int
    sample_source: str

    @property
    def passed(self) -> bool:
        return self.max_abs_diff <= self.tolerance

    def to_dict(self) -> dict:
        return {"images": len(self.images), "max_abs_diff": self.max_abs_diff, "worst_image": self.worst_image,
                "tolerance": self.tolerance, "top1_agree": self.top1_agree, "passed": self.passed,
                "sample_source": self.sample_source}


def default_tolerance(precision: str) -> float:
    """The tolerance used when none is given, for a head whose cache was computed in `precision`."""
    return DEFAULT_TOLERANCE if precision == "float32" else REDUCED_PRECISION_TOLERANCE


def sample_images(record: HeadRecord, given, limit: int = DEFAULT_SAMPLES) -> tuple[list[Path], str]:
    """The photos to verify on, and where they came from; `HeadError` when there are none."""
    if given:
        return [Path(p) for p in given], "given"
    recorded = record.cache_path or next(
        (m.cache for m in record.members if m.cache), "")  # a fused head: its first member's
    cache_path = Path(recorded)
    if cache_path.is_file():
        from pipeline.cache.format import read_cache_info

        info = read_cache_info(cache_path)
        for split in _SPLITS_TRIED:
            paths = [info.data_root / info.images.relpath[i] for i in info.images.in_split(split)]
            paths = sorted(p for p in paths if p.is_file())
            if paths:
                picks = np.unique(np.linspace(0, len(paths) - 1, min(limit, len(paths))).round().astype(int))
                return [paths[i] for i in picks], f"{len(picks)} {split} images of {cache_path.name}"
    raise HeadError(f"no sample images to verify the export with: the images of head {record.path}'s cache are "
                    "not on disk here; pass some photos with --images")


def reference_probabilities(paths: list[Path], head_path: Path, cache_dir: Path,
                            class_names: list[str]) -> tuple[list[Path], np.ndarray]:
    """`predict`'s full probability rows for the decodable `paths` (class order), and those paths.

    The plain view (`predict --no-tta`): the artifact is the plain model (`pipeline.export.run`).
    """
    from pipeline.predict.with_head import predict_images

    results = predict_images(paths, head_path, cache_dir, top_k=len(class_names), tta=False)
    kept, rows = [], []
    for result in results:
        if "error" in result:
            continue
        row = np.zeros(len(class_names))
        for prediction in result["predictions"]:
            row[class_names.index(prediction["label"])] = prediction["probability"]
        kept.append(Path(result["path"]))
        rows.append(row)
    return kept, np.stack(rows)


def artifact_probabilities(path: Path, fmt: str, paths: list[Path], resize) -> np.ndarray:
    """The artifact's probabilities (float64) for `paths`, decoded as `predict` decodes them."""
    runner = RUNNERS[fmt](Path(path))
    rows = [runner(pixels) for _decoded, pixels in decoded_batches(paths, resize, [], VERIFY_BATCH_SIZE)]
    return np.concatenate(rows).astype(np.float64)


def verify_artifact(path: Path, fmt: str, paths: list[Path], expected: np.ndarray, resize, class_names: list[str],
                    tolerance: float, sample_source: str) -> Verification:
    """Compare the artifact at `path` with `predict`'s `expected` rows (see module doc)."""
    inside = read_metadata(path, fmt)
    if inside.get("class_names") != list(class_names):
        raise PipelineError(f"the metadata inside {path} does not list the head's classes; this is a bug in export")
    got = artifact_probabilities(path, fmt, paths, resize)
    if got.shape != expected.shape:
        raise PipelineError(f"the exported model returned shape {got.shape}, expected {expected.shape}; "
                            "this is a bug in export")
    differences = np.abs(got - expected).max(axis=1)
    worst = int(np.argmax(differences))
    return Verification(tuple(map(str, paths)), float(differences[worst]), str(paths[worst]), tolerance,
                        int(np.sum(got.argmax(axis=1) == expected.argmax(axis=1))), sample_source)


def _keras_runner(path: Path):
    from pipeline.backbones.tf_runtime import import_keras

    model = import_keras().saving.load_model(path, safe_mode=True, compile=False)
    return lambda pixels: np.asarray(model.predict(pixels, verbose=0))  # uint8 as given: the model casts


def _saved_model_runner(path: Path):
    tf = import_tensorflow()

    loaded = tf.saved_model.load(str(path))
    as_float, as_uint8 = loaded.signatures[SIGNATURE_FLOAT], loaded.signatures[SIGNATURE_UINT8]

    def run(pixels):
        from_uint8 = as_uint8(pixels=tf.constant(pixels))[OUTPUT_NAME].numpy()
        from_float = as_float(pixels=tf.constant(pixels.astype(np.float32)))[OUTPUT_NAME].numpy()
        if np.abs(from_uint8 - from_float).max() > SIGNATURES_AGREE:
            raise PipelineError(f"{path}: the uint8 and float32 signatures disagree; this is a bug in export")
        return from_uint8
    return run


def _tflite_runner(path: Path):
    tf = import_tensorflow()

    with warnings.catch_warnings():  # "tf.lite.Interpreter is deprecated" (LiteRT's ai_edge_litert replaces it)
        warnings.simplefilter("ignore", UserWarning)
        interpreter = tf.lite.Interpreter(model_path=str(path))
    runner = interpreter.get_signature_runner()

    def run(pixels):
        with quiet_native_stderr():  # the first run announces "Created TensorFlow Lite XNNPACK delegate for CPU."
            return runner(pixels=pixels.astype(np.float32))[OUTPUT_NAME]
    return run


def _onnx_runner(path: Path):
    try:
        import onnxruntime
    except ImportError as error:
        raise PipelineError(f"verifying an .onnx export needs onnxruntime ({error}); {ONNX_INSTALL_HINT}") from error
    session = onnxruntime.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    return lambda pixels: session.run([OUTPUT_NAME], {"pixels": pixels.astype(np.float32)})[0]


RUNNERS = {"keras": _keras_runner, "saved_model": _saved_model_runner, "tflite": _tflite_runner,
           "onnx": _onnx_runner}
