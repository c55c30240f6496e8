"""What every head shares: the interface, feature standardisation and softmax.

A head follows scikit-learn's conventions: `__init__` stores arguments only; `fit(features)`
returns self and sets fitted attributes ending in `_`:

- `params_`: the chosen hyper-parameters (JSON-able);
- `search_`: one dict per candidate tried on the validation split (JSON-able, may be empty);
- `valid_probabilities_`: validation-split probabilities from the model that was *selected*
  on validation (trained without it), or None when there is no validation split - these give
  honest validation metrics even when the final model is refit on train + validation;
- `selected_model_` (heads refit on train + validation only, `params_["refit_on"]` says so): that
  selected model, a head of the same kind trained without validation, so that other rows of the
  validation images (their augmented views, `pipeline.heads.tta`) are scored as honestly. Not
  saved: a loaded head lacks it. `validation_model(head)` returns it, or the head itself.

`predict_proba(x)` maps pooled features (n, channels) to class probabilities (n, classes).
`keras_layers()` (differentiable heads only, see `HeadEntry.differentiable`) returns Keras layers
that compute the same probabilities from pooled features inside a Keras graph.
`save(stem)` writes the model next to `stem` (never with pickle) and returns the file name;
`load(stem, record)` restores it from that file and the head's `pipeline.heads.record.HeadRecord`
(`model_file`, `hyperparameters`).

`Head` states this interface as a `typing.Protocol` for every saved kind with a model (a
fine-tuned model is saved and loaded but not fitted by `fit-head`); `FittableHead` adds `fit`, and
`DifferentiableHead` adds `keras_layers`. `tests/test_head_contract.py` checks every registry kind.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Protocol, runtime_checkable

import numpy as np

from pipeline.errors import HeadError
from pipeline.heads.diagnosis import require_trainable


@runtime_checkable
class Head(Protocol):
    """A saved head: its kind, chosen hyper-parameters, probabilities, and its model file written and read."""

    kind: str
    params_: dict

    def predict_proba(self, x: np.ndarray) -> np.ndarray:
        """(n, classes) probabilities of (n, channels) pooled features (boundary maps for a fine-tuned model)."""
        ...

    def save(self, stem: Path) -> str:
        """Write the model next to `stem` (never with pickle); return the file name."""
        ...

    @classmethod
    def load(cls, stem: Path, record) -> Head:
        """The head saved next to `stem`, described by its `HeadRecord`."""
        ...


@runtime_checkable
class FittableHead(Head, Protocol):
    """A head `fit-head` fits: `fit(features)` returns self with the fitted attributes of the module doc."""

    search_: list
    valid_probabilities_: np.ndarray | None

    def fit(self, features) -> FittableHead:
        ...


@runtime_checkable
class DifferentiableHead(Head, Protocol):
    """A head that is a Keras graph on pooled features (`HeadEntry.differentiable`)."""

    def keras_layers(self) -> list:
        ...


#: Channels whose training standard deviation is below this are left unscaled (dead ReLUs).
MIN_SCALE = 1e-6


@dataclass(frozen=True)
class Standardizer:
    """Per-channel mean and scale learnt on training features."""

    mean: np.ndarray
    scale: np.ndarray

    @classmethod
    def fit(cls, x: np.ndarray) -> Standardizer:
        mean = x.mean(axis=0, dtype=np.float64)
        std = x.std(axis=0, dtype=np.float64)
        return cls(mean.astype(np.float32), np.where(std < MIN_SCALE, 1.0, std).astype(np.float32))

    def transform(self, x: np.ndarray) -> np.ndarray:
        return ((x - self.mean) / self.scale).astype(np.float32)


def single_threaded_blas():
    """Run the enclosed NumPy/SciPy maths with one BLAS thread.

    The linear heads do many small matrix products; OpenBLAS' worker threads spin-wait between
    them, and whenever the cores are shared (other processes, a laptop) that turns seconds into
    minutes: the SVM search on 148 x 512 features took 54 s with two threads on a busy 2-core
    machine and 0.9 s with one. On the 6,680 x 512 x 133-class benchmark one thread costs little.
    """
    from threadpoolctl import threadpool_limits

    return threadpool_limits(limits=1, user_api="blas")


def softmax(scores: np.ndarray) -> np.ndarray:
    """Row-wise softmax, stable for large scores."""
    shifted = scores - scores.max(axis=1, keepdims=True)
    exp = np.exp(shifted)
    return exp / exp.sum(axis=1, keepdims=True)


#: What `params_["refit_on"]` says of a head whose final model also learnt from validation.
REFIT_ON_TRAIN_AND_VALID = "train+valid"


def validation_model(head):
    """The model behind `head.valid_probabilities_`: `selected_model_` where the head was refit on train +
    validation, else the head itself; `HeadError` for a loaded refit head (its selected model is not saved)."""
    selected = getattr(head, "selected_model_", None)
    if selected is not None:
        return selected
    if getattr(head, "params_", {}).get("refit_on") == REFIT_ON_TRAIN_AND_VALID:
        raise HeadError(f"this {getattr(head, 'kind', 'head')} head was refit on train + validation and its model "
                        "selected on validation is not saved; score validation with the head as `fit` returns it")
    return head


def train_and_valid(features):
    """(train, valid-or-None) split data of a FeatureSet; `HeadError` unless there are two classes to learn."""
    require_trainable(features)
    return features.split("train"), features.splits.get("valid")
