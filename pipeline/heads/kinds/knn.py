"""k-nearest-neighbours on standardised, L2-normalised pooled features (cosine similarity).

A useful non-parametric baseline: no training, and a sanity check on feature quality. k is chosen
on validation from `K_GRID` (top-1, then log loss); the final memory is train + validation.
Probabilities are the neighbours' vote shares, smoothed by `VOTE_SMOOTHING` so none is exactly 0.
Stored as arrays (`.npz`): standardiser, the normalised memory rows (float16, halving the file),
their labels and k.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from pipeline.atomic import atomic_write_path
from pipeline.heads.diagnosis import missing_split_error
from pipeline.heads.kinds.base import Standardizer, train_and_valid
from pipeline.heads.metrics import top_k_accuracy

K_GRID = (1, 3, 5, 10, 20, 50)
VOTE_SMOOTHING = 1e-3
SIMILARITY_BLOCK_ROWS = 1024  # query rows per similarity block: bounds memory to block x memory rows
_PROBABILITY_FLOOR = 1e-12


class CosineKNNHead:
    """See the module docstring."""

    kind = "knn"

    def __init__(self, k_grid=K_GRID):
        self.k_grid = k_grid

    def fit(self, features) -> CosineKNNHead:
        train, valid = train_and_valid(features)
        if valid is None:
            raise missing_split_error(features, "valid", "knn chooses k on the validation split")
        self.num_classes_ = features.num_classes
        grid = [k for k in sorted(self.k_grid) if k <= len(train.y)] or [1]
        self._remember(train.x, train.y, max(grid))
        search, best = [], None
        for k in grid:
            self.k_ = k
            probabilities = self.predict_proba(valid.x)
            accuracy = top_k_accuracy(valid.y, probabilities, 1)  # tied votes earn no credit
            picked = probabilities[np.arange(len(valid.y)), valid.y]
            loss = float(-np.mean(np.log(np.clip(picked, _PROBABILITY_FLOOR, 1.0))))
            search.append({"k": k, "valid_top1": accuracy, "valid_log_loss": loss})
            if best is None or (accuracy, -loss) > (best["valid_top1"], -best["valid_log_loss"]):
                best = dict(search[-1], probabilities=probabilities)
        self.search_ = search
        self.valid_probabilities_ = best["probabilities"]
        self.selected_model_ = self._twin(best["k"])
        self._remember(np.concatenate([train.x, valid.x]), np.concatenate([train.y, valid.y]), best["k"])
        self.params_ = {"k": best["k"], "grid": grid, "selected_by": "valid top-1, then valid log loss",
                        "refit_on": "train+valid", "similarity": "cosine of standardised features"}
        return self

    def predict_proba(self, x: np.ndarray) -> np.ndarray:
        queries = _normalise(self.scaler_.transform(x))
        probabilities = np.empty((len(x), self.num_classes_), dtype=np.float64)
        for start in range(0, len(x), SIMILARITY_BLOCK_ROWS):
            similarity = queries[start:start + SIMILARITY_BLOCK_ROWS] @ self.memory_.T
            nearest = np.argpartition(-similarity, kth=self.k_ - 1, axis=1)[:, :self.k_]
            votes = np.zeros((len(similarity), self.num_classes_))
            np.add.at(votes, (np.repeat(np.arange(len(similarity)), self.k_), self.labels_[nearest].ravel()), 1.0)
            votes += VOTE_SMOOTHING
            probabilities[start:start + len(similarity)] = votes / votes.sum(axis=1, keepdims=True)
        return probabilities

    def save(self, stem: Path) -> str:
        path = Path(f"{stem}.npz")
        with atomic_write_path(path) as temp:
            np.savez(temp, mean=self.scaler_.mean, scale=self.scaler_.scale, memory=self.memory_.astype(np.float16),
                     labels=self.labels_, k=np.int64(self.k_), num_classes=np.int64(self.num_classes_))
        return path.name

    @classmethod
    def load(cls, stem: Path, record) -> CosineKNNHead:
        head = cls()
        with np.load(Path(stem).with_name(record.model_file), allow_pickle=False) as arrays:
            head.scaler_ = Standardizer(arrays["mean"], arrays["scale"])
            head.memory_ = arrays["memory"].astype(np.float32)
            head.labels_ = arrays["labels"]
            head.k_, head.num_classes_ = int(arrays["k"]), int(arrays["num_classes"])
        head.params_ = record.hyperparameters
        return head

    def _twin(self, k: int) -> CosineKNNHead:
        """A head remembering what this one remembers now (the training rows), with `k` neighbours."""
        twin = CosineKNNHead(self.k_grid)
        twin.scaler_, twin.memory_, twin.labels_, twin.num_classes_, twin.k_ = (
            self.scaler_, self.memory_, self.labels_, self.num_classes_, k)
        return twin

    def _remember(self, x: np.ndarray, y: np.ndarray, k: int) -> None:
        self.scaler_ = Standardizer.fit(x)
        self.memory_ = _normalise(self.scaler_.transform(x))
        self.labels_ = np.asarray(y, dtype=np.int64)
        self.k_ = k


def _normalise(x: np.ndarray) -> np.ndarray:
    norms = np.linalg.norm(x, axis=1, keepdims=True)
    return (x / np.maximum(norms, np.finfo(np.float32).tiny)).astype(np.float32)
