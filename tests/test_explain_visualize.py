"""Ideal class images on a tiny random-weight VGG16 head: gradients, penalties, files, CLI contract."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from conftest import TINY_BACKBONE

from pipeline.errors import UsageError
from pipeline.explain.regularizers import l2_penalty, l2_penalty_tf, total_variation, total_variation_tf
from pipeline.explain.visualize import DEFAULT_TV

STEPS = 6


@pytest.fixture(scope="module")
def tiny_head(tmp_path_factory):
    """A logreg head and a k-NN head fitted on a tiny random-weight VGG16 cache: (cache dir, logreg, knn)."""
    from conftest import make_dataset

    from pipeline.extract.options import ExtractOptions
    from pipeline.extract.run import run_extract
    from pipeline.heads.fitting import fit_head

    root = tmp_path_factory.mktemp("visualize")
    dataset = make_dataset(root / "pets", classes=("cat", "dog", "fox"))
    cache_dir = root / "cache"
    cache = Path(run_extract(dataset, cache_dir, ExtractOptions(**TINY_BACKBONE, batch_size=8,
                                                                valid_fraction=0.3)).cache_path)
    return cache_dir, Path(fit_head(cache, "logreg").sidecar_path), Path(fit_head(cache, "knn").sidecar_path)


@pytest.fixture(scope="module")
def classifier(tiny_head):
    from pipeline.explain.classifier import load_classifier

    cache_dir, head, _ = tiny_head
    return load_classifier(head=head, cache_dir=cache_dir)


def test_total_variation_is_zero_when_flat_and_the_numpy_and_tensorflow_forms_agree():
    rng = np.random.default_rng(0)
    noise = rng.uniform(0, 255, (2, 12, 10, 3))
    assert total_variation(np.full((8, 8, 3), 77.0)) == 0.0
    assert total_variation(noise[0]) == pytest.approx(1 / 3, abs=0.03)  # uniform noise: E|a - b| = 1/3
    assert float(total_variation_tf(noise.astype(np.float32))[0]) == pytest.approx(total_variation(noise[0]), rel=1e-5)
    assert l2_penalty(np.full((4, 4, 3), 127.5)) == 0.0
    assert float(l2_penalty_tf(noise.astype(np.float32))[1]) == pytest.approx(l2_penalty(noise[1]), rel=1e-5)


@pytest.mark.parametrize("param", ["pixels", "fft"])
def test_a_parameterisation_starts_from_given_pixels_and_renders_in_range(param):
    from pipeline.explain.parameterization import make_image

    rng = np.random.default_rng(1)
    start = rng.uniform(10, 245, (16, 20, 3))
    image = make_image(param, (16, 20), rng, start)
    np.testing.assert_allclose(image.pixels(), start, atol=0.05)
    noise = make_image(param, (16, 20), rng).pixels()
    assert noise.shape == (16, 20, 3) and noise.min() >= 0 and noise.max() <= 255


def test_gradients_flow_through_preprocessing_and_match_finite_differences(classifier):
    import tensorflow as tf

    from pipeline.explain.visualize import class_score

    rng = np.random.default_rng(2)
    size = classifier.input_size
    pixels = tf.Variable(rng.uniform(60, 190, (1, size, size, 3)).astype(np.float32))
    with tf.GradientTape() as tape:
        score = class_score(classifier.model(pixels, training=False), 0, "logit")[0]
    gradient = tape.gradient(score, pixels).numpy()
    assert np.isfinite(gradient).all() and np.abs(gradient).max() > 0
    direction = gradient / np.linalg.norm(gradient)  # the steepest direction: the largest, clearest change
    step = 5.0  # pixel units over the whole image: far above float32 noise, small enough to stay nearly linear

    def scored(x):
        return float(class_score(classifier.model(tf.constant(x), training=False), 0, "logit")[0])

    numeric = (scored(pixels.numpy() + step * direction) - scored(pixels.numpy() - step * direction)) / (2 * step)
    assert numeric == pytest.approx(float(np.sum(gradient * direction)), rel=0.2)


def test_gradient_ascent_raises_the_class_score(classifier):
    from pipeline.explain.visualize import VisualizeSettings, ideal_image

    settings = VisualizeSettings(steps=1, jitter=0, scale_jitter=0, tv=0)
    first = ideal_image(classifier, 1, settings).final_score
    later = ideal_image(classifier, 1, VisualizeSettings(steps=STEPS * 3, jitter=0, scale_jitter=0, tv=0)).final_score
    assert later > first


def test_the_tv_term_lowers_total_variation(classifier):
    from pipeline.explain.visualize import VisualizeSettings, ideal_image

    settings = VisualizeSettings(steps=STEPS * 2, tv=50.0, seed=3)
    smooth = ideal_image(classifier, 0, settings).pixels
    rough = ideal_image(classifier, 0, settings, tv=0.0).pixels
    assert total_variation(smooth) < 0.8 * total_variation(rough)


def test_the_same_seed_gives_the_same_image_and_another_seed_another(classifier):
    from pipeline.explain.visualize import VisualizeSettings, ideal_image

    one = ideal_image(classifier, 2, VisualizeSettings(steps=2, seed=5)).pixels
    again = ideal_image(classifier, 2, VisualizeSettings(steps=2, seed=5)).pixels
    other = ideal_image(classifier, 2, VisualizeSettings(steps=2, seed=6)).pixels
    np.testing.assert_array_equal(one, again)
    assert not np.array_equal(one, other)


def test_multi_scale_stages_grow_to_the_requested_size_and_share_the_steps():
    from pipeline.explain.visualize import MIN_STAGE_SIZE, stage_sizes, stage_steps

    assert stage_sizes(224, 3) == [100, 149, 224]
    assert stage_sizes(32, 4)[0] == MIN_STAGE_SIZE
    assert stage_steps(10, 3) == [3, 3, 4] and sum(stage_steps(200, 3)) == 200


def test_bad_settings_are_refused_with_the_value():
    from pipeline.explain.visualize import VisualizeSettings

    with pytest.raises(UsageError, match="--steps"):
        VisualizeSettings(steps=0)
    with pytest.raises(UsageError, match="--param 'wavelet'"):
        VisualizeSettings(param="wavelet")


def test_cli_writes_both_images_the_figure_and_a_sidecar_judged_on_the_saved_png(cli, tiny_head, tmp_path):
    from PIL import Image

    from pipeline.explain.classifier import load_classifier

    cache_dir, head, _ = tiny_head
    payload, _ = cli.json(["visualize", head, "--class", "dog", "--steps", STEPS, "--seed", 1, "--out", tmp_path,
                           "--cache-dir", cache_dir])
    folder = Path(payload["result_dir"])
    assert sorted(p.name for p in folder.iterdir()) == ["ideal-no-tv.png", "ideal.png", "result.json",
                                                        "side-by-side.png"]
    sidecar = json.loads((folder / "result.json").read_text())
    assert sidecar["images"][0] == "side-by-side.png" and sidecar["settings"]["seed"] == 1
    assert sidecar["settings"]["steps"] == STEPS and sidecar["classifier"]["kind"] == "head"
    assert "p(dog)" in sidecar["summary"]
    classifier = load_classifier(head=head, cache_dir=cache_dir)
    for image in payload["images"]:
        pixels = np.asarray(Image.open(folder / image["file"]).convert("RGB"), dtype=np.float32)
        expected = classifier.probabilities(pixels[None])[0][classifier.class_index("dog")]
        assert image["probability"] == pytest.approx(expected, abs=1e-6)
    assert [i["tv_weight"] for i in payload["images"]] == [DEFAULT_TV["fft"], 0.0]


def test_cli_tv_zero_or_no_compare_runs_once(cli, tiny_head, tmp_path):
    cache_dir, head, _ = tiny_head
    payload, _ = cli.json(["visualize", head, "--class", "cat", "--steps", 2, "--tv", 0, "--out", tmp_path,
                           "--cache-dir", cache_dir])
    assert [i["file"] for i in payload["images"]] == ["ideal.png"]
    payload, _ = cli.json(["visualize", head, "--class", "cat", "--steps", 2, "--no-compare-tv", "--out", tmp_path,
                           "--cache-dir", cache_dir])
    assert len(payload["images"]) == 1


def test_cli_classes_all_draws_a_grid_and_other_sizes_are_saved_at_that_size(cli, tiny_head, tmp_path):
    from PIL import Image

    cache_dir, head, _ = tiny_head
    payload, _ = cli.json(["visualize", head, "--classes", "all", "--steps", 2, "--size", 48, "--scales", 2,
                           "--param", "fft", "--out", tmp_path, "--cache-dir", cache_dir])
    folder = Path(payload["result_dir"])
    assert (folder / "grid.png").is_file()
    names = [i["file"] for i in payload["images"]]
    assert names == ["ideal-0-cat.png", "ideal-0-cat-no-tv.png", "ideal-1-dog.png", "ideal-1-dog-no-tv.png",
                     "ideal-2-fox.png", "ideal-2-fox-no-tv.png"]
    assert Image.open(folder / names[0]).size == (48, 48)


def test_cli_starts_from_an_image(cli, tiny_head, tiny_dataset, tmp_path):
    cache_dir, head, _ = tiny_head
    photo = sorted((tiny_dataset / "test").rglob("*.jpg"))[0]
    payload, _ = cli.json(["visualize", head, "--class", "cat", "--steps", 1, "--start", photo, "--no-compare-tv",
                           "--out", tmp_path, "--cache-dir", cache_dir])
    assert json.loads((Path(payload["result_dir"]) / "result.json").read_text())["settings"]["start"] == str(photo)


def test_cli_refuses_knn_with_the_reason(cli, tiny_head, tmp_path):
    cache_dir, _, knn = tiny_head
    payload, result = cli.json(["visualize", knn, "--class", "cat", "--steps", 1, "--out", tmp_path,
                                "--cache-dir", cache_dir], expect_ok=False)
    assert result.exit_code == 1 and "vote among stored neighbours" in payload["error"]


def test_cli_unknown_class_and_missing_class_are_usage_errors(cli, tiny_head, tmp_path):
    cache_dir, head, _ = tiny_head
    payload, result = cli.json(["visualize", head, "--class", "dgo", "--out", tmp_path, "--cache-dir", cache_dir],
                               expect_ok=False)
    assert result.exit_code == 2 and "did you mean 'dog'" in payload["error"]
    payload, result = cli.json(["visualize", head, "--out", tmp_path, "--cache-dir", cache_dir], expect_ok=False)
    assert result.exit_code == 2 and "--class NAME" in payload["error"]


def test_classes_all_refuses_a_large_classifier(classifier):
    from dataclasses import replace

    from pipeline.explain.visualize_run import MAX_GRID_CLASSES, resolve_classes

    large = replace(classifier, class_names=[f"c{i}" for i in range(MAX_GRID_CLASSES + 1)])
    with pytest.raises(UsageError, match="--class NAME"):
        resolve_classes(large, None, "all")


def test_class_names_match_exactly_case_insensitively_or_by_one_synonym(classifier):
    from dataclasses import replace

    names = ["tabby, tabby cat", "tiger cat", "golden retriever", "cat, domestic"]
    imagenet_like = replace(classifier, class_names=names)
    assert imagenet_like.class_index("Golden Retriever") == 2
    assert imagenet_like.class_index("tabby") == 0 and imagenet_like.class_index("tabby cat") == 0
    assert imagenet_like.class_index("cat") == 3
    with pytest.raises(UsageError, match="did you mean"):
        imagenet_like.class_index("tiger kat")


def test_the_score_uses_the_heads_logits_and_the_model_is_restored_after(classifier):
    from pipeline.explain.visualize import class_score, logits_output

    pixels = np.random.default_rng(4).uniform(0, 255, (2, classifier.input_size, classifier.input_size, 3))
    probabilities = classifier.probabilities(pixels)
    with logits_output(classifier.model) as found:
        logits = np.asarray(classifier.model(pixels.astype(np.float32), training=False), dtype=np.float64)
    assert found
    softmax = np.exp(logits - logits.max(axis=1, keepdims=True))
    np.testing.assert_allclose(softmax / softmax.sum(axis=1, keepdims=True), probabilities, atol=1e-5)
    np.testing.assert_array_equal(classifier.probabilities(pixels), probabilities)  # softmax back in place
    expected = logits[:, 1] - logits.mean(axis=1)  # the logit objective: the class's logit minus the mean logit
    np.testing.assert_allclose(np.asarray(class_score(logits, 1, "logit", logits=True)), expected, rtol=1e-5)


def test_results_beside_a_head_show_in_the_html_reports_visuals(cli, tiny_head):
    from pipeline.report.content import visuals

    cache_dir, head, _ = tiny_head
    payload, _ = cli.json(["visualize", head, "--class", "fox", "--steps", 1, "--no-compare-tv",
                           "--cache-dir", cache_dir])
    assert Path(payload["result_dir"]).parent == head.parent / "explain"
    cache = next(cache_dir.glob("*.h5"))
    shown = [v for v in visuals(cache) if "'fox'" in v["title"]]
    assert len(shown) == 1 and "p(fox)" in shown[0]["summary"]
    assert len(shown[0]["images"]) == 1, "the figure alone: it already shows the ideal image, which is not repeated"
