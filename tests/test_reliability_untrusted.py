"""Reliability, untrusted files: loading a head or a cache never runs code, and paths stay inside.

Crafted files try the classic tricks: a pickled object array in a linear head's `.npz`, a Keras
`Lambda` layer in a `.keras` head, a sidecar whose model file climbs out of its folder, and a
cache whose image paths point outside the dataset. Each is refused with a clear error, and the
payload (which would create a marker file) never runs.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
from conftest import TINY_BACKBONE, TINY_CLI_ARGS

from pipeline.cache.verify import verify_cache
from pipeline.data.dataset import safe_relpath
from pipeline.errors import DatasetError, HeadError
from pipeline.heads.store import load_head


class _Payload:
    """Unpickling this object creates the marker file: proof that code ran."""

    def __init__(self, marker: Path):
        self.marker = marker

    def __reduce__(self):
        return (Path.touch, (self.marker,))


@pytest.fixture(scope="module")
def fitted(tmp_path_factory):
    """A tiny cache with a fitted logreg head: (dataset, cache file, sidecar path)."""
    from conftest import make_dataset

    from pipeline.extract.options import ExtractOptions
    from pipeline.extract.run import run_extract
    from pipeline.heads.fitting import fit_head

    root = tmp_path_factory.mktemp("untrusted")
    data = make_dataset(root / "pets")
    summary = run_extract(data, root / "cache", ExtractOptions(**TINY_BACKBONE, batch_size=8, valid_fraction=0.3))
    report = fit_head(Path(summary.cache_path), "logreg", None)
    return data, Path(summary.cache_path), Path(report.sidecar_path)


@pytest.fixture
def head_copy(fitted, tmp_path) -> Path:
    """A private copy of the fitted head (sidecar + model file); returns the sidecar."""
    sidecar = json.loads(fitted[2].read_text())
    for name in (fitted[2].name, sidecar["model_file"]):
        shutil.copy(fitted[2].with_name(name), tmp_path / name)
    return tmp_path / fitted[2].name


def test_untouched_head_loads(head_copy):
    head, sidecar = load_head(head_copy)
    assert head.coef_.shape == (512, 2) and sidecar.kind == "logreg"


def test_pickled_object_array_in_a_linear_head_is_refused(head_copy, tmp_path, cli):
    marker = tmp_path / "pwned"
    model_file = head_copy.with_name(json.loads(head_copy.read_text())["model_file"])
    with np.load(model_file) as arrays:
        contents = dict(arrays)
    contents["coef"] = np.array([_Payload(marker)], dtype=object)
    np.savez(model_file, **contents)  # object arrays are stored with pickle
    with pytest.raises(HeadError, match="damaged: fit the head again"):
        load_head(head_copy)
    payload, result = cli.json(["predict", model_file, "--head", head_copy], expect_ok=False)
    assert result.exit_code == 1 and "cannot load the model of head" in payload["error"]
    assert not marker.exists(), "the pickle payload must never run"
    with np.load(model_file, allow_pickle=True) as arrays:
        arrays["coef"]
    assert marker.exists(), "control: a loader that allowed pickle would have run it"


def test_keras_lambda_layer_is_refused_in_safe_mode(head_copy, tmp_path):
    import keras

    marker = tmp_path / "pwned"
    inputs = keras.Input((512,))
    touch_marker = eval(f"lambda x: (__import__('pathlib').Path({str(marker)!r}).touch(), x)[1]")  # self-contained code
    outputs = keras.layers.Lambda(touch_marker)(inputs)
    evil = tmp_path / "evil.keras"
    keras.Model(inputs, keras.layers.Dense(2, activation="softmax")(outputs)).save(evil)
    marker.unlink(missing_ok=True)  # saving traced the lambda once; loading must not run it again
    sidecar = json.loads(head_copy.read_text())
    sidecar.update(kind="gap-dense", model_file=evil.name)
    head_copy.write_text(json.dumps(sidecar))
    with pytest.raises(HeadError, match=r"cannot load the model of head .*Lambda"):
        load_head(head_copy)
    assert not marker.exists(), "a Lambda layer's code must never run on load"
    keras.saving.load_model(evil, safe_mode=False, compile=False)
    assert marker.exists(), "control: without safe mode the same file does run its code"


@pytest.mark.parametrize("model_file", ["../../outside.npz", "/etc/passwd", "sub/../../outside.npz"])
def test_sidecar_model_file_cannot_leave_the_head_folder(head_copy, model_file, cli):
    sidecar = json.loads(head_copy.read_text())
    sidecar["model_file"] = model_file
    head_copy.write_text(json.dumps(sidecar))
    with pytest.raises(HeadError, match="must be a file name next to it"):
        load_head(head_copy)
    _payload, result = cli.json(["predict", head_copy, "--head", head_copy], expect_ok=False)
    assert result.exit_code == 1, "a tampered head is a broken input (exit 1), not a usage error"


def test_cache_paths_escaping_the_dataset_are_rejected(fitted, tmp_path, cli):
    import h5py

    data, cache, _ = fitted
    folder = tmp_path / "cache"
    folder.mkdir()
    tampered = folder / cache.name
    shutil.copy(cache, tampered)
    with h5py.File(tampered, "r+") as handle:
        relpaths = handle["images/relpath"]
        relpaths[0] = b"../../../../etc/passwd"
    problems = verify_cache(tampered)
    assert problems == ["1 image paths escape the dataset root (first: '../../../../etc/passwd'); "
                        "the cache was tampered with"]
    payload, _ = cli.json(["cache", "verify", tampered], expect_ok=False)
    assert "escape the dataset root" in payload["error"]

    payload, result = cli.json(["extract", data, *TINY_CLI_ARGS, "--cache-dir", folder], expect_ok=False)
    assert result.exit_code == 1 and str(tampered) in payload["error"] and "escape the dataset root" in payload["error"]
    assert "`cache rm`" in payload["error"] and not list(folder.glob("*.partial")), "stopped before extracting"


@pytest.mark.parametrize("relpath", ["../secret.jpg", "a/../../secret.jpg", "/etc/passwd", "..", "a\\..\\..\\x.jpg",
                                     "./../x.jpg"])
def test_safe_relpath_refuses_escapes(relpath):
    with pytest.raises(DatasetError, match=r"escapes the dataset root|outside the dataset root"):
        safe_relpath(relpath)


def test_safe_relpath_normalises_paths_that_stay_inside(tmp_path):
    assert safe_relpath("a/./b/../c.jpg") == "a/c.jpg"
    assert safe_relpath("a\\b.jpg") == "a/b.jpg"
    assert safe_relpath(str(tmp_path / "x" / "y.jpg"), root=tmp_path) == "x/y.jpg"
    with pytest.raises(DatasetError, match="outside the dataset root"):
        safe_relpath(str(tmp_path.parent / "y.jpg"), root=tmp_path)
