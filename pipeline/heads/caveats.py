"""When a split's score means less than it seems: classes missing from it, or with a handful of images.

Oxford-IIIT Pet's official test list, cut down, can cover 3 of 37 breeds: a head then scores
"test top-1 0.955" on a 3-breed problem while validation, over all 37, says 0.64. The rule, for
every split whose metrics are shown (`fit-head`, `report`, `report --html`, `search`):

- a class with no image in the split: top-1, mean per-class accuracy and F1 measure only the
  classes present, so the figure is not the accuracy on the whole problem;
- a class with fewer than `MIN_IMAGES_PER_CLASS` images: each image moves that class's accuracy
  by more than 1 / `MIN_IMAGES_PER_CLASS`, so mean per-class accuracy is a rough figure.

`split_caveat` gives a `Caveat` (or None) from per-class image counts; `metrics_caveat` reads the
counts from a metrics dict of `heads.metrics.classification_metrics` (its confusion-matrix rows);
`caveats_of` does so for every split of a head; `caveat_notes` merges the leaderboard's.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

#: Fewer images of a class than this in a split make its per-class accuracy a few coin flips.
MIN_IMAGES_PER_CLASS = 5
#: The splits whose figures estimate anything (train accuracy is how well the head fits, not a score).
EVALUATION_SPLITS = ("valid", "test")
#: Class names listed in a caveat's text before "..." (the JSON lists them all).
NAMES_SHOWN = 5


@dataclass(frozen=True)
class Caveat:
    """Why a split's figures mean less than they seem; `text` says it in one line."""

    split: str
    classes: int
    missing: tuple[str, ...]
    thin: tuple[str, ...]
    text: str

    def to_dict(self) -> dict:
        return asdict(self)


def split_caveat(split: str, counts, class_names) -> Caveat | None:
    """The caveat of `split` given its image count per class (aligned with `class_names`), or None."""
    names = tuple(class_names)
    counts = [int(count) for count in counts]
    missing = tuple(name for name, count in zip(names, counts) if count == 0)
    thin = tuple(name for name, count in zip(names, counts) if 0 < count < MIN_IMAGES_PER_CLASS)
    if not counts or not any(counts) or not (missing or thin):
        return None
    parts = []
    if missing:
        covered = len(names) - len(missing)
        parts.append(f"covers {covered} of {len(names)} classes (none of {_names(missing)}), so its top-1 and "
                     f"mean/class measure those {covered} classes only, not the {len(names)}-class problem")
    if thin:
        parts.append(f"{len(thin)} of {len(names)} classes have fewer than {MIN_IMAGES_PER_CLASS} images "
                     f"({_names(thin)}), so one image moves their accuracy by over "
                     f"{1 / MIN_IMAGES_PER_CLASS:.0%}: read mean/class as a rough figure")
    return Caveat(split, len(names), missing, thin, f"{split} " + "; ".join(parts))


def metrics_caveat(split: str, metrics: dict) -> Caveat | None:
    """The caveat of a split from its metrics dict (class counts are the confusion matrix's row sums)."""
    matrix, names = metrics.get("confusion_matrix"), list(metrics.get("per_class_accuracy") or {})
    if not matrix or len(matrix) != len(names):
        return None
    return split_caveat(split, [sum(row) for row in matrix], names)


def caveats_of(metrics_by_split: dict) -> list[Caveat]:
    """The caveats of a head's evaluation splits (`EVALUATION_SPLITS`), in split order."""
    found = (metrics_caveat(split, values) for split, values in metrics_by_split.items()
             if split in EVALUATION_SPLITS and isinstance(values, dict))
    return [caveat for caveat in found if caveat is not None]


def caveat_notes(rows: list[dict]) -> list[str]:
    """One line per distinct caveat of leaderboard rows ("caveats" texts), naming the heads unless all share it."""
    heads: dict[str, list[str]] = {}
    for row in rows:
        for text in row.get("caveats") or ():
            heads.setdefault(text, []).append(str(row.get("name")))
    return [text if len(names) == len(rows) else f"{text} (heads: {', '.join(names)})" for text, names in heads.items()]


def _names(names: tuple[str, ...]) -> str:
    shown = ", ".join(names[:NAMES_SHOWN])
    return shown + (f", ... {len(names) - NAMES_SHOWN} more" if len(names) > NAMES_SHOWN else "")
