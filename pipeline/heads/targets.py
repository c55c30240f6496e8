"""When one target implies another (every breed belongs to one species): consistency and derived accuracy.

A head's primary target implies another target when, in the training split, every primary class
that has images carries exactly one label of the other (Oxford-IIIT Pet: each breed is a cat or a
dog). Then a primary prediction also predicts the other target. For every split this reports the
other target's accuracy derived from the primary prediction and, for a multi-task head that
predicts the other target directly too, that direct accuracy and how often the two predictions
are consistent.
"""

from __future__ import annotations

import numpy as np

#: Marks a primary class without training images: it implies nothing.
NO_IMPLICATION = -1


def implied_mapping(primary: np.ndarray, other: np.ndarray, primary_classes: int) -> np.ndarray | None:
    """The other target's label implied by each primary class (`NO_IMPLICATION` if unseen), or None
    when some primary class carries two labels of the other target in `primary`/`other` (training labels)."""
    mapping = np.full(primary_classes, NO_IMPLICATION, dtype=np.int64)
    for label in np.unique(primary):
        seen = np.unique(other[primary == label])
        if len(seen) != 1:
            return None
        mapping[label] = seen[0]
    return mapping


def implied_targets_report(features, probabilities: dict[str, dict[str, np.ndarray]]) -> dict:
    """{other target: {"implied_by": primary, split: {...}}} for every target the primary one implies.

    `probabilities[target][split]` holds a head's predicted probabilities; the primary target must
    be there, other targets only when the head predicts them directly (multi-task).
    """
    primary = features.target
    train = features.splits["train"]
    report = {}
    for other in getattr(features, "target_classes", {}) or {}:
        if other == primary or other not in train.targets:
            continue
        mapping = implied_mapping(train.y, train.targets[other], features.num_classes)
        if mapping is None:
            continue
        rows = {"implied_by": primary}
        for split, data in features.splits.items():
            truth = data.targets[other]
            derived = mapping[np.asarray(probabilities[primary][split]).argmax(axis=1)]
            row = {"accuracy_from_primary": float(np.mean(derived == truth))}
            if other in probabilities:
                direct = np.asarray(probabilities[other][split]).argmax(axis=1)
                row["accuracy_direct"] = float(np.mean(direct == truth))
                row["consistency"] = float(np.mean(direct == derived))
            rows[split] = row
        report[other] = rows
    return report
