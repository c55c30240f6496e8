"""Fuzz: head folders (sidecars, npz and .keras models), explain results, and the command line.

Contract (tests/fuzz_support.py): `load_head` returns a head that predicts one finite probability
per class name, or raises `HeadError`; `report`'s reader of explain results embeds nothing from
outside the result's folder; commands given hostile files or out-of-range numbers end with exit
1 or 2, never 70.
"""

from __future__ import annotations

import json
import shutil
import zipfile
from pathlib import Path

import numpy as np
import pytest
from conftest import TINY_BACKBONE, make_dataset
from fuzz_support import FUZZ_SETTINGS, contract, make_canary
from hypothesis import given
from hypothesis import strategies as st

from pipeline.heads.store import load_head

FEATURES = 512  # pooled block5_pool of the tiny VGG16
_JSON = st.recursive(st.one_of(st.none(), st.booleans(), st.integers(-2**70, 2**70), st.floats(allow_nan=False),
                               st.text(max_size=20)),
                     lambda inner: st.one_of(st.lists(inner, max_size=3),
                                             st.dictionaries(st.text(max_size=8), inner, max_size=3)),
                     max_leaves=8)


@pytest.fixture(scope="module")
def heads(tmp_path_factory):
    """A tiny cache with logreg, knn and gap-dense heads: (cache path, {kind: sidecar path}, an image)."""
    from pipeline.extract.options import ExtractOptions
    from pipeline.extract.run import run_extract
    from pipeline.heads.fitting import fit_head

    root = tmp_path_factory.mktemp("fuzz-heads")
    data = make_dataset(root / "pets")
    summary = run_extract(data, root / "cache", ExtractOptions(**TINY_BACKBONE, batch_size=8, valid_fraction=0.3))
    cache = Path(summary.cache_path)
    sidecars = {kind: Path(fit_head(cache, kind, None).sidecar_path) for kind in ("logreg", "knn", "gap-dense")}
    return cache, sidecars, next((data / "test" / "cat").iterdir())


def _copy(sidecar_path: Path, folder: Path) -> tuple[Path, Path]:
    folder.mkdir(parents=True, exist_ok=True)
    model_file = json.loads(sidecar_path.read_text())["model_file"]
    for name in (sidecar_path.name, model_file):
        shutil.copy(sidecar_path.with_name(name), folder / name)
    return folder / sidecar_path.name, folder / model_file


def _load_and_predict(sidecar: Path) -> None:
    """The contract of a loaded head: one finite probability per class for a feature row."""
    head, record = load_head(sidecar)
    if record.kind == "knn":
        head.memory_ = head.memory_[:, :FEATURES] if head.memory_.shape[1] >= FEATURES else head.memory_
    probabilities = head.predict_proba(np.zeros((1, FEATURES), np.float32))
    assert probabilities.shape == (1, len(record.class_names))
    assert np.isfinite(probabilities).all()


@FUZZ_SETTINGS
@given(kind=st.sampled_from(["logreg", "knn"]), drop=st.lists(st.sampled_from(
    ["kind", "class_names", "feature_key", "feature_spec", "model_file", "hyperparameters", "format_version"]),
    max_size=2), replace=st.dictionaries(st.sampled_from(
    ["kind", "class_names", "feature_key", "feature_spec", "model_file", "hyperparameters", "metrics", "views",
     "format_version", "members", "name", "target"]), _JSON, max_size=2))
def test_any_edited_sidecar_loads_a_working_head_or_is_a_head_error(heads, tmp_path_factory, kind, drop, replace):
    root = tmp_path_factory.mktemp("sidecar")
    canary = make_canary(root / "outside")
    sidecar, _ = _copy(heads[1][kind], root / "head")
    document = json.loads(sidecar.read_text())
    for key in drop:
        document.pop(key, None)
    document.update(replace)
    if "model_file" in replace:
        document["model_file"] = str(canary) if replace["model_file"] is None else replace["model_file"]
    sidecar.write_text(json.dumps(document))
    with contract(canary):
        _load_and_predict(sidecar)


_ARRAY = st.one_of(
    st.builds(lambda shape, dtype: np.zeros(shape, dtype), st.lists(st.integers(0, 4), max_size=3),
              st.sampled_from([np.float32, np.float64, np.int64, np.uint8, np.bool_])),
    st.builds(lambda n, v: np.full(n, v), st.integers(1, 600), st.sampled_from([np.nan, np.inf, -1.0, 0.0, 1e300])),
    st.just(np.array(["a", "b"])), st.just(np.float64(0.0)), st.just(np.int64(10**6)),
)


@FUZZ_SETTINGS
@given(kind=st.sampled_from(["logreg", "knn"]), changes=st.dictionaries(st.sampled_from(
    ["mean", "scale", "coef", "intercept", "temperature", "memory", "labels", "k", "num_classes", "extra"]),
    st.one_of(st.none(), _ARRAY), max_size=3))
def test_any_edited_npz_model_loads_a_working_head_or_is_a_head_error(heads, tmp_path_factory, kind, changes):
    sidecar, model = _copy(heads[1][kind], tmp_path_factory.mktemp("npz-model"))
    with np.load(model) as arrays:
        content = {name: arrays[name] for name in arrays.files}
    for name, value in changes.items():
        if value is None:
            content.pop(name, None)
        else:
            content[name] = value
    np.savez(model, **content)
    with contract():
        _load_and_predict(sidecar)


def _paths_in(config, prefix=()):
    if isinstance(config, dict):
        for key, value in config.items():
            yield prefix + (key,)
            yield from _paths_in(value, prefix + (key,))
    elif isinstance(config, list):
        for index, value in enumerate(config):
            yield prefix + (index,)
            yield from _paths_in(value, prefix + (index,))


@FUZZ_SETTINGS
@given(data=st.data())
def test_any_edited_keras_config_loads_a_working_head_or_is_a_head_error(heads, tmp_path_factory, data):
    root = tmp_path_factory.mktemp("keras-model")
    canary = make_canary(root / "outside")
    sidecar, model = _copy(heads[1]["gap-dense"], root / "head")
    with zipfile.ZipFile(model) as archive:
        files = {name: archive.read(name) for name in archive.namelist()}
    config = json.loads(files["config.json"])
    path = data.draw(st.sampled_from(list(_paths_in(config))))
    value = data.draw(st.one_of(_JSON, st.just({"module": "os", "class_name": "function", "config": "remove",
                                                 "registered_name": "remove"}),
                                st.just({"class_name": "__lambda__", "config": {"code": "", "defaults": None}}),
                                st.just(str(canary)), st.just(10**9)))
    target = config
    for step in path[:-1]:
        target = target[step]
    target[path[-1]] = value
    files["config.json"] = json.dumps(config).encode()
    with zipfile.ZipFile(model, "w") as archive:
        for name, content in files.items():
            archive.writestr(name, content)
    with contract(canary, max_bytes=256 * 2**20):
        _load_and_predict(sidecar)
    assert canary.exists()


_NOT_HEADS = st.sampled_from(["cache", "image", "npz", "keras", "bytes", "empty", "json-list", "result", "csv"])


@FUZZ_SETTINGS
@given(kind=_NOT_HEADS, suffix=st.sampled_from([".json", ".h5", ".npz", ".keras", ".jpg", ""]),
       noise=st.binary(max_size=64))
def test_predict_given_any_file_but_a_head_is_exit_1(heads, tmp_path_factory, cli, kind, suffix, noise):
    cache, sidecars, image = heads
    root = tmp_path_factory.mktemp("not-a-head")
    given_file = root / f"given{suffix}"
    sources = {"cache": cache, "image": image, "keras": sidecars["gap-dense"].with_suffix(".keras"),
               "npz": sidecars["logreg"].with_suffix(".npz")}
    if kind in sources:
        shutil.copy(sources[kind], given_file)
    else:
        given_file.write_bytes({"bytes": noise, "empty": b"", "json-list": b"[1, 2]",
                                "result": json.dumps({"command": "attack", "outcome": {}}).encode(),
                                "csv": b"path,label\na.jpg,cat\n"}[kind])
    result = cli(["predict", image, "--head", given_file, "--cache-dir", root / "cache"])
    assert result.exit_code == 1, result.output
    assert "head" in result.output and "internal error" not in result.output


_NUMERIC = [("extract", "--views"), ("extract", "--input-size"), ("extract", "--batch-size"), ("extract", "--workers"),
            ("extract", "--commit-every"), ("extract", "--split-seed"), ("extract", "--view-seed")]


@FUZZ_SETTINGS
@given(option=st.sampled_from(_NUMERIC), value=st.one_of(st.integers(-2**80, -1), st.integers(2**32, 2**80),
                                                          st.sampled_from(["nan", "1e9", "0x10", "", "1.5"])))
def test_out_of_range_or_malformed_numbers_are_exit_2(heads, tmp_path_factory, cli, option, value):
    root = tmp_path_factory.mktemp("options")
    data = heads[2].parents[2]
    result = cli([option[0], data, option[1], value, "--cache-dir", root / "cache"])
    assert result.exit_code == 2, result.output
    assert option[1] in result.output and not (root / "cache").exists()


@FUZZ_SETTINGS
@given(images=st.lists(st.one_of(st.sampled_from(["../../outside/secret.txt", "SECRET", "/etc/hostname", "..",
                                                  "fig.png", "sub/../fig.png", "", "fig.png\x00x"]),
                                 st.text(max_size=20), st.integers()), max_size=4),
       extra=st.dictionaries(st.sampled_from(["title", "command", "summary"]), _JSON, max_size=2),
       raw=st.one_of(st.none(), st.binary(max_size=40)))
def test_explain_results_embed_nothing_from_outside_their_folder(heads, tmp_path_factory, images, extra, raw):
    from PIL import Image

    from pipeline.heads.store import heads_dir_of
    from pipeline.report.content import VISUALS_SUBDIR, visuals

    root = tmp_path_factory.mktemp("visuals")
    canary = make_canary(root / "outside")
    cache = root / "cache" / heads[0].name
    cache.parent.mkdir()
    shutil.copy(heads[0], cache)
    result_dir = heads_dir_of(cache) / VISUALS_SUBDIR / "visualize-1"
    result_dir.mkdir(parents=True)
    Image.new("RGB", (4, 4)).save(result_dir / "fig.png")
    names = [str(canary) if name == "SECRET" else name for name in images]
    document = {"command": "visualize", "images": names, **extra}
    (result_dir / "result.json").write_bytes(raw if raw is not None else json.dumps(document).encode())
    found = []
    with contract(canary):
        found = visuals(cache)
    embedded = "".join(uri for item in found for uri in item["images"])
    assert "Y2FuYXJ5" not in embedded  # base64 of b"canary"
