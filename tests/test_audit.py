"""`audit`'s finders on small planted sets of feature rows: what must be found is, what must not is not."""

from __future__ import annotations

import numpy as np
import pytest

from pipeline.audit.duplicates import leaked_test_images, near_duplicates
from pipeline.audit.embedding import embed_2d, map_sample
from pipeline.audit.features import AuditFeatures
from pipeline.audit.labels import NO_LABEL, confident_labels, fold_of, label_issues
from pipeline.audit.outliers import outliers, robust_deviations
from pipeline.cache.near_duplicates import NearDuplicate
from pipeline.cache.similarity import block_size, pairs_above, top_k, unit_rows


@pytest.fixture(autouse=True)
def one_blas_thread():
    """Small problems: BLAS threads only contend on a busy machine (one thread is 10x faster here)."""
    from threadpoolctl import threadpool_limits

    with threadpool_limits(1):
        yield


def _features(x, labels, splits=None, names=None) -> AuditFeatures:
    x = np.asarray(x, np.float32)
    mean = x.mean(axis=0)
    names = names or tuple(f"class{c}" for c in range(int(np.max(labels)) + 1))
    return AuditFeatures(info=None, x=x, units=unit_rows(x, mean), mean=mean,
                         relpaths=tuple(f"img{i}.jpg" for i in range(len(x))),
                         splits=tuple(splits or ["train"] * len(x)), labels=np.asarray(labels, np.int64),
                         class_names=names)


def _clusters(classes=4, per_class=30, dims=32, spread=0.35, seed=0):
    """Gaussian clusters around random centres: (x, labels)."""
    rng = np.random.default_rng(seed)
    centres = rng.normal(size=(classes, dims)) * 2
    labels = np.repeat(np.arange(classes), per_class)
    return centres[labels] + rng.normal(scale=spread * 2, size=(len(labels), dims)), labels


def test_blocked_pairs_and_top_k_equal_the_full_matrix_whatever_the_block():
    rng = np.random.default_rng(1)
    units = unit_rows(rng.normal(size=(37, 8)))
    full = units @ units.T
    tiny = 5 * 37 * 4  # five rows per block: seven blocks, the last one short
    assert block_size(37, tiny) == 5
    i, j, s = pairs_above(units, 0.5, block_bytes=tiny)
    expected = {(a, b) for a in range(37) for b in range(a + 1, 37) if full[a, b] >= 0.5}
    assert set(zip(i.tolist(), j.tolist())) == expected and len(i) == len(expected)
    assert np.allclose(s, full[i, j])
    indices, cosines = top_k(units, units, 3, exclude_self=True, block_bytes=tiny)
    np.fill_diagonal(full, -np.inf)
    assert np.array_equal(indices, np.argsort(-full, axis=1)[:, :3])
    assert np.allclose(cosines, -np.sort(-full, axis=1)[:, :3])


def test_planted_copies_are_near_duplicates_and_other_members_of_their_class_are_not():
    x, labels = _clusters(spread=1.0)  # same-class cosine about 0.5, like different photos of one breed
    rng = np.random.default_rng(2)
    copies = [3, 40, 75]  # a copy of a train image lands in test, valid and train
    x = np.vstack([x, x[copies] + rng.normal(scale=0.05, size=(3, x.shape[1]))])
    labels = np.concatenate([labels, labels[copies]])
    splits = ["train"] * 120 + ["test", "valid", "train"]
    pairs = near_duplicates(_features(x, labels, splits), threshold=0.9)
    assert {(p.a, p.b) for p in pairs} == {(f"img{c}.jpg", f"img{120 + k}.jpg") for k, c in enumerate(copies)}
    assert [p.splits for p in pairs if p.b == "img120.jpg"] == [("train", "test")]
    assert leaked_test_images(pairs) == {"img120.jpg"}, "only test images with a copy in train/valid leak"


def test_leaked_test_images_ignore_test_test_pairs_and_read_both_orders():
    pairs = [NearDuplicate("t1", "t2", 0.99, ("test", "test")), NearDuplicate("t3", "v1", 0.95, ("test", "valid")),
             NearDuplicate("a", "t4", 0.93, ("train", "test"))]
    assert leaked_test_images(pairs) == {"t3", "t4"}


def test_confident_learning_flags_flipped_labels_first_and_leaves_clean_ones():
    x, labels = _clusters(classes=4, per_class=40, spread=0.4)
    given = labels.copy()
    flipped = np.array([5, 50, 90, 130, 150])
    given[flipped] = (labels[flipped] + 1) % 4
    issues = label_issues(_features(x, given))
    found = [issue.path for issue in issues]
    assert set(found[:5]) == {f"img{i}.jpg" for i in flipped}
    assert len(issues) <= 8, "a few borderline images at most besides the planted ones"
    first = issues[0]
    index = int(first.path[3:-4])
    assert first.given == f"class{given[index]}" and first.suggested == f"class{labels[index]}"
    assert [i.score for i in issues] == sorted(i.score for i in issues)


def test_the_confident_label_needs_the_class_threshold():
    # class thresholds: mean p(0) over images labelled 0 = 0.7, mean p(1) over images labelled 1 = 0.8
    probabilities = np.array([[0.9, 0.1], [0.5, 0.5], [0.2, 0.8], [0.2, 0.8], [0.35, 0.65]])
    given = np.array([0, 0, 1, 1, 0])
    assert confident_labels(probabilities, given).tolist() == [0, NO_LABEL, 1, 1, NO_LABEL]
    given[1] = 1  # now t0 = mean(0.9, 0.35) = 0.625, t1 = mean(0.5, 0.8, 0.8) = 0.7
    assert confident_labels(probabilities, given).tolist() == [0, NO_LABEL, 1, 1, NO_LABEL]


def test_folds_are_stratified():
    labels = np.repeat([0, 1, 2], [10, 5, 3])
    folds = fold_of(labels, 5)
    for label, count in ((0, 10), (1, 5)):
        assert np.bincount(folds[labels == label], minlength=5).tolist() == [count // 5] * 5
    assert len(set(folds[labels == 2].tolist())) == 3


def test_an_image_far_from_every_class_is_an_outlier_and_typical_ones_are_not():
    x, labels = _clusters(classes=4, per_class=30)
    rng = np.random.default_rng(3)
    far = rng.normal(size=(2, x.shape[1])) * 6
    x = np.vstack([x, far])
    labels = np.concatenate([labels, [0, 2]])
    found = outliers(_features(x, labels))
    assert [o.path for o in found] == ["img120.jpg", "img121.jpg"] or [o.path for o in found] == ["img121.jpg",
                                                                                                  "img120.jpg"]
    assert all(o.deviations > 3 for o in found)


def test_robust_deviations_count_below_the_median():
    values = np.array([1.0, 1.1, 0.9, 1.0, 1.05, 0.95, 0.0])
    deviations = robust_deviations(values)
    assert deviations[-1] > 10 and np.all(np.abs(deviations[:-1]) < 2)


def test_the_map_keeps_flagged_images_when_it_samples_and_scales_to_the_unit_square():
    chosen = map_sample(100, [97, 3], limit=10)
    assert len(chosen) == 10 and {3, 97} <= set(chosen.tolist()) and list(chosen) == sorted(chosen)
    assert map_sample(8, [], limit=10).tolist() == list(range(8))
    x, _ = _clusters(classes=3, per_class=12)
    coordinates = embed_2d(unit_rows(x))
    assert coordinates.shape == (36, 2) and coordinates.min() == pytest.approx(0) and coordinates.max() == 1
    assert embed_2d(unit_rows(x[:2])).shape == (2, 2)


def test_the_leakage_line_says_both_scores_and_how_many_were_removed():
    from pipeline.audit.leakage import score_line

    row = {"name": "logreg-1", "removed": 8, "n": 52, "test": {"top1": 0.9125}, "unleaked": {"top1": 0.88}}
    assert score_line(row) == ("logreg-1: test top1 0.912 on 60, 0.880 on the 52 without a near-duplicate in "
                               "train/valid (8 removed)")
    assert "every test image" in score_line({**row, "n": 0, "removed": 60, "unleaked": None})
