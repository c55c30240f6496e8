"""Stable, seeded splits for images a layout left without an official split.

Each unassigned image draws a number in [0, 1) from sha256(seed, image content hash). It goes to
test when the draw is below the test fraction, to validation when below test + validation, else
to train. The assignment depends only on the image's bytes and the seed, never on the other
images or the file order, so adding images never moves existing ones between splits and a copy
of the dataset splits identically anywhere. Every class gets each fraction in expectation
(stratified by construction, as in TensorFlow's classic `retrain.py`); classes left with no
validation or test image are named in the notes.

Only the splits a dataset lacks are carved: with official `train/` and `test/` folders, only
validation is taken from train.
"""

from __future__ import annotations

import hashlib
from dataclasses import replace

from pipeline.data.dataset import DatasetIndex, SplitCarving
from pipeline.errors import UsageError

DEFAULT_VALID_FRACTION = 0.15
DEFAULT_TEST_FRACTION = 0.15
DEFAULT_SPLIT_SEED = 0
_DRAW_HEX_DIGITS = 16  # 64 bits of the digest are plenty to place a draw in [0, 1)


def split_draw(sha256: str, seed: int) -> float:
    """A uniform number in [0, 1) determined by an image's content hash and the seed."""
    digest = hashlib.sha256(f"{seed}:{sha256}".encode()).hexdigest()
    return int(digest[:_DRAW_HEX_DIGITS], 16) / float(1 << (4 * _DRAW_HEX_DIGITS))


def validate_fractions(valid_fraction: float, test_fraction: float) -> None:
    """Raise ValueError unless both fractions are in [0, 1) and leave some training data."""
    for name, value in (("validation", valid_fraction), ("test", test_fraction)):
        if not 0.0 <= value < 1.0:
            raise UsageError(f"{name} fraction must be in [0, 1), got {value}")
    if valid_fraction + test_fraction >= 1.0:
        raise UsageError(
            f"validation + test fractions must leave images for training, got {valid_fraction} + {test_fraction}"
        )


def assign_splits(
    index: DatasetIndex,
    valid_fraction: float = DEFAULT_VALID_FRACTION,
    test_fraction: float = DEFAULT_TEST_FRACTION,
    seed: int = DEFAULT_SPLIT_SEED,
) -> DatasetIndex:
    """Give every record without a split one, carving only the splits the dataset lacks.

    Records must already carry their `sha256`. Returns a new index whose `carving` records the
    fractions and seed used, with notes describing what was carved.
    """
    validate_fractions(valid_fraction, test_fraction)
    present = {record.split for record in index.records if record.split is not None}
    carve_test = test_fraction if "test" not in present else 0.0
    carve_valid = valid_fraction if "valid" not in present else 0.0
    if not carve_test and not carve_valid:
        pool_splits = (None,)
    else:
        pool_splits = (None, "train")  # the missing splits are carved from training images
    pool = [record for record in index.records if record.split in pool_splits]
    if not pool:
        return index

    records = []
    for record in index.records:
        if record.split not in pool_splits:
            records.append(record)
            continue
        if record.sha256 is None:
            raise ValueError(f"record {record.relpath} has no content hash; hash before assigning splits")
        draw = split_draw(record.sha256, seed)
        if draw < carve_test:
            split = "test"
        elif draw < carve_test + carve_valid:
            split = "valid"
        else:
            split = "train"
        records.append(replace(record, split=split))

    carved = [name for name, fraction in (("valid", carve_valid), ("test", carve_test)) if fraction > 0]
    notes = []
    if carved:
        shares = (("valid", carve_valid), ("test", carve_test))
        parts = ", ".join(f"{name} {fraction:.0%}" for name, fraction in shares if fraction)
        notes.append(f"carved {parts} of the {len(pool)} images without an official split, by content hash "
                     f"(seed {seed}); adding images never moves existing ones")
    counts = index.with_records(records).class_counts()
    for split in carved:
        empty = [name for name, count in counts.get(split, dict.fromkeys(index.class_names, 0)).items() if count == 0]
        if empty:
            shown = ", ".join(empty[:5]) + (" ..." if len(empty) > 5 else "")
            notes.append(f"{len(empty)} classes have no {split} images ({shown}); add images or raise the fraction")
    carving = SplitCarving(carve_valid, carve_test, seed, len(pool)) if carved else None
    return replace(index.with_records(records, notes=notes), carving=carving)
