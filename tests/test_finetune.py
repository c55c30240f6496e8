"""`fine-tune`: exact on the boundary cache, resumable, reported and predicted like a head, refusing what
cannot be exact. Tiny random-weight VGG16 at 32x32 (block4_pool is 2x2x512), so it stays fast."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
from conftest import TINY_BACKBONE, make_dataset
from samples import PLANTED_BEST, PLANTED_LAST, PLANTED_LOSSES, PlantedLoop, same_weights

from pipeline.errors import HeadError, UsageError
from pipeline.extract.options import ExtractOptions
from pipeline.extract.run import run_extract
from pipeline.finetune.recipe import Recipe
from pipeline.finetune.run import FineTuneOptions, fine_tune
from pipeline.heads.fitting import fit_head

EPOCHS = 3
OPTIONS = FineTuneOptions(unfreeze="block5", recipe=Recipe(epochs=EPOCHS, patience=EPOCHS, batch_size=8,
                                                           backbone_learning_rate=1e-4, head_learning_rate=1e-3))


@pytest.fixture(scope="module")
def setting(tmp_path_factory):
    """A dataset, its block5_pool cache and a logreg head fitted on it."""
    root = tmp_path_factory.mktemp("finetune")
    data = make_dataset(root / "pets", classes=("cat", "dog", "fox"), per_class=8)
    options = ExtractOptions(**TINY_BACKBONE, batch_size=8, valid_fraction=0.3)
    cache = Path(run_extract(data, root / "cache", options).cache_path)
    head = Path(fit_head(cache, "logreg").sidecar_path)
    return data, cache, head, root / "cache"


@pytest.fixture(scope="module")
def tuned(setting):
    _, cache, head, cache_dir = setting
    return fine_tune(cache, head, cache_dir, OPTIONS)


def test_one_step_on_the_boundary_cache_equals_one_step_of_the_full_network(setting):
    """Same batch, same optimisers: the cached route and pixels -> frozen block1-4 -> block5 -> head agree."""
    import keras

    from pipeline.backbones.preprocessing import apply_layers, preprocessing_layers
    from pipeline.backbones.registry import get_backbone
    from pipeline.backbones.weights import resolve_weights
    from pipeline.cache.format import read_cache_info
    from pipeline.cache.rows import load_rows
    from pipeline.data.images import ResizeSpec, decode_image
    from pipeline.finetune.cut import resolve_cut
    from pipeline.finetune.model import build_backbone, tuned_model
    from pipeline.finetune.train import Trainer
    from pipeline.heads.graph import head_layers
    from pipeline.heads.store import load_head

    data, _, head_path, cache_dir = setting
    boundary = read_cache_info(run_extract(data, cache_dir, ExtractOptions(**TINY_BACKBONE, layer="block4_pool",
                                                                           valid_fraction=0.3)).cache_path)
    head, _ = load_head(head_path)
    spec = get_backbone("vgg16")
    weights = resolve_weights(spec, "none", cache_dir, 32)
    recipe = Recipe(backbone_learning_rate=1e-3, head_learning_rate=1e-2)
    cached_base = build_backbone(spec, weights, 32)
    cut = resolve_cut(spec, cached_base, "block5_pool", "block5", None)
    trainer = Trainer(tuned_model(cached_base, cut, head, "none"), recipe)

    members = boundary.images.in_split("train")[:8]
    rows = load_rows(boundary.path, boundary.images.row[members], pooling=None)
    labels = boundary.images.label[members]
    pixels = np.stack([decode_image(data / boundary.images.relpath[i], ResizeSpec(32, 32)) for i in members])

    full_base = build_backbone(spec, weights, 32)
    for layer in full_base.layers[:full_base.layers.index(full_base.get_layer(cut.boundary)) + 1]:
        layer.trainable = False
    inputs = keras.Input((32, 32, 3))
    tensor = keras.layers.GlobalAveragePooling2D()(full_base(apply_layers(preprocessing_layers("caffe"), inputs)))
    for layer in head_layers(head):
        tensor = layer(tensor)
    full = keras.Model(inputs, tensor)
    backbone_vars = list(full_base.trainable_variables)
    head_vars = [v for v in full.trainable_variables if all(v is not b for b in backbone_vars)]
    assert [v.shape for v in backbone_vars] == [v.shape for v in trainer.tuned.backbone_variables]

    np.testing.assert_allclose(np.asarray(trainer.forward(rows)), np.asarray(full(pixels.astype(np.float32))),
                               rtol=1e-5, atol=1e-6)
    before = [np.array(v) for v in trainer.tuned.backbone_variables]
    trainer.step(rows, labels.astype(np.int64))
    _full_step(full, backbone_vars, head_vars, recipe, pixels.astype(np.float32), labels)
    for cached, direct in zip(trainer.tuned.backbone_variables + trainer.tuned.head_variables,
                              backbone_vars + head_vars):
        np.testing.assert_allclose(np.asarray(cached), np.asarray(direct), rtol=1e-5, atol=1e-6)
    moved = max(float(np.abs(np.asarray(v) - b).max()) for v, b in zip(trainer.tuned.backbone_variables, before))
    assert moved > 1e-4  # the step changed the tuned layers, far beyond the tolerance


def _full_step(model, backbone_vars, head_vars, recipe, pixels, labels):
    import keras
    import tensorflow as tf

    optimizers = (keras.optimizers.Adam(recipe.backbone_learning_rate),
                  keras.optimizers.Adam(recipe.head_learning_rate))
    with tf.GradientTape() as tape:
        loss = keras.losses.SparseCategoricalCrossentropy()(labels, model(pixels, training=True))
    gradients = tape.gradient(loss, backbone_vars + head_vars)
    optimizers[0].apply_gradients(zip(gradients[:len(backbone_vars)], backbone_vars))
    optimizers[1].apply_gradients(zip(gradients[len(backbone_vars):], head_vars))


def test_fine_tune_reports_epochs_and_compares_with_its_head(tuned, setting):
    _, cache, head_path, _ = setting
    assert tuned.cut["boundary_layer"] == "block4_pool" and tuned.cut["tuned_layers"][0] == "block5_conv1"
    assert [record["epoch"] for record in tuned.history] == list(range(EPOCHS + 1))
    assert tuned.history[0]["loss"] is None  # epoch 0 is the head it started from, scored only
    assert 0 <= tuned.best_epoch <= EPOCHS
    assert set(tuned.metrics) == {"train", "valid", "test"}
    best = tuned.history[tuned.best_epoch]
    assert tuned.metrics["valid"]["log_loss"] == pytest.approx(best["valid_loss"], rel=1e-5)
    assert tuned.comparison["head"] == head_path.stem
    assert tuned.comparison["metrics"]["top1"]["fine_tuned"] == tuned.metrics["valid"]["top1"]
    sidecar = json.loads(Path(tuned.sidecar_path).read_text())
    provenance = sidecar["fine_tuning"]
    assert provenance["from_head"]["name"] == head_path.stem and provenance["tuned_layers"] == tuned.cut["tuned_layers"]
    assert "train only" in provenance["from_head"]["started_as"]  # a linear head is refit without validation
    assert sidecar["feature_key"] != provenance["from_head"]["feature_key"]  # the boundary cache's key
    # the tuned backbone is keyed by its weights: the frozen one's key only when the best epoch is the start
    assert (provenance["tuned_feature_key"] != provenance["from_head"]["feature_key"]) == (tuned.best_epoch > 0)
    assert Path(tuned.sidecar_path).parent == cache.parent / "heads" / cache.stem  # next to the frozen heads
    assert not list(Path(tuned.sidecar_path).parent.glob(".fine-tune-*"))  # checkpoints gone once saved


def test_report_lists_the_fine_tuned_model_next_to_the_frozen_head(tuned, setting, cli):
    _, cache, _, _ = setting
    payload, _ = cli.json(["report", cache])
    kinds = {row["kind"] for row in payload["heads"]}
    assert {"logreg", "fine-tuned"} <= kinds
    row = next(row for row in payload["heads"] if row["kind"] == "fine-tuned")
    assert row["params"].startswith("block5, best epoch")


def test_predict_and_the_image_model_run_frozen_tuned_and_head_layers(tuned, setting):
    from pipeline.data.images import decode_image
    from pipeline.predict.extraction import load_head_extraction
    from pipeline.predict.image_model import head_image_model
    from pipeline.predict.with_head import predict_images

    data, _, _, cache_dir = setting
    photos = sorted((data / "test").rglob("*.jpg"))[:4]
    results = predict_images(photos, Path(tuned.sidecar_path), cache_dir, top_k=3)
    extraction = load_head_extraction(Path(tuned.sidecar_path), cache_dir)
    assert extraction.spec.layer == "block4_pool"
    model = head_image_model(extraction)
    pixels = np.stack([decode_image(p, extraction.resize) for p in photos]).astype(np.float32)
    probabilities = np.asarray(model(pixels))
    names = extraction.record.class_names
    for row, result in zip(probabilities, results):
        for prediction in result["predictions"]:
            assert row[names.index(prediction["label"])] == pytest.approx(prediction["probability"], abs=1e-4)
    test = tuned.metrics["test"]
    assert test["n"] > 0


def test_an_interrupted_fine_tune_resumes_after_its_last_epoch(setting):
    _, cache, head, cache_dir = setting
    options = replace(OPTIONS, recipe=replace(OPTIONS.recipe, seed=5))
    clean = fine_tune(cache, head, cache_dir, options)

    def stop_after_two(record):
        if record["epoch"] == 2:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        fine_tune(cache, head, cache_dir, options, epoch_progress=stop_after_two)
    assert list(Path(clean.sidecar_path).parent.glob(".fine-tune-*/state.npz"))
    resumed = fine_tune(cache, head, cache_dir, options)
    assert resumed.resumed_from == 2
    assert [r["valid_loss"] for r in resumed.history] == pytest.approx([r["valid_loss"] for r in clean.history],
                                                                       rel=1e-5)
    assert resumed.metrics["test"]["log_loss"] == pytest.approx(clean.metrics["test"]["log_loss"], rel=1e-5)


def test_views_train_one_view_per_image_per_epoch(setting):
    from pipeline.cache.format import read_cache_info

    _, cache, head, cache_dir = setting
    report = fine_tune(cache, head, cache_dir, replace(OPTIONS, views=2, recipe=replace(OPTIONS.recipe, epochs=1)))
    boundary = read_cache_info(report.boundary_cache)
    assert boundary.views.count == 2 and boundary.spec.layer == "block4_pool"
    assert "view 0 only" in report.views
    assert report.history[1]["rows_per_second"] > 0
    from pipeline.heads.replay import split_probabilities
    from pipeline.heads.store import read_sidecar

    probabilities, labels, _ = split_probabilities(read_sidecar(Path(report.sidecar_path)), cache, "test")
    assert len(labels) == report.metrics["test"]["n"]  # one row per image: view 0, as it was scored
    assert float(np.mean(probabilities.argmax(axis=1) == labels)) == pytest.approx(report.metrics["test"]["top1"])


def test_epoch_batches_are_a_function_of_seed_and_epoch():
    from pipeline.finetune.batches import SplitRows, epoch_batches

    split = SplitRows(np.arange(30).reshape(10, 3), np.arange(10) % 2)
    first = epoch_batches(split, 1, 0, 4)
    assert [b.rows.tolist() for b in first] == [b.rows.tolist() for b in epoch_batches(split, 1, 0, 4)]
    assert [b.rows.tolist() for b in first] != [b.rows.tolist() for b in epoch_batches(split, 2, 0, 4)]
    rows = np.concatenate([b.rows for b in first])
    assert sorted(rows // 3) == list(range(10))  # every image once, one of its views


def test_cli_fine_tune_prints_the_comparison(setting, cli):
    _, cache, head, cache_dir = setting
    result = cli(["fine-tune", cache, "--from-head", head, "--unfreeze", "block5", "--epochs", "1",
                  "--cache-dir", cache_dir])
    assert result.exit_code == 0, result.output
    assert "Valid      vs " in result.stdout and "Saved " in result.stdout
    refused = cli(["fine-tune", cache, "--from-head", head, "--cache-dir", cache_dir])
    assert refused.exit_code == 2 and "--unfreeze" in refused.output


def test_refusals_name_the_reason(setting, tuned):
    data, cache, head, cache_dir = setting
    with pytest.raises(UsageError, match="no block 'block9'"):
        fine_tune(cache, head, cache_dir, replace(OPTIONS, unfreeze="block9"))
    with pytest.raises(HeadError, match="already a fine-tuned model"):
        fine_tune(cache, Path(tuned.sidecar_path), cache_dir, OPTIONS)
    knn = Path(fit_head(cache, "knn").sidecar_path)
    with pytest.raises(HeadError, match="no gradient"):
        fine_tune(cache, knn, cache_dir, OPTIONS)
    early = Path(run_extract(data, cache_dir, ExtractOptions(**TINY_BACKBONE, layer="block4_pool",
                                                             valid_fraction=0.3)).cache_path)
    with pytest.raises(HeadError, match="fitted on features with key"):
        fine_tune(early, head, cache_dir, OPTIONS)
    early_head = Path(fit_head(early, "logreg").sidecar_path)
    with pytest.raises(UsageError, match="nothing to tune"):
        fine_tune(early, early_head, cache_dir, OPTIONS)


@pytest.mark.parametrize("backbone, top, kwargs, message", [
    ("efficientnet_lite0", "top_activation", {"from_layer": "block6b_add"}, "residual connection"),
    ("efficientnet_lite0", "top_activation", {"unfreeze": "block7", "frozen_mode": "training"},
     "compute differently in training"),
    ("mobilenet", "conv_pw_13_relu", {"unfreeze": "conv_dw_13", "frozen_mode": "training"},
     "compute differently in training"),
    ("vgg16", "block5_pool", {"unfreeze": "block1"}, "nothing to cache"),
])
def test_cuts_that_cannot_be_exact_are_refused(backbone, top, kwargs, message):
    from pipeline.backbones.registry import get_backbone
    from pipeline.finetune.cut import resolve_cut

    spec = get_backbone(backbone)
    model = spec.build(include_top=False, weights=None, input_size=32)
    with pytest.raises(UsageError, match=message):
        resolve_cut(spec, model, top, kwargs.get("unfreeze"), kwargs.get("from_layer"),
                    kwargs.get("frozen_mode", "inference"))


def test_block_names_follow_each_backbone():
    from pipeline.backbones.registry import get_backbone
    from pipeline.finetune.cut import resolve_cut

    for backbone, top, block, boundary in (("vgg16", "block5_pool", "block5", "block4_pool"),
                                           ("mobilenet", "conv_pw_13_relu", "conv_dw_12", "conv_pw_11_relu"),
                                           ("efficientnet_lite0", "top_activation", "block7", "block6d_add")):
        spec = get_backbone(backbone)
        cut = resolve_cut(spec, spec.build(include_top=False, weights=None, input_size=32), top, block, None)
        assert cut.boundary == boundary and cut.tuned[-1] == top
    vgg = get_backbone("vgg16")
    exact = resolve_cut(vgg, vgg.build(include_top=False, weights=None, input_size=32), "block5_pool", "block5",
                        None, "training")
    assert exact.boundary == "block4_pool"  # nothing in VGG's frozen part depends on the mode


def test_a_head_of_another_problem_is_refused_with_the_reason(setting, tmp_path, cli):
    """Same backbone and layer (so the same feature key), other classes: the gain would be against another problem."""
    import shutil

    _, cache, head, cache_dir = setting
    other = make_dataset(tmp_path / "other", classes=("cat", "dog"), per_class=6)
    other_cache = Path(run_extract(other, cache_dir, ExtractOptions(**TINY_BACKBONE, batch_size=8,
                                                                    valid_fraction=0.3)).cache_path)
    foreign = Path(fit_head(other_cache, "logreg").sidecar_path)
    with pytest.raises(HeadError, match=r"other classes than .*: 2 classes \(cat, dog\) vs 3 \(cat, dog, fox\)"):
        fine_tune(cache, foreign, cache_dir, OPTIONS)
    refused = cli(["fine-tune", cache, "--from-head", foreign, "--unfreeze", "block5", "--cache-dir", cache_dir])
    assert refused.exit_code == 1 and "fitted on other classes" in refused.output and "Traceback" not in refused.output

    sidecar = json.loads(head.read_text())
    for name, change, message in (("reordered", {"class_names": sidecar["class_names"][::-1]}, "in another order"),
                                  ("species", {"target": "species"}, "predicts the target 'species'"),
                                  ("other-key", {"feature_key": "0" * 64}, "fitted on features with key 000000")):
        copy = tmp_path / f"{name}.json"
        copy.write_text(json.dumps({**sidecar, **change}))
        shutil.copy(head.with_name(sidecar["model_file"]), tmp_path / sidecar["model_file"])
        refused = cli(["fine-tune", cache, "--from-head", copy, "--unfreeze", "block5", "--cache-dir", cache_dir])
        assert refused.exit_code == 1 and message in refused.output, (name, refused.output)


def test_the_best_epoch_rule_is_stated_in_the_output_and_the_help(setting, cli):
    """A later epoch lower by no more than --min-delta is not chosen, and the output says so, naming it."""
    import re

    from pipeline.finetune.train import smaller_drops

    history = [{"epoch": 0, "valid_loss": 0.70}, {"epoch": 1, "valid_loss": 0.50}, {"epoch": 2, "valid_loss": 0.4996}]
    assert smaller_drops(history, 1) == [(2, pytest.approx(0.0004))]
    assert smaller_drops(history, 2) == []

    _, cache, head, cache_dir = setting
    result = cli(["fine-tune", cache, "--from-head", head, "--unfreeze", "block5", "--epochs", "2",
                  "--min-delta", "100", "--cache-dir", cache_dir])
    assert result.exit_code == 0, result.output
    assert ("Epochs     best 0 of 2: lowest validation loss, an epoch counting as better only when it lowers the "
            "best loss so far by more than 100 (--min-delta); epoch 0 is the head it started from") in result.stdout
    losses = {int(epoch or 0): float(loss) for epoch, loss in
              re.findall(r"^  (?:start|epoch (\d+))\s.*?valid loss ([\d.]+)", result.output, re.MULTILINE)}
    assert sorted(losses) == [0, 1, 2]
    for epoch in (1, 2):
        named = f"epoch {epoch} was lower by " in result.stdout
        assert named == (losses[epoch] < losses[0]), result.output
    helped = cli(["fine-tune", "--help"])
    assert "--min-delta" in helped.output and "lowers the best loss so far by more than this" in " ".join(
        helped.output.split())


def test_an_svm_start_trains_on_its_own_objective_and_warns_once(setting, cli, caplog, monkeypatch):
    """The SVM's temperature-scaled softmax is saturated on its training images (cross-entropy 0, no
    gradient); the squared hinge it was fitted with is not, so an SVM start trains."""
    import logging
    import re

    from pipeline.finetune import run as finetune_run
    from pipeline.heads.features import load_feature_set
    from pipeline.heads.kinds.linear import LinearSVMHead

    _, cache, _, cache_dir = setting
    svm_path = Path(fit_head(cache, "svm").sidecar_path)
    params = json.loads(svm_path.read_text())["hyperparameters"]
    start = LinearSVMHead(c_grid=(params["C"],), refit_on_valid=False).fit(load_feature_set(cache))
    train = load_feature_set(cache).splits["train"]
    picked = start.predict_proba(train.x)[np.arange(len(train.y)), train.y]
    scores = start.scaler_.transform(train.x) @ start.coef_ + start.intercept_
    signs = np.where(np.arange(scores.shape[1])[None, :] == train.y[:, None], 1.0, -1.0)
    hinge = np.mean(np.sum(np.maximum(0, 1 - signs * scores) ** 2, axis=1))
    assert float(np.mean(-np.log(picked))) < 1e-4 < hinge  # what made an SVM start train nothing
    objective = hinge + np.sum(start.coef_.astype(np.float64) ** 2) / (2 * params["C"] * len(train.y))
    still = fine_tune(cache, svm_path, cache_dir, replace(OPTIONS, recipe=replace(
        OPTIONS.recipe, epochs=1, backbone_learning_rate=1e-12, head_learning_rate=1e-12)))
    assert still.history[1]["loss"] == pytest.approx(objective, rel=1e-4)  # training minimises the SVM's objective

    original = finetune_run._comparison
    monkeypatch.setattr(finetune_run, "_comparison",
                        lambda run, metrics: (original(run, metrics)[0], "the fine-tuned model is worse (forced)"))
    caplog.set_level(logging.INFO)
    result = cli(["fine-tune", cache, "--from-head", svm_path, "--unfreeze", "block5", "--epochs", "3",
                  "--patience", "3", "--batch-size", "8", "--backbone-lr", "1e-4", "--head-lr", "1e-3",
                  "--cache-dir", cache_dir])
    assert result.exit_code == 0, result.output
    assert "minimising the squared hinge + L2 penalty" in result.stdout
    losses = [float(x) for x in re.findall(r"train loss ([\d.]+)", result.output)]
    assert len(losses) == 3 and min(losses) > 0
    assert max(losses) - min(losses) > 1e-3 * max(losses)  # the weights moved (fixed weights: equal means)
    assert result.output.count("the fine-tuned model is worse (forced)") == 1
    assert not [r for r in caplog.records if r.levelno >= logging.WARNING and "worse" in r.getMessage()]
    saved = Path(result.stdout.split("Saved ")[-1].strip())
    sidecar = json.loads(saved.read_text())
    assert sidecar["hyperparameters"]["objective"].startswith("squared hinge")
    from pipeline.heads.replay import split_probabilities
    from pipeline.heads.store import read_sidecar

    probabilities, _, _ = split_probabilities(read_sidecar(saved), cache, "test")
    assert np.allclose(probabilities.sum(axis=1), 1.0, atol=1e-5)  # the saved model ends in its softmax


@pytest.mark.parametrize("nan_from", [None, 1])
def test_fine_tuning_runs_the_one_training_loop(setting, monkeypatch, nan_from):
    """The planted validation curve of test_training.py's heads: fine-tuning stops at the same epoch and ends
    with the best epoch's weights; a NaN training loss at epoch 1 keeps epoch 0, the head it started from."""
    import pipeline.finetune.train as finetune_train

    planted = PlantedLoop(nan_from=nan_from)
    monkeypatch.setattr(finetune_train, "run_epochs", planted)
    _, cache, head, cache_dir = setting
    report = fine_tune(cache, head, cache_dir, OPTIONS)
    last, best = (PLANTED_LAST, PLANTED_BEST) if nan_from is None else (0, 0)
    assert [record["valid_loss"] for record in report.history] == list(PLANTED_LOSSES[:last + 1])
    assert (report.best_epoch, report.epochs_run) == (best, last)
    assert same_weights(planted.final, planted.weights_at[best])
    sidecar = json.loads(Path(report.sidecar_path).read_text())
    assert (sidecar["hyperparameters"]["best_epoch"], sidecar["hyperparameters"]["epochs_run"]) == (best, last)
    assert [record["valid_loss"] for record in sidecar["search"]] == list(PLANTED_LOSSES[:last + 1])


def test_fine_tuning_with_no_finite_loss_says_what_to_change(setting, monkeypatch):
    import pipeline.finetune.train as finetune_train

    monkeypatch.setattr(finetune_train, "run_epochs", PlantedLoop(losses=(np.nan, 1.0), nan_from=1))
    _, cache, head, cache_dir = setting
    with pytest.raises(HeadError, match=r"no finite loss .*validation loss was nan at epoch 0.*--backbone-lr"):
        fine_tune(cache, head, cache_dir, OPTIONS)
