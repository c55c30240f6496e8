"""Heads on small synthetic features: selection on validation, save/load, honesty rules."""

from types import SimpleNamespace

import numpy as np
import pytest

from pipeline.errors import HeadError
from pipeline.features import FeatureSet, SplitData
from pipeline.heads import make_head
from pipeline.heads.linear import LinearSVMHead, LogisticRegressionHead
from pipeline.heads.svm_solver import fit_squared_hinge_ovr


def _feature_set(classes=5, per_class=(40, 10, 10), dims=16, noise=1.0, seed=0, shape=None):
    rng = np.random.default_rng(seed)
    centres = rng.normal(size=(classes, dims)) * 3

    def split(n):
        y = np.repeat(np.arange(classes), n)
        x = (centres[y] + rng.normal(size=(len(y), dims)) * noise).astype(np.float32)
        return SplitData(x, y, tuple(str(i) for i in range(len(y))))

    info = SimpleNamespace(class_names=tuple(f"c{i}" for i in range(classes)), feature_shape=shape or (dims,))
    return FeatureSet(info, dict(zip(("train", "valid", "test"), (split(n) for n in per_class))))


def _accuracy(head, data):
    return float(np.mean(head.predict_proba(data.x).argmax(axis=1) == data.y))


@pytest.mark.parametrize("kind", ["logreg", "svm"])
def test_linear_heads_choose_c_on_validation_and_refit(kind):
    features = _feature_set()
    head = make_head(kind).fit(features)
    assert head.params_["C"] in head.params_["grid"]
    assert head.params_["refit_on"] == "train+valid"
    best = max(head.search_, key=lambda s: (s["valid_top1"], -s["valid_log_loss"]))
    assert head.params_["C"] == best["C"]
    assert _accuracy(head, features.splits["test"]) > 0.9
    probabilities = head.predict_proba(features.splits["test"].x)
    np.testing.assert_allclose(probabilities.sum(axis=1), 1.0, rtol=1e-5)
    assert head.valid_probabilities_.shape == (50, 5)


def test_search_stops_after_patience_misses():
    noisy = _feature_set(noise=4, per_class=(15, 30, 10), dims=32)
    head = LogisticRegressionHead(c_grid=np.logspace(-6, 3, 19), patience=2).fit(noisy)
    assert len(head.search_) < 19
    best = max(range(len(head.search_)), key=lambda i: (head.search_[i]["valid_top1"], -head.search_[i]["valid_log_loss"]))
    assert len(head.search_) == best + 1 + 2  # stopped two misses after the best


def test_binary_logreg_matches_sklearn_probabilities():
    from sklearn.linear_model import LogisticRegression

    features = _feature_set(classes=2)
    head = LogisticRegressionHead(c_grid=[0.5]).fit(features)
    train, valid = features.splits["train"], features.splits["valid"]
    x = np.concatenate([train.x, valid.x])
    reference = LogisticRegression(C=0.5, max_iter=1000).fit(head.scaler_.transform(x), np.concatenate([train.y, valid.y]))
    test_x = head.scaler_.transform(features.splits["test"].x)
    np.testing.assert_allclose(head.predict_proba(features.splits["test"].x), reference.predict_proba(test_x), atol=1e-3)


def test_svm_solver_matches_liblinear_objective_on_separable_data():
    from sklearn.svm import LinearSVC

    features = _feature_set(classes=3, noise=0.5)
    train = features.splits["train"]
    coef, intercept, _ = fit_squared_hinge_ovr(train.x, train.y, 3, c=0.1)
    reference = LinearSVC(C=0.1, dual=False).fit(train.x, train.y)
    ours = (train.x @ coef + intercept).argmax(axis=1)
    assert np.mean(ours == reference.predict(train.x)) > 0.97


@pytest.mark.parametrize("kind", ["logreg", "svm"])
def test_linear_heads_round_trip_through_npz(tmp_path, kind):
    features = _feature_set()
    head = make_head(kind).fit(features)
    name = head.save(tmp_path / "head")
    loaded = type(head).load(tmp_path / "head", {"model_file": name, "hyperparameters": head.params_})
    x = features.splits["test"].x
    np.testing.assert_allclose(loaded.predict_proba(x), head.predict_proba(x), rtol=1e-6)


def test_linear_heads_need_a_validation_split():
    features = _feature_set()
    without_valid = FeatureSet(features.info, {"train": features.splits["train"]})
    with pytest.raises(HeadError, match="--valid-fraction"):
        LinearSVMHead().fit(without_valid)


def test_gap_dense_classic_recipe_keeps_best_validation_epoch(tmp_path):
    features = _feature_set(per_class=(100, 20, 20), shape=(2, 2, 16))
    head = make_head("gap-dense", "classic").fit(features)
    params = head.params_
    assert (params["epochs"], params["batch_size"], params["optimizer"], params["standardise"]) == (20, 20, "rmsprop", False)
    assert params["epochs_run"] == 20
    losses = [entry["valid_loss"] for entry in head.search_]
    assert params["best_epoch"] == int(np.argmin(losses)) + 1
    assert _accuracy(head, features.splits["test"]) > 0.8
    # the saved model takes full maps: GAP of a constant map equals the pooled row
    name = head.save(tmp_path / "head")
    loaded = type(head).load(tmp_path / "head", {"model_file": name, "hyperparameters": params})
    pooled = features.splits["test"].x
    maps = np.repeat(np.repeat(pooled[:, None, None, :], 2, axis=1), 2, axis=2)
    np.testing.assert_allclose(loaded.predict_proba(maps), head.predict_proba(pooled), rtol=1e-5, atol=1e-6)


def test_gap_dense_default_recipe_standardises_and_stops_early():
    clean = _feature_set(shape=(16,))
    head = make_head("gap-dense").fit(clean)
    assert head.params_["standardise"] and head.params_["optimizer"] == "adamw"
    assert head.model_.get_layer("standardise") is not None
    assert _accuracy(head, clean.splits["test"]) > 0.9
    valid = clean.splits["valid"]
    shuffled = SplitData(valid.x, np.random.default_rng(1).permutation(valid.y), valid.relpaths)
    misleading = FeatureSet(clean.info, {**clean.splits, "valid": shuffled})  # learning only hurts validation
    head = make_head("gap-dense").fit(misleading)
    assert head.params_["epochs_run"] == head.params_["best_epoch"] + head.params_["patience"] < 50


def test_unknown_head_and_misplaced_recipe_are_refused():
    with pytest.raises(ValueError, match="unknown head"):
        make_head("forest")
    with pytest.raises(ValueError, match="gap-dense only"):
        make_head("logreg", "classic")


def test_every_head_has_a_cli_name_and_description():
    from pipeline.head_names import HEAD_NAMES
    from pipeline.heads import HEAD_KINDS

    assert set(HEAD_NAMES) == set(HEAD_KINDS)


@pytest.mark.parametrize("kind", ["mlp", "knn"])
def test_extra_heads_fit_select_and_round_trip(tmp_path, kind):
    features = _feature_set()
    head = make_head(kind).fit(features)
    assert _accuracy(head, features.splits["test"]) > 0.9
    assert head.valid_probabilities_.shape == (50, 5)
    name = head.save(tmp_path / "head")
    loaded = type(head).load(tmp_path / "head", {"model_file": name, "hyperparameters": head.params_})
    x = features.splits["test"].x
    np.testing.assert_allclose(loaded.predict_proba(x), head.predict_proba(x), rtol=1e-3, atol=1e-4)


def test_knn_picks_k_on_validation():
    from pipeline.heads.knn import CosineKNNHead

    head = CosineKNNHead(k_grid=(1, 5, 500)).fit(_feature_set(noise=2))
    assert [entry["k"] for entry in head.search_] == [1, 5]  # k larger than the training set is skipped
    assert head.params_["k"] in (1, 5)
