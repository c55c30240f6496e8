"""Per-epoch checkpoints: an interrupted `fine-tune` continues from its last completed epoch.

After every epoch the whole training state - the model's variables (trainable and not: the
dropout seed states too), both optimizers' variables, the best-validation weights so far, and the
history - is written as one `.npz` file (arrays only, loaded with `allow_pickle=False`; the
history travels as UTF-8 JSON bytes) through `pipeline.atomic`, so a checkpoint is either the
previous epoch's or this one's, never half of each. It lives in a hidden folder of the heads
folder named after the run's identity (`run_key`: the head, the boundary cache's key, the cut and
every training setting), so the same command resumes and a different one starts afresh; the
folder is removed once the fine-tuned model is saved.
"""

from __future__ import annotations

import hashlib
import json
import shutil
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from pipeline.atomic import atomic_write_path
from pipeline.errors import HeadError

CHECKPOINT_FORMAT = "bottleneck-fine-tune-checkpoint"
CHECKPOINT_VERSION = 1
CHECKPOINT_FILE = "state.npz"
_FOLDER_PREFIX = ".fine-tune-"
_KEY_SHOWN = 16


@dataclass
class TrainingState:
    """Everything an epoch boundary needs to continue bit for bit."""

    epoch: int  # last completed epoch (0: only the starting model was scored)
    history: list[dict]
    best_epoch: int
    best_loss: float
    stale: int  # epochs since the best one
    model_values: list[np.ndarray]
    best_values: list[np.ndarray]
    optimizer_values: list[list[np.ndarray]]


def run_key(identity: dict) -> str:
    """sha256 of a run's identity document."""
    return hashlib.sha256(json.dumps(identity, sort_keys=True, default=str).encode()).hexdigest()


def checkpoint_dir(heads_dir: Path, key: str) -> Path:
    return Path(heads_dir) / f"{_FOLDER_PREFIX}{key[:_KEY_SHOWN]}"


def save_state(folder: Path, key: str, state: TrainingState) -> Path:
    """Write `state` atomically as `<folder>/state.npz`."""
    meta = {"format": CHECKPOINT_FORMAT, "version": CHECKPOINT_VERSION, "run_key": key, "epoch": state.epoch,
            "history": state.history, "best_epoch": state.best_epoch, "best_loss": state.best_loss,
            "stale": state.stale, "model": len(state.model_values), "best": len(state.best_values),
            "optimizers": [len(values) for values in state.optimizer_values]}
    arrays = {"meta": np.frombuffer(json.dumps(meta).encode(), dtype=np.uint8)}
    arrays.update({f"model_{i}": value for i, value in enumerate(state.model_values)})
    arrays.update({f"best_{i}": value for i, value in enumerate(state.best_values)})
    for k, values in enumerate(state.optimizer_values):
        arrays.update({f"optimizer{k}_{i}": value for i, value in enumerate(values)})
    path = Path(folder) / CHECKPOINT_FILE
    with atomic_write_path(path) as temp:
        np.savez(temp, **arrays)
    return path


def load_state(folder: Path, key: str) -> TrainingState | None:
    """The checkpoint of run `key` in `folder`, or None when there is none."""
    path = Path(folder) / CHECKPOINT_FILE
    if not path.is_file():
        return None
    try:
        with np.load(path, allow_pickle=False) as arrays:
            meta = json.loads(arrays["meta"].tobytes().decode())
            if meta.get("format") != CHECKPOINT_FORMAT or meta.get("run_key") != key:
                return None
            return TrainingState(
                epoch=meta["epoch"], history=meta["history"], best_epoch=meta["best_epoch"],
                best_loss=meta["best_loss"], stale=meta["stale"],
                model_values=[arrays[f"model_{i}"] for i in range(meta["model"])],
                best_values=[arrays[f"best_{i}"] for i in range(meta["best"])],
                optimizer_values=[[arrays[f"optimizer{k}_{i}"] for i in range(count)]
                                  for k, count in enumerate(meta["optimizers"])])
    except (OSError, KeyError, ValueError) as error:
        raise HeadError(f"the fine-tuning checkpoint {path} cannot be read ({error}); delete {folder} to start "
                        "the run afresh") from error


def remove_checkpoints(folder: Path) -> None:
    """Delete a finished run's checkpoint folder."""
    shutil.rmtree(folder, ignore_errors=True)
