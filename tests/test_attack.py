"""`attack`: PGD in pixel space on tiny backbones (random VGG16 at 32 px), judged on the saved files."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from conftest import TINY_BACKBONE, make_dataset
from PIL import Image

from pipeline.errors import UsageError
from pipeline.explain.attack import (
    PGDSettings,
    parse_eps,
    parse_levels,
    pgd_attack,
    project,
    quantize,
)


@pytest.fixture(scope="module")
def tiny_heads(tmp_path_factory):
    """A tiny cats/dogs dataset extracted at 32 px with random weights, and logreg, svm and knn heads on it."""
    from pipeline.extract.options import ExtractOptions
    from pipeline.extract.run import run_extract
    from pipeline.heads.fitting import fit_head

    root = tmp_path_factory.mktemp("attack")
    data = make_dataset(root / "pets", per_class=5)
    cache_dir = root / "cache"
    cache = Path(run_extract(data, cache_dir, ExtractOptions(**TINY_BACKBONE, batch_size=8,
                                                             valid_fraction=0.3)).cache_path)
    heads = {kind: Path(fit_head(cache, kind).sidecar_path) for kind in ("logreg", "svm", "knn")}
    return {"data": data, "cache_dir": cache_dir, "cache": cache, **heads}


@pytest.fixture(scope="module")
def logreg(tiny_heads):
    from pipeline.explain.classifier import load_classifier

    return load_classifier(head=tiny_heads["logreg"], cache_dir=tiny_heads["cache_dir"])


def _pixels(classifier, data: Path, count=4) -> tuple[list[Path], np.ndarray]:
    from pipeline.data.images import decode_image

    paths = sorted((data / "test").rglob("*.jpg"))[:count]
    return paths, np.stack([decode_image(p, classifier.resize) for p in paths])


# --- the budget -------------------------------------------------------------------------------

def test_eps_fraction_syntax_is_a_fraction_of_the_pixel_range_and_plain_numbers_are_levels():
    assert parse_eps("8/255").levels == 8.0
    assert parse_eps("8/255").fraction == pytest.approx(8 / 255)
    assert parse_eps("2").levels == 2.0 and parse_eps("2.5").integer_levels == 2
    assert parse_eps("255/255").levels == 255.0
    assert parse_levels("0.5").levels == 0.5  # a step may be below one level


@pytest.mark.parametrize("text, words", [("0.03", "7.65 levels"), ("300", "more than the whole"),
                                         ("abc", "not a number"), ("1/0", "not a number"), ("0", "above 0"),
                                         ("1/2/255", "not a number"), ("1/510", "less than one")])
def test_eps_out_of_range_is_refused_with_the_fix(text, words):
    with pytest.raises(UsageError, match=words):
        parse_eps(text)


def test_quantize_lands_on_the_uint8_grid_inside_the_budget_even_for_fractional_eps():
    rng = np.random.default_rng(0)
    original = rng.integers(0, 256, (3, 8, 8, 3)).astype(np.uint8)
    for eps in (1.0, 2.5, 8.0):
        wild = original + rng.uniform(-3 * eps, 3 * eps, original.shape)
        projected = project(wild, original, eps)
        assert np.abs(projected - original).max() <= eps + 1e-9 and projected.min() >= 0 and projected.max() <= 255
        rounded = quantize(projected, original, eps)
        assert rounded.dtype == np.uint8
        assert np.abs(rounded.astype(int) - original.astype(int)).max() <= int(np.floor(eps))


# --- gradients ----------------------------------------------------------------------------------

@pytest.mark.parametrize("mode, channel_gradient", [("caffe", {0: (2, 1.0)}), ("tf", {0: (0, 1 / 127.5)})])
def test_gradients_flow_through_the_preprocessing_layers(mode, channel_gradient):
    import keras
    import tensorflow as tf

    from pipeline.backbones.preprocessing import apply_layers, preprocessing_layers

    inputs = keras.Input((4, 4, 3))
    model = keras.Model(inputs, apply_layers(preprocessing_layers(mode), inputs))
    pixels = tf.constant(np.full((1, 4, 4, 3), 100.0, dtype=np.float32))
    with tf.GradientTape() as tape:
        tape.watch(pixels)
        out = tf.reduce_sum(model(pixels)[..., 0])
    gradient = np.asarray(tape.gradient(out, pixels))
    (source, value), = channel_gradient.values()
    assert gradient[..., source] == pytest.approx(np.full((1, 4, 4), value), rel=1e-6)  # caffe: output B <- input B
    others = [c for c in range(3) if c != source]
    assert np.all(gradient[..., others] == 0)


def test_the_pixel_gradient_of_a_head_is_nonzero_and_matches_a_finite_difference(logreg, tiny_heads):
    from pipeline.explain.attack import cross_entropy_gradient, probabilities_of

    _, pixels = _pixels(logreg, tiny_heads["data"], 2)
    classes = np.array([0, 0])
    _, gradient = cross_entropy_gradient(logreg.model, pixels, classes)
    assert np.isfinite(gradient).all() and np.abs(gradient).max() > 0
    direction = np.sign(gradient)  # a small step along the gradient's sign raises the loss, against it lowers it
    h = 2.0
    loss = lambda x: -np.log(probabilities_of(logreg.model, x)[np.arange(2), classes])  # noqa: E731
    base = pixels.astype(np.float64)
    up, down = loss(np.clip(base + h * direction, 0, 255)), loss(np.clip(base - h * direction, 0, 255))
    assert np.all(up > down)


# --- the attack -----------------------------------------------------------------------------------

def test_pgd_respects_the_budget_after_rounding_and_counts_steps(logreg, tiny_heads):
    _, pixels = _pixels(logreg, tiny_heads["data"])
    settings = PGDSettings(eps=3.0, step=1.0, steps=4, early_stop=False)
    outcome = pgd_attack(logreg.model, pixels, None, settings)
    change = outcome.adversarial.astype(int) - pixels.astype(int)
    assert outcome.adversarial.dtype == np.uint8 and np.abs(change).max() <= 3
    assert np.abs(change).max() > 0
    assert list(outcome.steps_used) == [4] * len(pixels)  # no early stop: every step is taken


def test_a_target_already_reached_stops_at_step_zero(logreg, tiny_heads):
    _, pixels = _pixels(logreg, tiny_heads["data"])
    top1 = logreg.probabilities(pixels).argmax(axis=1)
    outcome = pgd_attack(logreg.model, pixels, top1, PGDSettings(eps=4.0, step=1.0, steps=3))
    assert outcome.reached.all() and (outcome.steps_used == 0).all()
    np.testing.assert_array_equal(outcome.adversarial, pixels)


def test_the_random_start_is_seeded_and_inside_the_budget(logreg, tiny_heads):
    _, pixels = _pixels(logreg, tiny_heads["data"], 2)
    runs = [pgd_attack(logreg.model, pixels, None, PGDSettings(eps=5.0, step=1.0, steps=1, early_stop=False,
                                                               random_start=True, seed=seed)) for seed in (7, 7, 8)]
    np.testing.assert_array_equal(runs[0].adversarial, runs[1].adversarial)
    assert not np.array_equal(runs[0].adversarial, runs[2].adversarial)
    assert np.abs(runs[0].adversarial.astype(int) - pixels.astype(int)).max() <= 5


def test_result_names_are_distinct_and_safe_when_stems_repeat():
    from pipeline.explain.attack_run import result_names

    paths = [Path("a/cat/1.jpg"), Path("a/dog/1.jpg"), Path("b/dog/1.png"), Path("x/my photo!.jpg")]
    assert result_names(paths) == ["cat-1", "dog-1", "dog-1-2", "my_photo_"]


def test_a_target_is_found_by_one_of_its_comma_separated_synonyms():
    from pipeline.explain.attack_run import resolve_class
    from pipeline.explain.classifier import Classifier

    names = ["tabby, tabby cat", "tiger cat", "Persian cat"]
    imagenet = Classifier(model=None, class_names=names, input_size=8, resize=None, source={}, output_dir=Path("."))
    assert resolve_class(imagenet, "tabby") == 0 and resolve_class(imagenet, "Tabby Cat") == 0
    assert resolve_class(imagenet, "tiger cat") == 1
    with pytest.raises(UsageError, match="has no class 'cat'"):
        resolve_class(imagenet, "cat")


def _plan(**overrides):
    from pipeline.explain.attack_run import AttackPlan

    settings = {"target": None, "budgets": (parse_eps("32"),), "steps": 5}
    settings.update(overrides)
    return AttackPlan(**settings)


def test_success_is_recomputed_from_the_saved_file(logreg, tiny_heads, tmp_path):
    from pipeline.explain.attack_run import run_attack

    paths, _ = _pixels(logreg, tiny_heads["data"])
    result = run_attack(logreg, paths, _plan(), tmp_path)
    folder = Path(result["result_dir"])
    assert any(row["success"] for row in result["per_image"])
    for row in result["per_image"]:
        saved = np.asarray(Image.open(folder / row["files"]["adversarial"]).convert("RGB"))
        original = np.asarray(Image.open(folder / row["files"]["original"]).convert("RGB"))
        probabilities = logreg.probabilities(saved[None])[0]
        assert row["final_top3"][0]["label"] == logreg.class_names[int(probabilities.argmax())]
        assert row["final_top3"][0]["probability"] == pytest.approx(float(probabilities.max()), abs=1e-6)
        assert row["success"] == (row["final_top3"][0]["label"] != row["original_top3"][0]["label"])
        change = saved.astype(int) - original.astype(int)
        assert row["linf"] == np.abs(change).max() <= 32
        assert row["l2"] == pytest.approx(float(np.sqrt((change.astype(float) ** 2).sum())))
        assert (folder / row["files"]["side_by_side"]).is_file()


def test_what_the_file_holds_decides_success_not_the_attack_in_memory(logreg, tiny_heads, tmp_path, monkeypatch):
    """A writer that saves the unperturbed image under the adversarial name makes every attack fail."""
    from pipeline.explain import attack_run, outputs

    remembered = {}

    def lossy_save(path, pixels):
        if Path(path).name.endswith("-original.png"):
            remembered["pixels"] = pixels
        if Path(path).name.endswith("-adversarial.png"):
            pixels = remembered["pixels"]
        return outputs.save_png(path, pixels)

    monkeypatch.setattr(attack_run, "save_png", lossy_save)
    paths, _ = _pixels(logreg, tiny_heads["data"])
    result = attack_run.run_attack(logreg, paths, _plan(), tmp_path)
    assert not any(row["success"] for row in result["per_image"])
    assert all(row["linf"] == 0 for row in result["per_image"])


# --- the command -----------------------------------------------------------------------------------

def test_attack_cli_targeted_writes_files_sidecar_and_one_json_object(cli, tiny_heads, tmp_path):
    from pipeline.report.content import visuals

    photos = sorted((tiny_heads["data"] / "test" / "dog").glob("*.jpg"))[:2]
    payload, result = cli.json(["attack", *photos, "--head", tiny_heads["logreg"], "--target", "cat",
                                "--eps", "16", "--steps", "3", "--cache-dir", tiny_heads["cache_dir"]])
    assert result.exit_code == 0
    folder = Path(payload["result_dir"])
    assert folder.parent == tiny_heads["logreg"].parent / "explain"  # where report --html looks
    sidecar = json.loads((folder / "result.json").read_text())
    assert sidecar["settings"]["eps"][0]["levels"] == 16 and sidecar["settings"]["steps"] == 3
    assert sidecar["settings"]["target"] == "cat" and sidecar["classifier"]["kind"] == "head"
    assert sidecar["images"] == [row["files"]["side_by_side"] for row in payload["per_image"]]
    for row in payload["per_image"]:
        assert row["goal_class"] == "cat" and row["steps_used"] <= 3
        assert {"original_top3", "final_top3", "goal_probability_before", "goal_probability_after",
                "linf", "l2", "success"} <= set(row)
        for name in row["files"].values():
            assert (folder / name).is_file()
    assert any(entry["title"] == sidecar["title"] for entry in visuals(tiny_heads["cache"]))


def test_several_eps_give_the_curve_table_and_png(cli, tiny_heads, tmp_path):
    result = cli(["attack", tiny_heads["data"] / "test", "--head", tiny_heads["logreg"], "--target", "none",
                  "--eps", "2/255,8/255", "--eps", "32", "--steps", "2", "--out", tmp_path])
    assert result.exit_code == 0, result.output
    folder = next(tmp_path.glob("attack-*"))
    sidecar = json.loads((folder / "result.json").read_text())
    assert [row["eps"] for row in sidecar["result"]["per_eps"]] == [2, 8, 32]
    assert sidecar["images"][0] == "curve.png" and (folder / "curve.png").is_file()
    assert all(s["images"] == 10 for s in sidecar["result"]["per_eps"])  # the folder's 10 test photos
    assert (folder / "dog_0-eps8-adversarial.png").is_file() and (folder / "dog_0-original.png").is_file()
    assert "32/255" in result.output and "success" in result.output
    assert "top-1 kept" in result.output and "orig kept" not in result.output
    assert "Columns    success: top-1 changed (judged on the saved PNG); top-1 kept: images still given their " \
           "original top-1" in result.output


def test_the_check_head_reports_transfer_and_resizes_for_a_different_input_size(cli, tiny_heads, tmp_path):
    from pipeline.extract.options import ExtractOptions
    from pipeline.extract.run import run_extract
    from pipeline.heads.fitting import fit_head

    options = ExtractOptions(**{**TINY_BACKBONE, "input_size": 48}, batch_size=8, valid_fraction=0.3)
    other = Path(fit_head(Path(run_extract(tiny_heads["data"], tiny_heads["cache_dir"], options).cache_path),
                          "logreg").sidecar_path)
    photos = sorted((tiny_heads["data"] / "test").rglob("*.jpg"))[:2]
    same, _ = cli.json(["attack", *photos, "--head", tiny_heads["logreg"], "--target", "none", "--eps", "32",
                        "--steps", "2", "--check-head", tiny_heads["svm"], "--out", tmp_path])
    resized, _ = cli.json(["attack", *photos, "--head", tiny_heads["logreg"], "--target", "none", "--eps", "32",
                           "--steps", "2", "--check-head", other, "--out", tmp_path])
    assert all(row["check"]["resized"] is False for row in same["per_image"])
    assert all(row["check"]["resized"] is True for row in resized["per_image"])
    for payload in (same, resized):
        summary = payload["per_eps"][0]
        assert summary["check_fooled"] == sum(row["check"]["top1_changed"] for row in payload["per_image"])


def test_a_knn_head_is_refused_with_the_reason(cli, tiny_heads):
    photo = next((tiny_heads["data"] / "test").rglob("*.jpg"))
    payload, result = cli.json(["attack", photo, "--head", tiny_heads["knn"], "--target", "cat",
                                "--cache-dir", tiny_heads["cache_dir"]], expect_ok=False)
    assert result.exit_code == 1
    assert "differentiable" in payload["error"] and "neighbours" in payload["error"]


@pytest.mark.parametrize("args, words", [(["--target", "caat"], "did you mean 'cat'"),
                                         (["--target", "cat", "--eps", "0.03"], "less than one"),
                                         (["--target", "cat", "--eps", "256"], "more than the whole"),
                                         (["--target", "cat", "--step", "0"], "above 0")])
def test_bad_targets_and_budgets_exit_2_with_the_fix(cli, tiny_heads, args, words):
    photo = next((tiny_heads["data"] / "test").rglob("*.jpg"))
    payload, result = cli.json(["attack", photo, "--head", tiny_heads["logreg"], *args,
                                "--cache-dir", tiny_heads["cache_dir"]], expect_ok=False)
    assert result.exit_code == 2 and words in payload["error"]


# --- real photos, genuine weights ---------------------------------------------------------------------

@pytest.mark.realdata
def test_a_real_dog_becomes_a_tabby_for_mobilenets_imagenet_classifier(cli, shared_data, tmp_path):
    """Genuine offline MobileNet v1 weights: one test dog -> 'tabby, tabby cat' within 2/255, judged on the PNG."""
    dog = shared_data / "catsdogs" / "test" / "dog" / "dog.4014.jpg"
    if not dog.is_file():
        pytest.skip(f"{dog} not found")
    payload, _ = cli.json(["attack", dog, "--imagenet", "mobilenet", "--target", "tabby", "--eps", "2/255",
                           "--steps", "10", "--cache-dir", tmp_path / "cache", "--out", tmp_path])
    row = payload["per_image"][0]
    assert row["original_top3"][0]["label"] != "tabby, tabby cat"
    assert row["success"] and row["final_top3"][0]["label"] == "tabby, tabby cat"
    assert row["linf"] <= 2 and row["goal_probability_after"] > row["goal_probability_before"]
