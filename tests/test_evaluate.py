import numpy as np
import pytest

from pipeline.heads.metrics import classification_metrics, confusion_matrix, top_k_accuracy
from pipeline.heads.plots import save_confusion_png


def test_metrics_on_a_hand_checked_example():
    y = np.array([0, 0, 1, 1, 2, 2])
    probabilities = np.array([
        [0.8, 0.1, 0.1], [0.2, 0.7, 0.1],   # class 0: one right, one predicted as 1
        [0.1, 0.8, 0.1], [0.1, 0.6, 0.3],   # class 1: both right
        [0.5, 0.1, 0.4], [0.1, 0.2, 0.7],   # class 2: one predicted as 0, one right
    ])
    metrics = classification_metrics(y, probabilities, ["a", "b", "c"])
    assert metrics["top1"] == pytest.approx(4 / 6)
    assert metrics["per_class_accuracy"] == {"a": 0.5, "b": 1.0, "c": 0.5}
    assert metrics["mean_per_class_accuracy"] == pytest.approx(2 / 3)
    # precision a=1/2, b=2/3, c=1; recall a=1/2, b=1, c=1/2
    f1 = [0.5, 2 * (2 / 3) / (2 / 3 + 1), 2 * 0.5 / 1.5]
    assert metrics["macro_f1"] == pytest.approx(np.mean(f1))
    assert metrics["confusion_matrix"] == [[1, 1, 0], [0, 2, 0], [1, 0, 1]]
    assert "top5" not in metrics
    assert metrics["log_loss"] == pytest.approx(-np.mean(np.log([0.8, 0.2, 0.8, 0.6, 0.4, 0.7])))


def test_top5_appears_with_more_than_five_classes():
    y = np.array([0, 1])
    scores = np.tile(np.arange(7, dtype=float)[::-1], (2, 1))  # class 0 ranks first, class 1 second
    scores[1] = [6, 1, 5, 4, 3, 2, 0]  # class 1 ranks sixth
    metrics = classification_metrics(y, scores / scores.sum(axis=1, keepdims=True), list("abcdefg"))
    assert metrics["top5"] == 0.5
    assert top_k_accuracy(y, scores, 7) == 1.0


def test_absent_classes_have_no_accuracy():
    metrics = classification_metrics(np.array([0, 0]), np.array([[0.9, 0.1], [0.6, 0.4]]), ["a", "b"])
    assert metrics["per_class_accuracy"] == {"a": 1.0, "b": None}
    assert metrics["mean_per_class_accuracy"] == 1.0


def test_confusion_matrix_counts():
    matrix = confusion_matrix(np.array([0, 1, 1, 2]), np.array([0, 2, 1, 2]), 3)
    assert matrix.tolist() == [[1, 0, 0], [0, 1, 1], [0, 0, 1]]


def test_confusion_png_for_133_classes_is_large_and_readable(tmp_path):
    from PIL import Image

    rng = np.random.default_rng(0)
    matrix = rng.integers(0, 5, (133, 133)) + np.eye(133, dtype=int) * 6
    names = [f"Breed_name_{i:03d}" for i in range(133)]
    path = save_confusion_png(matrix, names, tmp_path / "cm.png", "133 breeds")
    with Image.open(path) as image:
        assert image.size[0] >= 3000 and image.size[1] >= 3000  # ~0.16 in per class at 150 dpi


def test_confusion_png_for_two_classes_is_compact(tmp_path):
    from PIL import Image

    path = save_confusion_png([[5, 1], [0, 6]], ["cat", "dog"], tmp_path / "cm.png", "cats vs dogs")
    with Image.open(path) as image:
        assert image.size[0] <= 1000


def test_tied_scores_earn_no_top_k_credit():
    """k-NN with k=1 on 37 classes: one-hot-like rows, every other class tied at the smoothing floor."""
    classes = 37
    floor, peak = 1e-3 / (1 + classes * 1e-3), (1 + 1e-3) / (1 + classes * 1e-3)
    probabilities = np.full((3, classes), floor)
    probabilities[:, 20] = peak  # every row confidently predicts class 20
    y = np.array([0, 1, 5])  # low class indexes, tied with 35 others at the floor
    # The old argpartition-based count scored the class-0 and class-1 rows as top-5 hits (0.667).
    assert top_k_accuracy(y, probabilities, 5) == 0.0
    metrics = classification_metrics(y, probabilities, [f"c{i}" for i in range(classes)])
    assert metrics["top5"] == 0.0 and metrics["top1"] == 0.0


def test_an_all_equal_row_is_not_a_top1_hit():
    y = np.array([0, 1, 2])
    probabilities = np.full((3, 3), 1 / 3)  # no information at all
    metrics = classification_metrics(y, probabilities, ["a", "b", "c"])
    assert metrics["top1"] == 0.0  # argmax would have credited the class-0 row
    assert metrics["per_class_accuracy"] == {"a": 0.0, "b": 0.0, "c": 0.0}
    assert metrics["mean_per_class_accuracy"] == 0.0 and metrics["macro_f1"] == 0.0
    # The true class ranks after every class tied with it: row 0 counts as predicted "b".
    assert np.trace(np.array(metrics["confusion_matrix"])) == 0
    assert np.array(metrics["confusion_matrix"]).sum() == 3


def test_partial_ties_rank_the_true_class_last_among_them():
    y = np.array([0, 0])
    scores = np.array([
        [0.3, 0.3, 0.2, 0.1, 0.05, 0.05, 0.0],  # tied with class 1 for first: rank 2
        [0.1, 0.2, 0.2, 0.2, 0.2, 0.1, 0.0],    # 4 ahead, tied with class 5: rank 6
    ])
    assert top_k_accuracy(y, scores, 1) == 0.0
    assert top_k_accuracy(y, scores, 2) == 0.5
    assert top_k_accuracy(y, scores, 5) == 0.5
    assert top_k_accuracy(y, scores, 6) == 1.0
    metrics = classification_metrics(y, scores, list("abcdefg"))
    assert metrics["confusion_matrix"][0][1] == 2  # both rows count as predicted "b"


def test_untied_scores_are_counted_as_before():
    rng = np.random.default_rng(0)
    scores = rng.random((200, 12))  # continuous: no ties
    y = rng.integers(0, 12, 200)
    for k in (1, 3, 5):
        top = np.argpartition(-scores, kth=k - 1, axis=1)[:, :k]
        assert top_k_accuracy(y, scores, k) == float(np.mean(np.any(top == y[:, None], axis=1)))
    metrics = classification_metrics(y, scores / scores.sum(axis=1, keepdims=True), list("abcdefghijkl"))
    assert metrics["top1"] == float(np.mean(scores.argmax(axis=1) == y))
    assert metrics["confusion_matrix"] == confusion_matrix(y, scores.argmax(axis=1), 12).tolist()


def test_nan_scores_are_never_a_hit():
    scores = np.array([[np.nan, 0.2, 0.1], [0.7, 0.2, 0.1]])
    assert top_k_accuracy(np.array([0, 0]), scores, 1) == 0.5
