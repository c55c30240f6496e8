"""The Ray actor of `extract --engine ray`: one backbone per actor, one planned batch per call.

`BatchWorker` is the callable class Ray Data runs as a pool of actors (`Dataset.map_batches`).
Its `__init__` resolves the weights from the same sources a local run uses (`--weights`, the
cache directory) and builds the backbone once; if the tensors it loaded do not have the driver's
fingerprint, it refuses to start (`WorkerRefused`), so rows of other weights can never be mixed
into the cache. Each call receives planned batches (`pipeline.cache.slots.PlannedBatch`, as
JSON) and decodes, preprocesses and runs exactly the batch a local run computes, every image at
its slot, so the rows are bitwise a local run's. An image that does not decode comes back as a
failure row (its reason as data, zeros as features), never as an exception: one bad file must
not fail the job.

This module imports neither Ray nor TensorFlow at import time: the class is plain Python, and the
driver (`pipeline.extract.engines.ray_data`) hands it to Ray.
"""

from __future__ import annotations

import contextlib
import json
import os
import socket
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from pipeline.cache import slots
from pipeline.data.feeder import decoded_batches
from pipeline.data.images import ResizeSpec
from pipeline.data.views import ViewSpec

#: Start of every message a worker refuses to start with; the driver shows the rest to the user.
REFUSAL_MARK = "bottleneck worker refused: "
#: Columns of the rows a worker returns, one row per planned image.
ADDRESS, FEATURES, FAILURE = "address", "features", "failure"
#: The input column: one planned batch per row, as JSON.
PLAN = "plan"


class WorkerRefused(RuntimeError):
    """A worker that must not compute rows for this run (other weights, no access to the images)."""

    def __init__(self, message: str):
        super().__init__(REFUSAL_MARK + message)


@dataclass(frozen=True)
class WorkerSpec:
    """Everything an actor needs to compute the driver's rows: the feature settings and the expected fingerprint."""

    backbone: str
    layer: str
    input_size: int
    resize: ResizeSpec
    weights_request: str  # --weights as given: imagenet, none or a file path
    cache_dir: str  # where converted offline weights live (the same shared folder as the driver's, ideally)
    precision: str
    pooling: str
    store_dtype: str
    fingerprint: str
    data_root: str
    views: ViewSpec | None = None
    max_pixels: int | None = None
    decode_threads: int = 1


def encode_batch(batch: slots.PlannedBatch) -> str:
    """One planned batch as the JSON text of an input row."""
    return json.dumps({"size": batch.size, "entries": [[slot, sha, str(path)] for slot, sha, path in batch.entries]})


def decode_batch(text: str) -> slots.PlannedBatch:
    data = json.loads(text)
    return slots.PlannedBatch(data["size"], [(slot, sha, Path(path)) for slot, sha, path in data["entries"]])


def where() -> str:
    """This worker, for messages: host name and process id."""
    return f"{socket.gethostname()} (pid {os.getpid()})"


class BatchWorker:
    """Computes planned batches with a backbone built once (see the module doc)."""

    def __init__(self, spec: WorkerSpec):
        self.spec = spec
        if not Path(spec.data_root).is_dir():
            raise WorkerRefused(
                f"the worker on {where()} cannot see the dataset folder {spec.data_root}; every Ray worker must "
                "read the images at the same path as the driver (a shared filesystem mounted at the same place)")
        self.extractor = _build_extractor(spec)
        if self.extractor.fingerprint != spec.fingerprint:
            raise WorkerRefused(
                f"the worker on {where()} loaded weights with fingerprint {self.extractor.fingerprint[:16]}..., "
                f"not the driver's {spec.fingerprint[:16]}... (--weights {spec.weights_request}); give every node "
                "the same weights file (e.g. convert them once into a shared --cache-dir) and run again")

    def __call__(self, batch: dict) -> dict:
        addresses, features, failures = [], [], []
        for text in batch[PLAN]:
            planned = decode_batch(str(text))
            done, rows, failed = self.compute(planned)
            addresses += done + [address for address, _ in failed]
            features.append(rows)
            failures += [""] * len(done) + [reason for _, reason in failed]
            if failed:
                features.append(np.zeros((len(failed), *rows.shape[1:]), dtype=rows.dtype))
        return {ADDRESS: np.array(addresses, dtype=object), FEATURES: np.concatenate(features),
                FAILURE: np.array(failures, dtype=object)}

    def compute(self, planned: slots.PlannedBatch) -> tuple[list[str], np.ndarray, list[tuple[str, str]]]:
        """(addresses, rows in the store dtype, [(address, reason)] of images that did not decode) of one batch."""
        spec = self.spec
        items = [(sha, path) for _, sha, path in planned.entries]
        decoded = decoded_batches(items, spec.resize, len(items), spec.decode_threads, spec.max_pixels, spec.views)
        with contextlib.closing(decoded):
            (assembled,) = list(slots.slot_batches([planned], decoded, spec.resize))
        shape = self.extractor.feature_shape
        if not assembled.shas:
            return [], np.zeros((0, *shape), dtype=spec.store_dtype), assembled.failures
        rows = self.extractor(assembled.pixels)[assembled.slots].astype(spec.store_dtype)
        return assembled.shas, rows, assembled.failures


def _build_extractor(spec: WorkerSpec):
    from pipeline.backbones.registry import get_backbone
    from pipeline.backbones.weights import resolve_weights
    from pipeline.errors import PipelineError
    from pipeline.extract.setup import build_extractor

    backbone = get_backbone(spec.backbone)
    try:
        weights = resolve_weights(backbone, spec.weights_request, Path(spec.cache_dir), spec.input_size)
    except PipelineError as error:
        raise WorkerRefused(f"the worker on {where()} could not find the weights: {error}") from None
    return build_extractor(backbone, spec.layer, spec.input_size, weights, spec.precision, spec.pooling)
