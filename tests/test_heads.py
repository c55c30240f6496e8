"""Heads on small synthetic features: selection on validation, save/load, honesty rules."""

from types import SimpleNamespace

import numpy as np
import pytest
from samples import feature_set

from pipeline.cache.provenance import DatasetInfo
from pipeline.errors import HeadError
from pipeline.heads.features import FeatureSet, SplitData
from pipeline.heads.kinds.linear import LinearSVMHead, LogisticRegressionHead
from pipeline.heads.kinds.svm_solver import fit_squared_hinge_ovr
from pipeline.heads.record import HeadRecord
from pipeline.heads.registry import make_head


def _accuracy(head, data):
    return float(np.mean(head.predict_proba(data.x).argmax(axis=1) == data.y))


def _documented_choice(search: list[dict]) -> float:
    """The C the module doc promises: best valid top-1, then among those tied on it the smallest C whose
    valid log loss is within one standard error of the lowest (written out here, not imported)."""
    top = max(entry["valid_top1"] for entry in search)
    tied = [entry for entry in search if entry["valid_top1"] == top]
    lowest = min(tied, key=lambda entry: entry["valid_log_loss"])
    bound = lowest["valid_log_loss"] + lowest["valid_log_loss_se"]
    return min(entry["C"] for entry in tied if entry["valid_log_loss"] <= bound)


@pytest.mark.parametrize("kind", ["logreg", "svm"])
def test_linear_heads_choose_c_on_validation_and_refit(kind):
    features = feature_set()
    head = make_head(kind).fit(features)
    assert head.params_["C"] in head.params_["grid"]
    assert head.params_["refit_on"] == "train+valid"
    assert head.params_["C"] == _documented_choice(head.search_)
    assert _accuracy(head, features.splits["test"]) > 0.9
    probabilities = head.predict_proba(features.splits["test"].x)
    np.testing.assert_allclose(probabilities.sum(axis=1), 1.0, rtol=1e-5)
    assert head.valid_probabilities_.shape == (50, 5)


def test_the_fitted_c_follows_the_one_standard_error_rule_where_argmax_would_not():
    """A planted search (a fixed solver, so the choice is what is tested): every C is perfect on validation and
    the log loss falls with C by less than one standard error, so argmax(top-1, -loss) takes the largest C and
    the documented rule a smaller one."""
    sharpness = {0.01: 0.30, 0.1: 0.31, 1.0: 0.32}

    class Planted(LogisticRegressionHead):
        def _fit_one(self, x, y, classes, c, initial):
            direction = x[y == 1].mean(axis=0) - x[y == 0].mean(axis=0)
            return np.stack([-direction, direction], axis=1) * sharpness[c] / 2, np.zeros(2), 1

    head = Planted(c_grid=tuple(sharpness)).fit(feature_set(classes=2))
    assert [entry["valid_top1"] for entry in head.search_] == [1.0, 1.0, 1.0]
    by_argmax = max(head.search_, key=lambda entry: (entry["valid_top1"], -entry["valid_log_loss"]))["C"]
    assert by_argmax == 1.0
    assert head.params_["C"] == _documented_choice(head.search_) == 0.1


def test_search_stops_after_patience_misses():
    noisy = feature_set(noise=4, per_class=(15, 30, 10), dims=32)
    head = LogisticRegressionHead(c_grid=np.logspace(-6, 3, 19), patience=2).fit(noisy)
    assert len(head.search_) < 19
    best = max(range(len(head.search_)),
               key=lambda i: (head.search_[i]["valid_top1"], -head.search_[i]["valid_log_loss"]))
    assert len(head.search_) == best + 1 + 2  # stopped two misses after the best


def test_binary_logreg_matches_sklearn_probabilities():
    from sklearn.linear_model import LogisticRegression

    features = feature_set(classes=2)
    head = LogisticRegressionHead(c_grid=[0.5]).fit(features)
    train, valid = features.splits["train"], features.splits["valid"]
    x = np.concatenate([train.x, valid.x])
    reference = LogisticRegression(C=0.5, max_iter=1000).fit(head.scaler_.transform(x),
                                                             np.concatenate([train.y, valid.y]))
    test_x = head.scaler_.transform(features.splits["test"].x)
    np.testing.assert_allclose(head.predict_proba(features.splits["test"].x), reference.predict_proba(test_x),
                               atol=1e-3)


def test_svm_solver_matches_liblinear_objective_on_separable_data():
    from sklearn.svm import LinearSVC

    features = feature_set(classes=3, noise=0.5)
    train = features.splits["train"]
    coef, intercept, _ = fit_squared_hinge_ovr(train.x, train.y, 3, c=0.1)
    reference = LinearSVC(C=0.1, dual=False).fit(train.x, train.y)
    ours = (train.x @ coef + intercept).argmax(axis=1)
    assert np.mean(ours == reference.predict(train.x)) > 0.97


@pytest.mark.parametrize("kind", ["logreg", "svm"])
def test_linear_heads_round_trip_through_npz(tmp_path, kind):
    features = feature_set()
    head = make_head(kind).fit(features)
    name = head.save(tmp_path / "head")
    record = HeadRecord(head.kind, (), "key", model_file=name, hyperparameters=head.params_)
    loaded = type(head).load(tmp_path / "head", record)
    x = features.splits["test"].x
    np.testing.assert_allclose(loaded.predict_proba(x), head.predict_proba(x), rtol=1e-6)


def test_linear_heads_need_a_validation_split():
    features = feature_set()
    without_valid = FeatureSet(features.info, {"train": features.splits["train"]})
    with pytest.raises(HeadError, match="--valid-fraction"):
        LinearSVMHead().fit(without_valid)


def test_gap_dense_classic_recipe_keeps_best_validation_epoch(tmp_path):
    features = feature_set(per_class=(100, 20, 20), shape=(2, 2, 16))
    head = make_head("gap-dense", "classic").fit(features)
    params = head.params_
    assert ((params["epochs"], params["batch_size"], params["optimizer"], params["standardise"])
            == (20, 20, "rmsprop", False))
    assert params["epochs_run"] == 20
    losses = [entry["valid_loss"] for entry in head.search_]
    assert params["best_epoch"] == int(np.argmin(losses)) + 1
    assert _accuracy(head, features.splits["test"]) > 0.8
    # the saved model takes full maps: GAP of a constant map equals the pooled row
    name = head.save(tmp_path / "head")
    record = HeadRecord(head.kind, (), "key", model_file=name, hyperparameters=params)
    loaded = type(head).load(tmp_path / "head", record)
    pooled = features.splits["test"].x
    maps = np.repeat(np.repeat(pooled[:, None, None, :], 2, axis=1), 2, axis=2)
    np.testing.assert_allclose(loaded.predict_proba(maps), head.predict_proba(pooled), rtol=1e-5, atol=1e-6)


def test_gap_dense_default_recipe_standardises_and_stops_early():
    clean = feature_set(shape=(16,))
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
    from pipeline.heads.registry import HEADS

    for kind, entry in HEADS.items():
        assert entry.head_class().kind == kind and entry.help


@pytest.mark.parametrize("kind", ["mlp", "knn"])
def test_extra_heads_fit_select_and_round_trip(tmp_path, kind):
    features = feature_set()
    head = make_head(kind).fit(features)
    assert _accuracy(head, features.splits["test"]) > 0.9
    assert head.valid_probabilities_.shape == (50, 5)
    name = head.save(tmp_path / "head")
    record = HeadRecord(head.kind, (), "key", model_file=name, hyperparameters=head.params_)
    loaded = type(head).load(tmp_path / "head", record)
    x = features.splits["test"].x
    np.testing.assert_allclose(loaded.predict_proba(x), head.predict_proba(x), rtol=1e-3, atol=1e-4)


def test_knn_picks_k_on_validation():
    from pipeline.heads.kinds.knn import CosineKNNHead

    head = CosineKNNHead(k_grid=(1, 5, 500)).fit(feature_set(noise=2))
    assert [entry["k"] for entry in head.search_] == [1, 5]  # k larger than the training set is skipped
    assert head.params_["k"] in (1, 5)


def _one_class_in_train(classes=3):
    """Class 0 alone in train; the other classes only in valid/test."""
    features = feature_set(classes=classes)
    train = features.splits["train"]
    keep = train.y == 0
    only_zero = SplitData(train.x[keep], train.y[keep], tuple(np.array(train.relpaths)[keep]))
    return FeatureSet(features.info, {**features.splits, "train": only_zero})


@pytest.mark.parametrize("kind", ["logreg", "svm", "knn", "mlp", "gap-dense"])
def test_every_head_refuses_a_one_class_cache_before_fitting(kind):
    features = feature_set(classes=1)
    with pytest.raises(HeadError, match=r"only one class \('c0'\).*at least 2 classes.*folder.*re-run extract"):
        make_head(kind).fit(features)


@pytest.mark.parametrize("kind", ["logreg", "svm", "knn", "mlp", "gap-dense"])
def test_every_head_refuses_a_train_split_with_one_class(kind):
    with pytest.raises(HeadError, match=r"train split .* only one class \(c0\).*c1: 10 valid, 10 test"):
        make_head(kind).fit(_one_class_in_train())


def test_two_classes_in_train_are_enough():
    features = feature_set(classes=3)
    train = features.splits["train"]
    keep = train.y < 2  # class c2 has no training images: unusual but still a classifier
    features = FeatureSet(features.info, {**features.splits, "train": SplitData(train.x[keep], train.y[keep],
                                                                                 train.relpaths[:int(keep.sum())])})
    test = features.splits["test"]
    seen = test.y < 2
    refit = make_head("logreg").fit(features).predict_proba(test.x)
    assert refit.shape == (len(test.y), 3), "every class keeps its column"
    assert np.mean(refit[seen].argmax(axis=1) == test.y[seen]) > 0.9
    train_only = LogisticRegressionHead(refit_on_valid=False).fit(features).predict_proba(test.x)
    assert train_only[:, 2].max() < 1e-6, "a class absent from the data fitted on is never predicted"
    assert np.mean(train_only[seen].argmax(axis=1) == test.y[seen]) > 0.9


def _cache_like(index):
    """A FeatureSet over `index` (splits assigned) carrying what a cache stores: images view, notes, carving."""
    from pipeline.cache.format import CachedImages

    records = index.records
    labels = np.array([r.label for r in records])
    splits = np.array([r.split for r in records])
    x = np.random.default_rng(0).normal(size=(len(records), 4)).astype(np.float32)
    images = CachedImages(relpath=tuple(r.relpath for r in records), label=labels, split=splits,
                          sha256=np.array([r.sha256 for r in records], dtype="S64"),
                          row=np.arange(len(records)), size=np.zeros(len(records)),
                          mtime_ns=np.zeros(len(records)))
    info = SimpleNamespace(class_names=index.class_names, feature_shape=(4,), images=images,
                           dataset=DatasetInfo(name=None, root=None, layout=None, notes=tuple(index.notes),
                                               carving=index.carving), carving=index.carving)
    data = {s: SplitData(x[splits == s], labels[splits == s], ()) for s in ("train", "valid", "test")
            if np.any(splits == s)}
    return FeatureSet(info, data)


def _unsplit_index(per_class, classes, start):
    import hashlib
    from pathlib import Path

    from pipeline.data.dataset import DatasetIndex, ImageRecord

    records = tuple(ImageRecord(relpath=f"{i}.jpg", label=i % len(classes),
                                sha256=hashlib.sha256(str(i).encode()).hexdigest())
                    for i in range(start, start + per_class * len(classes)))
    return DatasetIndex(root=Path("/data"), layout="generic", class_names=classes, records=records)


@pytest.mark.parametrize("valid_fraction, test_fraction", [(0.15, 0.15), (0.05, 0.125), (0.0, 0.15)])
def test_empty_validation_message_suggests_a_fraction_that_works(valid_fraction, test_fraction):
    import re

    from pipeline.data.splits import assign_splits

    classes, checked = ("a", "b", "c"), 0
    for start in range(0, 3000, 15):
        index = assign_splits(_unsplit_index(5, classes, start), valid_fraction, test_fraction)
        if any(r.split == "valid" for r in index.records):
            continue
        features = _cache_like(index)
        with pytest.raises(HeadError) as caught:
            LinearSVMHead().fit(features)
        message = str(caught.value)
        train = features.splits["train"]
        assert "validation split of this cache is empty" in message
        assert f"only {len(train)} training images" in message or f"{len(train)} training images" in message
        for c, name in enumerate(classes):
            assert f"{name} {int(np.sum(train.y == c))}" in message
        assert "--valid-fraction 0.15 (or" not in message  # the old advice: already the default
        assert "{" not in message
        suggested = re.search(r"--valid-fraction (\d\.\d\d) \(replaying", message)
        if suggested is None:
            assert "no --valid-fraction gives every class a validation image" in message
            continue
        again = assign_splits(_unsplit_index(5, classes, start), float(suggested.group(1)), test_fraction)
        for c in range(len(classes)):
            got = {r.split for r in again.records if r.label == c}
            assert {"train", "valid"} <= got, (start, suggested.group(1), c)
        checked += 1
    assert checked >= 3


def test_empty_validation_message_without_split_notes_still_explains():
    features = feature_set(classes=2, per_class=(4, 0, 3))
    features = FeatureSet(features.info, {s: d for s, d in features.splits.items() if len(d)})
    with pytest.raises(HeadError, match=r"knn chooses k .* validation split of this cache is empty: .* 8 training "
                                        r"images \(c0 4, c1 4\).*--valid-fraction 0\.25 \(one validation image"):
        make_head("knn").fit(features)


def test_c_ties_go_to_the_smallest_c_within_one_standard_error():
    from pipeline.heads.kinds.linear import _one_standard_error_choice

    def candidate(c, top1, loss, se):
        return {"C": c, "valid_top1": top1, "valid_log_loss": loss, "valid_log_loss_se": se}

    candidates = [candidate(0.01, 0.90, 0.20, 0.05), candidate(0.1, 0.95, 0.30, 0.02),
                  candidate(1.0, 0.95, 0.285, 0.02), candidate(10.0, 0.95, 0.28, 0.02)]
    assert _one_standard_error_choice(candidates)["C"] == 0.1, "0.30 <= 0.28 + 0.02: the simplest tied model"
    candidates[1]["valid_log_loss"] = 0.31
    assert _one_standard_error_choice(candidates)["C"] == 1.0, "0.31 is beyond one standard error of 0.28"
    assert _one_standard_error_choice(candidates[:1])["C"] == 0.01
