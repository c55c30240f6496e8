"""Test-time augmentation from cached views (`fit-head --tta`, `pipeline.heads.tta`).

TTA scores are the mean of the head's per-view probabilities (checked by hand), by the same models
as the plain scores (the model selected on validation scores valid); the plain view-0 scores do
not move; a cache without views is refused before fitting; sidecar, leaderboard and `report` carry
both; "mild" reads each view's crop area from the same random draw the rendering used.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from conftest import TINY_BACKBONE, TINY_CLI_ARGS

from pipeline.cache.format import read_cache_info
from pipeline.cache.rows import load_rows
from pipeline.data.images import ResizeSpec
from pipeline.errors import HeadError, UsageError
from pipeline.extract.options import ExtractOptions
from pipeline.extract.run import run_extract

VIEWS = 2


@pytest.fixture
def views_cache(tiny_dataset, tmp_path) -> Path:
    options = ExtractOptions(**TINY_BACKBONE, batch_size=8, valid_fraction=0.3, views=VIEWS)
    return Path(run_extract(tiny_dataset, tmp_path / "cache", options).cache_path)


def test_tta_probabilities_are_the_mean_over_the_selected_views_by_hand():
    from pipeline.heads.tta import average_over_views

    # Rows are their own "probabilities": predict is the identity, so the mean can be checked by hand.
    x_views = np.array([[[0.9, 0.1], [0.3, 0.7], [0.6, 0.4]],
                        [[0.2, 0.8], [0.4, 0.6], [1.0, 0.0]]])
    every = average_over_views(lambda rows: rows, x_views, np.ones((2, 3), dtype=bool))
    np.testing.assert_allclose(every, [[0.6, 0.4], [1.6 / 3, 1.4 / 3]], atol=1e-12)
    some = average_over_views(lambda rows: rows, x_views, np.array([[True, False, True], [False, True, False]]))
    np.testing.assert_allclose(some, [[0.75, 0.25], [0.4, 0.6]], atol=1e-12)
    with pytest.raises(HeadError, match="at least one view"):
        average_over_views(lambda rows: rows, x_views, np.array([[True, False, False], [False, False, False]]))


def test_tta_scores_average_the_heads_own_per_view_probabilities(views_cache):
    from pipeline.heads.features import load_feature_set
    from pipeline.heads.fitting import fit_on_features
    from pipeline.heads.metrics import classification_metrics
    from pipeline.heads.tta import tta_scores

    features = load_feature_set(views_cache)
    fitted = fit_on_features(features, "logreg")
    head = fitted.head
    # The model selected on validation, kept beside the refit one, is what scored valid.
    np.testing.assert_allclose(head.selected_model_.predict_proba(features.split("valid").x),
                               head.valid_probabilities_, rtol=1e-6)
    scores = tta_scores(head, features, "all")
    images = read_cache_info(views_cache).images
    for split, model in (("valid", head.selected_model_), ("test", head)):
        rows = images.view_rows[images.in_split(split)]  # (images, K + 1), view 0 first
        per_view = [model.predict_proba(load_rows(views_cache, rows[:, view])) for view in range(VIEWS + 1)]
        expected = sum(p.astype(np.float64) for p in per_view) / (VIEWS + 1)
        np.testing.assert_allclose(scores.probabilities[split], expected, rtol=1e-5, atol=1e-9)  # float32 BLAS
        assert scores.metrics[split] == classification_metrics(features.split(split).y, expected,
                                                               features.class_names)
    assert scores.views_per_image == VIEWS + 1 and scores.view_set == "all"
    only_plain = tta_scores(head, features, (0,))  # view 0 alone is the plain score
    _assert_same_scores(only_plain.metrics["test"], fitted.metrics["test"])
    np.testing.assert_allclose(only_plain.probabilities["valid"], head.valid_probabilities_, rtol=1e-6)


def _assert_same_scores(metrics: dict, expected: dict) -> None:
    """Equal classification scores (log loss to float32 rounding: the rows go through BLAS in other batches)."""
    assert {k: v for k, v in metrics.items() if k != "log_loss"} == {k: v for k, v in expected.items()
                                                                     if k != "log_loss"}
    assert metrics["log_loss"] == pytest.approx(expected["log_loss"], rel=1e-5, abs=1e-9)


def test_fit_head_tta_leaves_the_plain_scores_and_records_both(views_cache, cli, tmp_path):
    from pipeline.heads.fitting import fit_head
    from pipeline.heads.store import read_sidecar
    from pipeline.report.leaderboard import leaderboard, notes

    plain = fit_head(views_cache, "logreg")
    with_tta = fit_head(views_cache, "logreg", tta="all")
    assert with_tta.metrics == plain.metrics and plain.tta is None
    assert set(with_tta.tta["metrics"]) == {"valid", "test"} and with_tta.tta["views_per_image"] == VIEWS + 1
    sidecar = read_sidecar(Path(with_tta.sidecar_path))
    assert sidecar.metrics == with_tta.metrics and sidecar.tta["metrics"] == with_tta.tta["metrics"]
    assert read_sidecar(Path(plain.sidecar_path)).tta is None
    rows = {row["name"]: row for row in leaderboard(views_cache)}
    row = rows[sidecar.name]
    assert row["test_top1_tta"] == with_tta.tta["metrics"]["test"]["top1"]
    assert row["valid_top1"] == with_tta.metrics["valid"]["top1"]
    assert [line for line in notes(list(rows.values())) if "test-time augmentation" in line] == [
        f"{sidecar.name}: test-time augmentation over 3 views per image (all): valid "
        f"{row['valid_top1_tta']:.3f}, test {row['test_top1_tta']:.3f}, test per-class "
        f"{row['test_mean_per_class_accuracy_tta']:.3f}"]
    printed = cli(["fit-head", views_cache, "--head", "logreg", "--tta"])
    assert printed.exit_code == 0 and "TTA    mean over 3 views per image (view set all):" in printed.stdout
    report = cli(["report", views_cache, "--html", tmp_path / "report.html"])
    assert report.exit_code == 0 and "test-time augmentation over 3 views per image" in report.stdout
    page = (tmp_path / "report.html").read_text()
    assert page.count("Test-time augmentation: mean of the probabilities over 3 cached views per image") == 2
    payload, _ = cli.json(["fit-head", views_cache, "--head", "logreg", "--tta", "0,2"])
    assert payload["tta"]["view_set"] == "0,2" and payload["tta"]["views_per_image"] == 2


def test_tta_is_refused_on_a_cache_without_views(tiny_dataset, tmp_path, cli):
    from pipeline.heads.store import heads_dir_of

    extracted, _ = cli.json(["extract", tiny_dataset, *TINY_CLI_ARGS, "--cache-dir", tmp_path / "c"])
    result = cli(["fit-head", extracted["cache_path"], "--head", "logreg", "--tta"])
    assert result.exit_code == 1 and "--views K" in result.stderr and "has none" in result.stderr
    heads = heads_dir_of(Path(extracted["cache_path"]))
    assert not heads.exists() or not list(heads.iterdir()), "nothing is fitted or saved before the refusal"


def test_bad_view_sets_are_usage_errors(views_cache, cli):
    from pipeline.heads.features import load_feature_set
    from pipeline.heads.fitting import fit_on_features
    from pipeline.heads.tta import parse_view_set, tta_scores

    assert parse_view_set("mild") == "mild" and parse_view_set("0,3") == (0, 3)
    for text in ("bogus", "0,0", "-1", ""):
        with pytest.raises(UsageError, match="view set"):
            parse_view_set(text)
    result = cli(["fit-head", views_cache, "--head", "logreg", "--tta", "flips"])
    assert result.exit_code == 2 and "flips" in result.stderr
    result = cli(["fit-head", views_cache, views_cache, "--head", "logreg", "--tta"])
    assert result.exit_code == 2 and "one cache" in result.stderr
    features = load_feature_set(views_cache)
    with pytest.raises(HeadError, match="--views 5"):
        tta_scores(fit_on_features(features, "logreg").head, features, (0, 5))


def test_a_loaded_refit_head_cannot_score_validation_views(views_cache):
    from pipeline.heads.features import load_feature_set
    from pipeline.heads.fitting import fit_head
    from pipeline.heads.store import load_head
    from pipeline.heads.tta import tta_scores

    report = fit_head(views_cache, "logreg")
    head, _ = load_head(Path(report.sidecar_path))
    features = load_feature_set(views_cache)
    with pytest.raises(HeadError, match="refit on train"):
        tta_scores(head, features, "all")
    assert tta_scores(head, features, "all", splits=("test",)).metrics["test"]["top1"] >= 0


def test_mild_keeps_view_zero_and_the_crops_that_kept_most_of_the_image(views_cache, tmp_path, monkeypatch):
    from pipeline.data import views as views_module
    from pipeline.heads.features import load_feature_set
    from pipeline.heads.tta import MILD_CROP_AREA, crop_area_of, view_mask

    features = load_feature_set(views_cache)
    spec = features.info.views
    # crop_area_of replays the first draws of render_view: the crop it cut has that share of the area.
    image = views_module.Image.new("RGB", (400, 300))
    cuts = []
    monkeypatch.setattr(views_module, "fit_to_size", lambda crop, resize: cuts.append(crop.size) or crop)
    for view in range(1, 9):
        views_module.render_view(image, ResizeSpec(32, 32), spec,
                                 views_module.view_generator(spec, "ab" * 32, view))
        width, height = cuts[-1]
        assert abs(width * height / (400 * 300) - crop_area_of(spec, "ab" * 32, view)) < 0.01
    views, mask = view_mask(features, "test", "mild")
    shas = features.info.images.sha256[features.info.images.in_split("test")]
    assert views == tuple(range(VIEWS + 1)) and mask[:, 0].all()
    expected = [[crop_area_of(spec, sha, view) >= MILD_CROP_AREA for view in range(1, VIEWS + 1)] for sha in shas]
    np.testing.assert_array_equal(mask[:, 1:], expected)


def test_train_views_plain_keeps_view_zero_only(views_cache, tiny_dataset, tmp_path):
    from pipeline.heads.features import load_feature_set

    with_views = load_feature_set(views_cache, train_views="plain")
    plain_cache = run_extract(tiny_dataset, tmp_path / "plain", ExtractOptions(**TINY_BACKBONE, batch_size=8,
                                                                             valid_fraction=0.3)).cache_path
    plain = load_feature_set(plain_cache)
    assert with_views.train_views == 1 and with_views.views_note() is None
    for split in ("train", "valid", "test"):
        np.testing.assert_array_equal(with_views.split(split).x, plain.split(split).x)
        np.testing.assert_array_equal(with_views.split(split).y, plain.split(split).y)
    with pytest.raises(UsageError, match="train views"):
        load_feature_set(views_cache, train_views="half")


def test_validation_model_of_every_refit_head_scored_validation(views_cache):
    from pipeline.heads.features import load_feature_set
    from pipeline.heads.fitting import fit_on_features
    from pipeline.heads.kinds.base import validation_model

    features = load_feature_set(views_cache)
    for kind in ("svm", "knn"):
        head = fit_on_features(features, kind).head
        assert validation_model(head) is head.selected_model_
        np.testing.assert_allclose(validation_model(head).predict_proba(features.split("valid").x),
                                   head.valid_probabilities_, rtol=1e-6)



def _probability_rows(results: list[dict], class_names) -> np.ndarray:
    rows = np.zeros((len(results), len(class_names)))
    for i, result in enumerate(results):
        for prediction in result["predictions"]:
            rows[i, list(class_names).index(prediction["label"])] = prediction["probability"]
    return rows


@pytest.mark.parametrize("view_set", ["all", "mild", (0, 2)])
def test_a_tta_head_predicts_on_the_mean_over_the_views_it_was_scored_on(views_cache, view_set, cli):
    from pipeline.heads.features import load_feature_set
    from pipeline.heads.fitting import fit_head
    from pipeline.heads.store import load_head, read_sidecar
    from pipeline.heads.tta import head_tta, tta_scores, view_mask
    from pipeline.predict.with_head import predict_images

    report = fit_head(views_cache, "logreg", tta=view_set)
    record = read_sidecar(Path(report.sidecar_path))
    expected_views = [0, 2] if view_set == (0, 2) else list(range(VIEWS + 1))
    assert json.loads(Path(report.sidecar_path).read_text())["tta_views"] == expected_views
    assert head_tta(record).views == tuple(expected_views) and head_tta(record).mild == (view_set == "mild")
    assert head_tta(read_sidecar(Path(fit_head(views_cache, "logreg").sidecar_path))) is None
    damaged = Path(report.sidecar_path).with_name("damaged.json")
    damaged.write_text(json.dumps({**json.loads(Path(report.sidecar_path).read_text()), "tta_views": ["0", 1]}))
    with pytest.raises(HeadError, match="tta_views should be view indices"):
        read_sidecar(damaged)
    damaged.unlink()
    features = load_feature_set(views_cache)
    test = features.split("test")
    photos = [features.info.data_root / relpath for relpath in test.relpaths]
    head, _ = load_head(Path(report.sidecar_path))
    scored = tta_scores(head, features, view_set, splits=("test",))  # what fit-head reported on cached rows
    classes = features.class_names
    with_tta = predict_images(photos, Path(report.sidecar_path), views_cache.parent, top_k=len(classes))
    np.testing.assert_allclose(_probability_rows(with_tta, classes), scored.probabilities["test"], atol=1e-5)
    _, mask = view_mask(features, "test", view_set)
    assert [r["views_averaged"] for r in with_tta] == mask.sum(axis=1).tolist()
    plain = predict_images(photos, Path(report.sidecar_path), views_cache.parent, top_k=len(classes), tta=False)
    np.testing.assert_allclose(_probability_rows(plain, classes), head.predict_proba(test.x), atol=1e-5)
    assert all("views_averaged" not in r for r in plain)
    assert not np.allclose(_probability_rows(plain, classes), _probability_rows(with_tta, classes), atol=1e-4)
    printed = cli(["predict", photos[0], "--head", report.sidecar_path, "--cache-dir", views_cache.parent])
    assert printed.exit_code == 0 and "Test-time augmentation: the mean of the head's probabilities over views " \
        f"{','.join(map(str, expected_views))}" in printed.stdout
    payload, _ = cli.json(["predict", photos[0], "--head", report.sidecar_path, "--no-tta",
                           "--cache-dir", views_cache.parent])
    assert payload["tta_views"] is None and "views_averaged" not in payload["results"][0]
    result = cli(["predict", photos[0], "--imagenet", "--no-tta"])
    assert result.exit_code == 2 and "--no-tta" in result.stderr


def test_a_tta_head_exports_its_plain_model_and_says_so(views_cache, cli, tmp_path):
    from pipeline.export.formats import labels_path_of
    from pipeline.heads.fitting import fit_head

    report = fit_head(views_cache, "logreg", tta="all")
    printed = cli(["export", report.sidecar_path, tmp_path / "model.keras", "--format", "keras",
                   "--cache-dir", views_cache.parent])
    assert printed.exit_code == 0, printed.output
    assert "note      the head was scored with test-time augmentation (the mean over views 0,1,2" in printed.stdout
    assert "verified against `predict --no-tta`" in printed.stdout
    labels = json.loads(labels_path_of(tmp_path / "model.keras").read_text())
    assert "sha256" in labels["tta_not_exported"] and labels["verification"]["passed"]
    plain = fit_head(views_cache, "logreg")
    payload, _ = cli.json(["export", plain.sidecar_path, tmp_path / "plain.keras", "--format", "keras",
                           "--cache-dir", views_cache.parent])
    assert payload["notes"] == [] and "tta_not_exported" not in json.loads(
        labels_path_of(tmp_path / "plain.keras").read_text())
