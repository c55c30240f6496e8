"""Linear heads on pooled, standardised features: logistic regression and a linear SVM.

Both choose their regularisation C on the validation split over a log-spaced grid (weak to
strong data fit, warm-started, stopping once `SEARCH_PATIENCE` values in a row fail to beat the
best), then refit with the chosen C on train + validation and are scored on test once.
Selection is by validation top-1 accuracy; among the C values tied on it, the one-standard-error
rule (Hastie, Tibshirani and Friedman, The Elements of Statistical Learning, 7.10) takes the
smallest C whose validation log loss is within one standard error of the lowest. Log losses
closer than that are not evidence, and breaking such ties on them made the choice flip with
noise in the last digits (float16 storage, solver tolerances).

Stored as arrays (`.npz`, loaded with `allow_pickle=False`): standardiser mean/scale, coef
(features, classes), intercept (classes,) and a softmax temperature.
"""

from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np
from scipy.optimize import minimize_scalar

from pipeline.atomic import atomic_write_path
from pipeline.heads.diagnosis import missing_split_error
from pipeline.heads.kinds.base import Standardizer, single_threaded_blas, softmax, train_and_valid
from pipeline.heads.kinds.svm_solver import fit_squared_hinge_ovr
from pipeline.heads.metrics import top_k_accuracy

#: Candidates for C, ascending (weakest data fit first, which warm-starts the next best).
LOGREG_C_GRID = tuple(float(c) for c in np.logspace(-4, 1, 11))
SVM_C_GRID = tuple(float(c) for c in np.logspace(-6, 1, 15))
#: Stop the search after this many consecutive candidates that do not beat the best.
SEARCH_PATIENCE = 3
LOGREG_MAX_ITERATIONS = 1000
_TEMPERATURE_BOUNDS = (-4.0, 4.0)  # natural-log bounds of the SVM score temperature
_PROBABILITY_FLOOR = 1e-12
#: Intercept of a class absent from the training split: its softmax score is exp(-1e4) ~ 0 beside any real
#: logit, so it is never predicted, yet stays finite in float32 (no inf/NaN in the stored arrays or exports).
_ABSENT_CLASS_INTERCEPT = -1e4


class LinearHead:
    """Shared search/refit/save logic; subclasses implement `_fit_one` (and set `kind`)."""

    kind = "linear"
    default_grid: tuple[float, ...] = ()

    def __init__(self, c_grid=None, patience: int = SEARCH_PATIENCE, refit_on_valid: bool = True):
        self.c_grid = c_grid
        self.patience = patience
        self.refit_on_valid = refit_on_valid

    def fit(self, features) -> LinearHead:
        with single_threaded_blas():
            return self._fit(features)

    def _fit(self, features) -> LinearHead:
        train, valid = train_and_valid(features)
        if valid is None:
            raise missing_split_error(features, "valid",
                                      f"{self.kind} chooses its regularisation on the validation split")
        grid = tuple(sorted(float(c) for c in (self.default_grid if self.c_grid is None else self.c_grid)))
        classes = features.num_classes
        scaler = Standardizer.fit(train.x)
        x_train, x_valid = scaler.transform(train.x), scaler.transform(valid.x)

        search, candidates, leader, state, misses = [], [], None, None, 0
        for c in grid:
            coef, intercept, iterations = self._fit_one(x_train, train.y, classes, c, state)
            state = (coef, intercept)
            scores = x_valid @ coef + intercept
            temperature = self._temperature(scores, valid.y)
            probabilities = softmax(scores / temperature)
            accuracy = top_k_accuracy(valid.y, probabilities, 1)
            losses = _log_losses(probabilities, valid.y)
            loss = float(losses.mean())
            search.append({"C": c, "valid_top1": accuracy, "valid_log_loss": loss,
                           "valid_log_loss_se": _standard_error(losses), "iterations": iterations})
            candidates.append(dict(search[-1], temperature=temperature, probabilities=probabilities, state=state))
            if leader is None or (accuracy, -loss) > leader:
                leader, misses = (accuracy, -loss), 0
            else:
                misses += 1
                if misses >= self.patience:
                    break

        best = _one_standard_error_choice(candidates)
        self.search_ = search
        self.valid_probabilities_ = best["probabilities"]
        if self.refit_on_valid:
            self.selected_model_ = self._twin(scaler, *best["state"], best["temperature"])
            x_all = np.concatenate([train.x, valid.x])
            y_all = np.concatenate([train.y, valid.y])
            self.scaler_ = Standardizer.fit(x_all)
            self.coef_, self.intercept_, _ = self._fit_one(self.scaler_.transform(x_all), y_all, classes, best["C"],
                                                           best["state"])
        else:
            self.scaler_ = scaler
            self.coef_, self.intercept_ = best["state"]
        self.temperature_ = best["temperature"]
        self.params_ = {"C": best["C"], "grid": list(grid),
                        "selected_by": "valid top-1, then the smallest C within one standard error of the best "
                                       "valid log loss",
                        "refit_on": "train+valid" if self.refit_on_valid else "train", "temperature": self.temperature_}
        return self

    def _twin(self, scaler: Standardizer, coef: np.ndarray, intercept: np.ndarray, temperature: float) -> LinearHead:
        """A head of this kind holding the given fitted state (the model selected on validation)."""
        twin = type(self)(self.c_grid, self.patience, refit_on_valid=False)
        twin.scaler_, twin.coef_, twin.intercept_, twin.temperature_ = scaler, coef, intercept, temperature
        return twin

    def predict_proba(self, x: np.ndarray) -> np.ndarray:
        scores = self.scaler_.transform(x) @ self.coef_ + self.intercept_
        return softmax(scores / self.temperature_)

    def keras_layers(self) -> list:
        """The head as Keras layers on pooled features: one Dense(softmax) with the standardisation and
        the temperature folded into its weights (z = ((x - mean) / scale) @ coef + intercept, over T)."""
        from pipeline.backbones.tf_runtime import import_keras

        keras = import_keras()
        scale = self.scaler_.scale.astype(np.float64)
        coef = self.coef_.astype(np.float64) / scale[:, None]
        bias = self.intercept_.astype(np.float64) - (self.scaler_.mean.astype(np.float64) / scale) @ self.coef_
        dense = keras.layers.Dense(coef.shape[1], activation="softmax", name=f"{self.kind}_head", dtype="float32")
        dense.build((None, coef.shape[0]))
        dense.set_weights([(coef / self.temperature_).astype(np.float32),
                           (bias / self.temperature_).astype(np.float32)])
        return [dense]

    def save(self, stem: Path) -> str:
        path = Path(f"{stem}.npz")
        with atomic_write_path(path) as temp:
            np.savez(temp, mean=self.scaler_.mean, scale=self.scaler_.scale, coef=self.coef_,
                     intercept=self.intercept_, temperature=np.float64(self.temperature_))
        return path.name

    @classmethod
    def load(cls, stem: Path, record) -> LinearHead:
        head = cls()
        with np.load(Path(stem).with_name(record.model_file), allow_pickle=False) as arrays:
            head.scaler_ = Standardizer(arrays["mean"], arrays["scale"])
            head.coef_, head.intercept_ = arrays["coef"], arrays["intercept"]
            head.temperature_ = float(arrays["temperature"])
        head.params_ = record.hyperparameters
        return head

    def _temperature(self, scores: np.ndarray, y: np.ndarray) -> float:
        return 1.0

    def _fit_one(self, x, y, classes, c, initial):
        raise NotImplementedError


class LogisticRegressionHead(LinearHead):
    """Multinomial logistic regression (scikit-learn, L-BFGS); probabilities are its own."""

    kind = "logreg"
    default_grid = LOGREG_C_GRID

    def _fit_one(self, x, y, classes, c, initial):
        from sklearn.exceptions import ConvergenceWarning
        from sklearn.linear_model import LogisticRegression

        model = LogisticRegression(C=c, max_iter=LOGREG_MAX_ITERATIONS, warm_start=initial is not None)
        present = np.unique(y)
        if initial is not None and len(present) == classes:
            coef, intercept = initial
            model.coef_, model.intercept_ = _to_sklearn(coef, intercept, classes)
            model.classes_ = present
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", ConvergenceWarning)
            model.fit(x, y)
        coef, intercept = _from_sklearn(model, classes)
        return coef, intercept, int(np.max(model.n_iter_))


class LinearSVMHead(LinearHead):
    """One-vs-rest linear SVM (squared hinge, see `svm_solver`); probabilities come from a
    softmax over its scores with a temperature fitted on validation (temperature scaling)."""

    kind = "svm"
    default_grid = SVM_C_GRID
    #: What it minimises (fine-tuning trains it on the same; logreg's is the cross-entropy).
    objective = "squared-hinge"

    def _fit_one(self, x, y, classes, c, initial):
        return fit_squared_hinge_ovr(x, y, classes, c, initial)

    def _temperature(self, scores: np.ndarray, y: np.ndarray) -> float:
        def loss(log_t):
            return _log_loss(softmax(scores / np.exp(log_t)), y)

        result = minimize_scalar(loss, bounds=_TEMPERATURE_BOUNDS, method="bounded")
        return float(np.exp(result.x))


def _log_loss(probabilities: np.ndarray, y: np.ndarray) -> float:
    return float(_log_losses(probabilities, y).mean())


def _log_losses(probabilities: np.ndarray, y: np.ndarray) -> np.ndarray:
    """Each row's negative log-probability of its true class."""
    picked = probabilities[np.arange(len(y)), y]
    return -np.log(np.clip(picked, _PROBABILITY_FLOOR, 1.0))


def _standard_error(values: np.ndarray) -> float:
    """Standard error of the mean of `values` (0 for a single value)."""
    return float(values.std(ddof=1) / np.sqrt(len(values))) if len(values) > 1 else 0.0


def _one_standard_error_choice(candidates: list[dict]) -> dict:
    """Among the candidates with the best valid top-1, the smallest C whose valid log loss is at most
    the lowest one plus that candidate's standard error."""
    top = max(candidate["valid_top1"] for candidate in candidates)
    tied = [candidate for candidate in candidates if candidate["valid_top1"] == top]
    lowest = min(tied, key=lambda candidate: candidate["valid_log_loss"])
    bound = lowest["valid_log_loss"] + lowest["valid_log_loss_se"]
    return min((candidate for candidate in tied if candidate["valid_log_loss"] <= bound), key=lambda c: c["C"])


def _from_sklearn(model, classes: int):
    """scikit-learn's coef (1 or k rows, over the classes seen) -> (features, classes) + (classes,)."""
    features = model.coef_.shape[1]
    coef = np.zeros((features, classes), dtype=np.float32)
    intercept = np.full(classes, _ABSENT_CLASS_INTERCEPT, dtype=np.float32)
    seen = model.classes_.astype(int)
    if model.coef_.shape[0] == 1:  # binary: sigmoid(z) == softmax([0, z])
        coef[:, seen[1]] = model.coef_[0]
        intercept[seen[0]], intercept[seen[1]] = 0.0, model.intercept_[0]
    else:
        coef[:, seen] = model.coef_.T
        intercept[seen] = model.intercept_
    return coef, intercept


def _to_sklearn(coef: np.ndarray, intercept: np.ndarray, classes: int):
    if classes == 2:
        return ((coef[:, 1] - coef[:, 0])[None, :].astype(np.float64),
                np.array([intercept[1] - intercept[0]], dtype=np.float64))
    return coef.T.astype(np.float64), intercept.astype(np.float64)
