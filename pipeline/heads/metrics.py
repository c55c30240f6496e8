"""Classification metrics for a split: the numbers a leaderboard and a user need.

`classification_metrics` returns plain JSON-able values: top-1 and top-5 accuracy (top-5 only
with more than 5 classes), mean per-class accuracy (balanced accuracy), macro F1, per-class
accuracy (None for a class absent from the split), the confusion matrix (rows = true class,
columns = predicted), the mean log loss, and the number of images.

Ties never earn credit: a row counts as a top-k hit only when fewer than k other classes score at
least as high as the true class (the true class ranks after every class tied with it). Without
this, a head that gives most classes the same score (k-NN with k=1, a collapsed network) would be
credited whenever the true class has a low index, since `argmax`/`argpartition` favour low
indexes. The same pessimistic rule picks the prediction scored by the confusion matrix, per-class
accuracy and F1: a row whose true class ties for the top score counts as predicted as the
lowest-indexed *other* tied class, so all those metrics agree with top-1.
"""

from __future__ import annotations

import numpy as np

TOP_K = 5
_PROBABILITY_FLOOR = 1e-12  # keeps log loss finite for a confident wrong answer


def classes_ranked_ahead(y_true: np.ndarray, scores: np.ndarray) -> np.ndarray:
    """Per row, how many other classes score at least as high as the true class (ties rank ahead).

    A row whose true-class score is NaN counts every other class as ahead, so it is never a hit.
    """
    y_true = np.asarray(y_true, dtype=np.int64)
    scores = np.asarray(scores)
    rows = np.arange(len(y_true))
    true_scores = scores[rows, y_true]
    ahead = np.sum(scores >= true_scores[:, None], axis=1) - 1  # minus the true class itself
    return np.where(np.isnan(true_scores), scores.shape[1] - 1, ahead)


def top_k_accuracy(y_true: np.ndarray, scores: np.ndarray, k: int) -> float:
    """Fraction of rows whose true class is among the `k` highest scores, ties counted against it."""
    if not len(y_true):
        return float("nan")
    return float(np.mean(classes_ranked_ahead(y_true, scores) < k))


def scored_predictions(y_true: np.ndarray, scores: np.ndarray) -> np.ndarray:
    """`argmax` predictions, except that a true class tied for the top yields to another tied class.

    These are the predictions the confusion matrix and per-class metrics count; the label a user
    sees for an image is still the plain `argmax`.
    """
    y_true = np.asarray(y_true, dtype=np.int64)
    scores = np.asarray(scores)
    predicted = scores.argmax(axis=1)
    if not len(y_true):
        return predicted
    rows = np.arange(len(y_true))
    at_top = scores == scores.max(axis=1, keepdims=True)
    tied = at_top[rows, y_true] & (at_top.sum(axis=1) > 1)
    if tied.any():
        others = at_top[tied]
        others[np.arange(len(others)), y_true[tied]] = False
        predicted[tied] = others.argmax(axis=1)  # the lowest-indexed other class at the top
    return predicted


def confusion_matrix(y_true: np.ndarray, y_pred: np.ndarray, num_classes: int) -> np.ndarray:
    """(num_classes, num_classes) counts; rows are true classes, columns predictions."""
    matrix = np.zeros((num_classes, num_classes), dtype=np.int64)
    np.add.at(matrix, (y_true, y_pred), 1)
    return matrix


def classification_metrics(y_true: np.ndarray, probabilities: np.ndarray, class_names) -> dict:
    """All metrics of one split from true labels and per-class probabilities (n, classes)."""
    y_true = np.asarray(y_true, dtype=np.int64)
    num_classes = len(class_names)
    y_pred = scored_predictions(y_true, probabilities)
    matrix = confusion_matrix(y_true, y_pred, num_classes)
    support = matrix.sum(axis=1)
    predicted = matrix.sum(axis=0)
    correct = np.diag(matrix)
    with np.errstate(divide="ignore", invalid="ignore"):
        recall = np.where(support > 0, correct / np.maximum(support, 1), np.nan)
        precision = np.where(predicted > 0, correct / np.maximum(predicted, 1), 0.0)
        f1 = np.where(precision + np.nan_to_num(recall) > 0,
                      2 * precision * np.nan_to_num(recall) / (precision + np.nan_to_num(recall)), 0.0)
    present = support > 0
    picked = probabilities[np.arange(len(y_true)), y_true]
    metrics = {
        "n": len(y_true),
        "top1": top_k_accuracy(y_true, probabilities, 1) if len(y_true) else None,
        "mean_per_class_accuracy": float(np.mean(recall[present])) if present.any() else None,
        "macro_f1": float(np.mean(f1[present])) if present.any() else None,
        "log_loss": float(-np.mean(np.log(np.clip(picked, _PROBABILITY_FLOOR, 1.0)))) if len(y_true) else None,
        "per_class_accuracy": {
            name: (None if np.isnan(value) else float(value)) for name, value in zip(class_names, recall)
        },
        "confusion_matrix": matrix.tolist(),
    }
    if num_classes > TOP_K and len(y_true):
        metrics["top5"] = top_k_accuracy(y_true, probabilities, TOP_K)
    return metrics


def summary_line(metrics: dict) -> str:
    """'top1 0.953  top5 0.991  mean/class 0.950  macroF1 0.949  (n=836)'."""
    parts = [f"top1 {metrics['top1']:.3f}"]
    if "top5" in metrics:
        parts.append(f"top5 {metrics['top5']:.3f}")
    parts.append(f"mean/class {metrics['mean_per_class_accuracy']:.3f}")
    parts.append(f"macroF1 {metrics['macro_f1']:.3f}")
    return "  ".join(parts) + f"  (n={metrics['n']})"
