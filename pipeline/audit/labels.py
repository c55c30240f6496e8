"""Label-issue candidates: confident learning on out-of-fold probabilities of a linear head.

Out-of-fold probabilities come from a multinomial logistic regression on the standardised cached
features, cross-validated over every labelled image (each image is scored by a model that never
saw it). The ranking is confident learning (Northcutt, Jiang and Chuang, "Confident Learning:
Estimating Uncertainty in Dataset Labels", JAIR 2021), as cleanlab's `find_label_issues` with
`filter_by="confident_learning"` and `rank_by="self_confidence"`:

- per-class threshold t_j = the mean out-of-fold probability of class j over the images labelled j;
- an image's confident label is the class with the highest probability among those with p_j >= t_j
  (none when no class reaches its threshold);
- an image is a candidate when its confident label differs from its given label; candidates are
  ranked by self-confidence p_given (lowest, most suspicious, first), which is their `score`.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from pipeline.audit.features import AuditFeatures

#: Cross-validation folds, the logistic regression's inverse regularisation and its iteration cap.
CV_FOLDS = 5
LOGREG_C = 0.1
LOGREG_MAX_ITER = 300
FOLD_SEED = 0
NO_LABEL = -1


@dataclass(frozen=True)
class LabelIssue:
    """An image whose given label the out-of-fold head doubts: `score` = p(given label), lower is worse."""

    path: str
    given: str
    suggested: str
    score: float

    def to_dict(self) -> dict:
        return {"path": self.path, "given": self.given, "suggested": self.suggested, "score": round(self.score, 4)}


def fold_of(labels: np.ndarray, folds: int = CV_FOLDS, seed: int = FOLD_SEED) -> np.ndarray:
    """A fold index per image, stratified: each class's images are shuffled and dealt round-robin."""
    rng = np.random.default_rng(seed)
    assigned = np.zeros(len(labels), np.int64)
    offset = 0
    for label in np.unique(labels):
        members = rng.permutation(np.flatnonzero(labels == label))
        assigned[members] = (np.arange(len(members)) + offset) % folds
        offset += len(members)  # classes start where the last ended, so small classes spread over folds
    return assigned


def out_of_fold_probabilities(x: np.ndarray, labels: np.ndarray, num_classes: int,
                              folds: int = CV_FOLDS) -> np.ndarray:
    """(n, num_classes) probabilities, each row from a logistic regression fitted without that image."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.preprocessing import StandardScaler

    probabilities = np.zeros((len(labels), num_classes))
    assigned = fold_of(labels, folds)
    for fold in range(folds):
        held, fitted = assigned == fold, assigned != fold
        if not held.any():
            continue
        classes = np.unique(labels[fitted])
        if len(classes) < 2:  # nothing to learn from: every class equally likely
            probabilities[held] = 1.0 / num_classes
            continue
        scaler = StandardScaler().fit(x[fitted])
        model = LogisticRegression(C=LOGREG_C, max_iter=LOGREG_MAX_ITER)
        model.fit(scaler.transform(x[fitted]), labels[fitted])
        probabilities[np.ix_(held, model.classes_)] = model.predict_proba(scaler.transform(x[held]))
    return probabilities


def confident_labels(probabilities: np.ndarray, labels: np.ndarray) -> np.ndarray:
    """Each image's confident label (see the module doc), or `NO_LABEL` when no class reaches its threshold."""
    num_classes = probabilities.shape[1]
    thresholds = np.full(num_classes, np.inf)
    for label in range(num_classes):
        members = labels == label
        if members.any():
            thresholds[label] = probabilities[members, label].mean()
    above = probabilities >= thresholds
    masked = np.where(above, probabilities, -np.inf)
    confident = np.argmax(masked, axis=1)
    return np.where(above.any(axis=1), confident, NO_LABEL)


def label_issues(features: AuditFeatures, probabilities: np.ndarray | None = None) -> list[LabelIssue]:
    """Candidates for a wrong label, most suspicious first (out-of-fold probabilities computed if not given)."""
    labels = features.labels
    if probabilities is None:
        probabilities = out_of_fold_probabilities(features.x, labels, len(features.class_names))
    confident = confident_labels(probabilities, labels)
    self_confidence = probabilities[np.arange(len(labels)), labels]
    flagged = np.flatnonzero((confident != NO_LABEL) & (confident != labels))
    flagged = flagged[np.argsort(self_confidence[flagged], kind="stable")]
    names = features.class_names
    return [LabelIssue(features.relpaths[i], names[labels[i]], names[confident[i]], float(self_confidence[i]))
            for i in flagged]
