"""`export`: one verified model from RGB pixels to class probabilities, in every format (docs/export.md)."""

from __future__ import annotations

import json
import zipfile
from pathlib import Path

import numpy as np
import pytest
from conftest import TINY_BACKBONE, make_dataset

from pipeline.atomic import TEMP_MARK
from pipeline.errors import HeadError, UsageError
from pipeline.export.artifact import FORMATS, refuse_unexportable
from pipeline.export.formats import artifact_path, labels_path_of, read_metadata
from pipeline.heads.record import CacheRef, FusedMember, HeadRecord

#: Exports of float32 tiny-backbone heads match predict to float32 rounding (measured about 1e-8).
TINY_MAX_DIFF = 1e-6


@pytest.fixture(scope="module")
def fitted(tmp_path_factory):
    """A tiny dataset, its float32 cache, and a logreg and a k-NN head fitted on it."""
    from pipeline.extract.options import ExtractOptions
    from pipeline.extract.run import run_extract
    from pipeline.heads.fitting import fit_head

    root = tmp_path_factory.mktemp("export")
    data = make_dataset(root / "pets", classes=("cat", "dog", "fox"), per_class=6)
    cache = Path(run_extract(data, root / "cache", ExtractOptions(**TINY_BACKBONE, batch_size=8,
                                                                   valid_fraction=0.3)).cache_path)
    heads = {kind: Path(fit_head(cache, kind).sidecar_path) for kind in ("logreg", "knn")}
    return {"data": data, "cache": cache, "cache_dir": root / "cache", "heads": heads, "root": root}


def _leftovers(folder: Path) -> list[str]:
    return [p.name for p in folder.iterdir() if TEMP_MARK in p.name]


@pytest.mark.parametrize("fmt", FORMATS)
def test_each_format_is_written_verified_against_predict_and_carries_its_labels(fmt, fitted, cli, tmp_path):
    head = fitted["heads"]["logreg"]
    payload, _ = cli.json(["export", head, tmp_path / "model", "--format", fmt, "--cache-dir", fitted["cache_dir"]])
    path = Path(payload["path"])
    assert path == artifact_path(tmp_path / "model", fmt) and path.exists()
    check = payload["verification"]
    assert check["passed"] and check["images"] == 16 and check["top1_agree"] == 16  # 16 of the 18 test images
    assert check["max_abs_diff"] <= TINY_MAX_DIFF and check["tolerance"] == 1e-4
    sidecar = json.loads(head.read_text())
    inside = read_metadata(path, fmt)
    assert inside["class_names"] == sidecar["class_names"] == ["cat", "dog", "fox"]
    assert inside["feature_key"] == sidecar["feature_key"]
    assert inside["weights"]["fingerprint"] == sidecar["feature_spec"]["weights_fingerprint"]
    assert inside["input"]["resize"]["describe"] == "stretch-bilinear-32x32" and inside["input"]["range"] == [0, 255]
    assert inside["versions"]["tensorflow"] and inside["artifact_format"] == fmt
    labels = json.loads(labels_path_of(path).read_text())
    assert labels["class_names"] == sidecar["class_names"] and labels["artifact"] == path.name
    assert labels["verification"]["max_abs_diff"] == check["max_abs_diff"]
    assert _leftovers(tmp_path) == []


def test_text_output_names_input_contract_and_measured_difference(fitted, cli, tmp_path):
    result = cli(["export", fitted["heads"]["logreg"], tmp_path / "m.keras", "--cache-dir", fitted["cache_dir"]])
    assert result.exit_code == 0, result.output
    assert "max |difference| to predict" in result.output and "stretch-bilinear-32x32" in result.output
    assert "uint8 or float32" in result.output and "cat, dog, fox" in result.output


def test_the_keras_file_loads_in_safe_mode_without_lambda_and_takes_uint8_or_float(fitted, tmp_path):
    import keras

    from pipeline.data.images import ResizeSpec, decode_image
    from pipeline.export.run import export_head
    from pipeline.predict.with_head import predict_images

    report = export_head(fitted["heads"]["logreg"], tmp_path / "m.keras", "keras", fitted["cache_dir"])
    model = keras.saving.load_model(report.path, safe_mode=True, compile=False)

    def layers(layer):
        yield layer
        for inner in getattr(layer, "layers", []):
            yield from layers(inner)
    assert not [layer.name for layer in layers(model) if isinstance(layer, keras.layers.Lambda)]
    photos = sorted((fitted["data"] / "test").rglob("*.jpg"))[:3]
    pixels = np.stack([decode_image(p, ResizeSpec(32, 32)) for p in photos])
    from_uint8 = model.predict(pixels, verbose=0)
    np.testing.assert_array_equal(from_uint8, model.predict(pixels.astype(np.float32), verbose=0))
    expected = predict_images(photos, fitted["heads"]["logreg"], fitted["cache_dir"], top_k=3)
    for row, result in zip(from_uint8, expected):
        for prediction in result["predictions"]:
            assert row[report.class_names.index(prediction["label"])] == pytest.approx(prediction["probability"],
                                                                                        abs=TINY_MAX_DIFF)
    assert "bottleneck_export.json" in zipfile.ZipFile(report.path).namelist()


def test_the_saved_model_stores_each_weight_once_and_has_a_uint8_signature(fitted, tmp_path):
    import tensorflow as tf

    from pipeline.export.run import export_head

    keras_file = export_head(fitted["heads"]["logreg"], tmp_path / "m.keras", "keras", fitted["cache_dir"])
    saved = export_head(fitted["heads"]["logreg"], tmp_path / "sm", "saved_model", fitted["cache_dir"])
    assert saved.size_bytes < 1.2 * keras_file.size_bytes  # not keras.export's doubled variables
    loaded = tf.saved_model.load(str(saved.path))
    assert {"serving_default", "serve", "serve_uint8"} <= set(loaded.signatures)
    assert loaded.signatures["serve_uint8"].structured_input_signature[1]["pixels"].dtype == tf.uint8
    assert (saved.path / "assets.extra" / "labels.txt").read_text() == "cat\ndog\nfox\n"


def test_given_images_are_used_for_verification(fitted, cli, tmp_path):
    photos = sorted((fitted["data"] / "train").rglob("*.jpg"))[:2]
    args = ["export", fitted["heads"]["logreg"], tmp_path / "m.onnx", "--format", "onnx",
            "--cache-dir", fitted["cache_dir"]]
    for photo in photos:
        args += ["--images", photo]
    payload, _ = cli.json(args)
    assert payload["verification"]["images"] == 2 and payload["verification"]["sample_source"] == "given"


def test_an_export_that_disagrees_with_predict_is_refused_and_nothing_is_written(fitted, cli, tmp_path,
                                                                                 monkeypatch):
    from pipeline.export import run

    real = run.reference_probabilities

    def skewed(*args, **kwargs):
        paths, rows = real(*args, **kwargs)
        return paths, np.clip(rows + 0.01, 0, 1)
    monkeypatch.setattr(run, "reference_probabilities", skewed)
    payload, result = cli.json(["export", fitted["heads"]["logreg"], tmp_path / "m", "--format", "tflite",
                                "--cache-dir", fitted["cache_dir"]], expect_ok=False)
    assert result.exit_code == 1
    assert "differ from `predict`'s by up to 0.01" in payload["error"] and "tolerance 0.0001" in payload["error"]
    assert sorted(p.name for p in tmp_path.iterdir()) == []


def test_knn_and_early_fused_heads_are_refused_with_the_reason(fitted, cli, tmp_path):
    payload, result = cli.json(["export", fitted["heads"]["knn"], tmp_path / "m.keras",
                                "--cache-dir", fitted["cache_dir"]], expect_ok=False)
    assert result.exit_code == 1 and "vote among stored neighbours" in payload["error"]
    assert "logreg" in payload["error"] and not (tmp_path / "m.keras").exists()
    fused = HeadRecord("fusion", ("cat", "dog"), "a+b", hyperparameters={"method": "early"}, path=Path("fused.json"),
                       members=tuple(FusedMember(name, f"/h/{name}.json", name, None, 1.0) for name in "ab"))
    with pytest.raises(HeadError, match=r"early-fused head.*a\.json, b\.json"):
        refuse_unexportable(fused)


def test_output_names_must_match_the_format(tmp_path):
    assert artifact_path(tmp_path / "m", "keras") == tmp_path / "m.keras"
    assert artifact_path(tmp_path / "m.tflite", "tflite") == tmp_path / "m.tflite"
    assert artifact_path(tmp_path / "m", "saved_model") == tmp_path / "m"
    with pytest.raises(UsageError, match=r"ends in \.onnx but --format keras"):
        artifact_path(tmp_path / "m.onnx", "keras")
    assert labels_path_of(tmp_path / "m.onnx") == tmp_path / "m.onnx.json"


def test_without_sample_images_on_disk_the_export_asks_for_some(tmp_path):
    from pipeline.export.verify import sample_images

    with pytest.raises(HeadError, match="pass some photos with --images"):
        sample_images(HeadRecord("logreg", ("cat", "dog"), "k", cache=CacheRef(str(tmp_path / "gone.h5")),
                                 path=Path("h.json")), [])


def test_a_fine_tuned_model_exports_with_its_frozen_and_tuned_layers(fitted, tmp_path):
    from pipeline.export.run import export_head
    from pipeline.finetune.recipe import Recipe
    from pipeline.finetune.run import FineTuneOptions, fine_tune

    options = FineTuneOptions(unfreeze="block5", recipe=Recipe(epochs=1, patience=1, batch_size=8))
    tuned = fine_tune(fitted["cache"], fitted["heads"]["logreg"], fitted["cache_dir"], options)
    report = export_head(Path(tuned.sidecar_path), tmp_path / "tuned.keras", "keras", fitted["cache_dir"])
    assert report.verification.passed and report.verification.max_abs_diff <= TINY_MAX_DIFF
    assert report.metadata["head"]["kind"] == "fine-tuned"
    assert report.metadata["feature_spec"]["layer"] == "block4_pool"


@pytest.fixture(scope="module")
def catsdogs_head(catsdogs_cache_dir):
    """Genuine VGG16 block5_pool features of the real cats-vs-dogs photos (float32) and a logreg head."""
    from conftest import SHARED_DATA

    from pipeline.extract.options import ExtractOptions
    from pipeline.extract.run import run_extract
    from pipeline.heads.fitting import fit_head

    data, cache_dir = SHARED_DATA / "catsdogs", catsdogs_cache_dir
    # float32 so that `predict` and the exported float32 graph compute alike on every CPU (`auto` picks bfloat16
    # where the CPU has it, and the default tolerance then allows for its rounding).
    cache = Path(run_extract(data, cache_dir, ExtractOptions(precision="float32")).cache_path)
    return Path(fit_head(cache, "logreg").sidecar_path), cache_dir


@pytest.mark.realdata
@pytest.mark.slow
@pytest.mark.parametrize("fmt", FORMATS)
def test_a_genuine_vgg16_catsdogs_head_exports_and_verifies_on_the_real_photos(fmt, catsdogs_head, cli, tmp_path):
    head, cache_dir = catsdogs_head
    payload, _ = cli.json(["export", head, tmp_path / "catsdogs", "--format", fmt, "--cache-dir", cache_dir])
    check = payload["verification"]
    assert check["passed"] and check["images"] == 16 and check["sample_source"].startswith("16 test images")
    assert check["max_abs_diff"] <= 1e-4 and check["top1_agree"] == 16
    assert payload["class_names"] == ["cat", "dog"] and payload["input"]["shape"] == [None, 224, 224, 3]
    assert 50e6 < payload["size_bytes"] < 70e6  # VGG16's conv weights once (about 59 MB), in every format


def test_the_default_tolerance_allows_for_a_reduced_precision_cache():
    from pipeline.export.verify import DEFAULT_TOLERANCE, REDUCED_PRECISION_TOLERANCE, default_tolerance

    assert default_tolerance("float32") == DEFAULT_TOLERANCE == 1e-4
    assert default_tolerance("bfloat16") == default_tolerance("float16") == REDUCED_PRECISION_TOLERANCE == 5e-2


def test_a_late_fused_head_exports_as_one_graph_over_its_member_backbones(fitted, tmp_path, monkeypatch):
    from dataclasses import replace

    from pipeline.export.run import export_head
    from pipeline.extract.options import ExtractOptions
    from pipeline.extract.run import run_extract
    from pipeline.heads import fusion

    options = ExtractOptions(**TINY_BACKBONE, batch_size=8, valid_fraction=0.3)
    lower = Path(run_extract(fitted["data"], fitted["cache_dir"], replace(options, layer="block4_pool")).cache_path)
    monkeypatch.setattr(fusion, "choose", lambda candidates: next(
        c for c in candidates if c.method == "late" and min(c.weights) > 0))
    fused = Path(fusion.fit_fusion([fitted["cache"], lower], "logreg").sidecar_path)
    report = export_head(fused, tmp_path / "fused", "onnx", fitted["cache_dir"])
    assert report.verification.passed and report.verification.max_abs_diff <= TINY_MAX_DIFF
    assert [m["backbone"] for m in report.metadata["members"]] == ["vgg16", "vgg16"]
    assert sum(m["weight"] for m in report.metadata["members"]) == pytest.approx(1.0)
