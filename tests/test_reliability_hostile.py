"""Reliability, hostile files: what a crafted cache, head folder or dataset can no longer do.

Each case is a file someone could hand over (a downloaded cache, a shared folder, an unpacked
dataset). The tool must neither read files outside the folders it was given nor end in exit 70
("a bug in this tool"): every case here ends in exit 0 or exit 1 with a message naming the fix.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import h5py
import numpy as np
import pytest
from conftest import TINY_BACKBONE, make_dataset
from reliability_support import only_cache
from samples import drop_permission_override

from pipeline.cache.format import read_cache_info
from pipeline.cache.verify import verify_cache
from pipeline.errors import CacheError

#: Bytes no cache, npz or report may ever contain: the content of a file outside every allowed folder.
SECRET = b"SECRET-do-not-leak-" * 64


@pytest.fixture(scope="module")
def pristine(tmp_path_factory):
    """(dataset, cache folder) of a finished tiny extraction; tests copy the folder before harming it."""
    from pipeline.extract.options import ExtractOptions
    from pipeline.extract.run import run_extract

    root = tmp_path_factory.mktemp("hostile")
    data = make_dataset(root / "pets")
    run_extract(data, root / "cache", ExtractOptions(**TINY_BACKBONE, batch_size=8, valid_fraction=0.3))
    return data, root / "cache"


@pytest.fixture
def cache_copy(pristine, tmp_path) -> Path:
    """A private copy of the finished cache; returns the cache file."""
    shutil.copytree(pristine[1], tmp_path / "cache")
    return only_cache(tmp_path / "cache")


@pytest.fixture
def secret(tmp_path) -> Path:
    """A file outside the cache folder that nothing may read."""
    path = tmp_path / "outside" / "passwd"
    path.parent.mkdir()
    path.write_bytes(SECRET)
    return path


def _replace(handle: h5py.File, name: str, make) -> None:
    """Replace the dataset `name` with what `make(handle, name, old_values)` creates."""
    old = handle[name][()]
    del handle[name]
    make(handle, name, old)


def _external_raw(secret):
    def make(handle, name, old):
        handle.create_dataset(name, shape=old.shape, dtype=old.dtype, external=[(str(secret), 0, old.nbytes)])
    return make


def _external_link(secret_h5):
    def make(handle, name, old):
        with h5py.File(secret_h5, "w") as other:
            other.create_dataset("features", data=old)
        handle[name] = h5py.ExternalLink(str(secret_h5), "/features")
    return make


def _virtual(secret_h5):
    def make(handle, name, old):
        with h5py.File(secret_h5, "w") as other:
            other.create_dataset("features", data=old)
        layout = h5py.VirtualLayout(shape=old.shape, dtype=old.dtype)
        layout[...] = h5py.VirtualSource(str(secret_h5), "features", shape=old.shape)
        handle.create_virtual_dataset(name, layout)
    return make


def _soft_link(handle, name, old):
    handle.create_dataset("elsewhere", data=old)
    handle[name] = h5py.SoftLink("/elsewhere")


def _group(handle, name, old):
    handle.create_group(name).create_dataset("rows", data=old)


def _strings(handle, name, old):
    handle.create_dataset(name, data=np.full(old.shape, b"x", dtype="S1"))


def _shift(delta):
    def make(handle, name, old):
        handle.create_dataset(name, data=old + delta)
    return make


CRAFTED = {
    "external-raw-storage": ("features", lambda tmp, secret: _external_raw(secret), "external raw storage"),
    "external-link": ("features", lambda tmp, secret: _external_link(tmp / "other.h5"),
                      "links 'features' to another file"),
    "virtual-dataset": ("features", lambda tmp, secret: _virtual(tmp / "other.h5"), "a virtual dataset"),
    "soft-link": ("features", lambda tmp, secret: _soft_link, "has a link 'features'"),
    "features-group": ("features", lambda tmp, secret: _group, "a group where the format has a dataset"),
    "string-features": ("features", lambda tmp, secret: _strings, "dtype |S1"),
    "labels-out-of-range": ("images/label", lambda tmp, secret: _shift(5), "labels outside the 2 classes"),
    "negative-labels": ("images/label", lambda tmp, secret: _shift(-5), "labels outside the 2 classes"),
    "rows-out-of-range": ("images/row", lambda tmp, secret: _shift(1000), "rows outside the"),
    "short-row-digest": ("row_digest", lambda tmp, secret: lambda h, n, old: h.create_dataset(n, data=old[:-1]),
                         "where features has shape"),
    "float-labels": ("images/label", lambda tmp, secret: lambda h, n, old: h.create_dataset(n, data=old + 0.5),
                     "dtype float64"),
}


@pytest.mark.parametrize("case", sorted(CRAFTED))
def test_a_crafted_cache_is_refused_by_every_reader_with_exit_1(case, cache_copy, secret, tmp_path, cli):
    name, maker, words = CRAFTED[case]
    with h5py.File(cache_copy, "a") as handle:
        _replace(handle, name, maker(tmp_path, secret))
    with pytest.raises(CacheError, match="Delete it"):
        read_cache_info(cache_copy)
    problems = verify_cache(cache_copy, check_rows=True)
    assert problems and words in problems[0], problems
    out = tmp_path / "leak.npz"
    for args in (["export-npz", cache_copy, out], ["fit-head", cache_copy, "--head", "logreg"],
                 ["cache", "show", cache_copy], ["cache", "verify", cache_copy], ["report", cache_copy]):
        payload, result = cli.json(args, expect_ok=False)
        assert result.exit_code == 1, (args, result.output)
        assert words in payload["error"] and "cache rm" in payload["error"], payload["error"]
    assert not out.exists()


def _png_bytes(colour=(200, 30, 30)) -> bytes:
    import io

    from PIL import Image

    buffer = io.BytesIO()
    Image.new("RGB", (8, 8), colour).save(buffer, "PNG")
    return buffer.getvalue()


def test_report_html_embeds_only_images_inside_the_results_own_folder(cache_copy, secret, tmp_path, cli):
    import base64
    import json

    from pipeline.heads.store import heads_dir_of

    outside_png = tmp_path / "outside" / "private.png"
    outside_png.write_bytes(_png_bytes((1, 2, 3)))
    result = heads_dir_of(cache_copy) / "explain" / "visualize-fox"
    result.mkdir(parents=True)
    (result / "ok.png").write_bytes(_png_bytes())
    (result / "text.png").write_bytes(SECRET)
    (result / "link.png").symlink_to(outside_png)
    names = ["ok.png", "text.png", "link.png", str(secret), "../../../../outside/passwd", "missing.png", 7]
    (result / "result.json").write_text(json.dumps({"title": "fox", "images": names}))
    out = tmp_path / "report.html"
    _, completed = cli.json(["report", cache_copy, "--html", out])
    assert completed.exit_code == 0
    page = out.read_text()
    assert base64.b64encode(_png_bytes()).decode() in page
    for leaked in (SECRET, outside_png.read_bytes()):
        assert base64.b64encode(leaked).decode() not in page
    assert page.count("outside the result&#x27;s folder") == 3, "the symlink, the absolute path and the ../ path"
    assert "skipped &#x27;text.png&#x27;: missing, or not an image" in page
    assert "skipped 7: not a file name" in page


def test_report_thumbnails_stay_inside_the_dataset_root(tmp_path):
    from pipeline.report.content import top_loss_items

    root = tmp_path / "data"
    (root / "cat").mkdir(parents=True)
    (root / "cat" / "a.png").write_bytes(_png_bytes())
    (tmp_path / "private.png").write_bytes(_png_bytes((1, 2, 3)))
    (root / "cat" / "link.png").symlink_to(tmp_path / "private.png")
    probabilities = np.array([[0.2, 0.8], [0.3, 0.7], [0.4, 0.6]])
    items = top_loss_items(probabilities, np.array([0, 0, 0]), ["cat/a.png", "../private.png", "cat/link.png"],
                           ["cat", "dog"], root)
    thumbnails = {item["path"]: item["thumbnail"] for item in items}
    assert thumbnails["cat/a.png"] is not None
    assert thumbnails["../private.png"] is None and thumbnails["cat/link.png"] is None


def test_csv_manifest_paths_through_a_symlink_out_of_the_folder_are_refused_like_absolute_ones(tmp_path, cli):
    from conftest import write_image

    from pipeline.data.layouts import discover
    from pipeline.errors import DatasetError

    data, outside = tmp_path / "data", tmp_path / "outside"
    write_image(data / "photos" / "rex.jpg", (200, 40, 40), seed=1)
    write_image(outside / "secret.jpg", (40, 40, 200), seed=2)
    (data / "escape").symlink_to(outside, target_is_directory=True)
    (data / "alias").symlink_to(data / "photos", target_is_directory=True)
    manifest = data / "labels.csv"
    manifest.write_text("path,label\nphotos/rex.jpg,dog\nalias/rex.jpg,dog\n")
    assert len(discover(manifest, "csv").records) == 2, "a symlink that stays inside is fine"
    for listed in (outside / "secret.jpg", "escape/secret.jpg"):
        manifest.write_text(f"path,label\nphotos/rex.jpg,dog\n{listed},cat\n")
        with pytest.raises(DatasetError, match="outside the dataset root"):
            discover(manifest, "csv")
    payload, result = cli.json(["inspect", manifest], expect_ok=False)
    assert result.exit_code == 1 and "through a symbolic link" in payload["error"]


@pytest.mark.parametrize("name", ["../../escaped", "sub/dir", "..", ".hidden", "bell\x07", "x" * 300])
def test_extract_name_cannot_leave_the_cache_dir(name, tmp_path, cli):
    from conftest import TINY_CLI_ARGS

    data = make_dataset(tmp_path / "a" / "b" / "pets", per_class=2)
    cache_dir = tmp_path / "a" / "b" / "cache"
    result = cli(["extract", data, "--cache-dir", cache_dir, "--name", name, *TINY_CLI_ARGS])
    assert result.exit_code == 2 and "--name" in result.output, result.output
    assert not list(tmp_path.rglob("*.h5")), "no cache written anywhere"


def _poison_cats(monkeypatch, value):
    """Make the backbone return `value` for every reddish (cat) image, as damaged or scaled weights would."""
    from pipeline.backbones.forward import FeatureExtractor

    original = FeatureExtractor.__call__

    def poisoned(self, pixels):
        features = np.array(original(self, pixels))
        channels = pixels.reshape(len(pixels), -1, 3).mean(axis=1)
        red = channels[:, 0] > channels[:, 2]
        features[red] = value
        return features

    monkeypatch.setattr(FeatureExtractor, "__call__", poisoned)


@pytest.mark.parametrize("store_dtype, value, reason", [
    ("float16", 1e6,
     "overflow float16 storage (largest magnitude 1e+06, more than 65504); extract with --store-dtype float32"),
    ("float32", np.nan, "the backbone computed NaN or infinite features"),
    ("float32", np.inf, "the backbone computed NaN or infinite features"),
])
def test_non_finite_rows_are_failures_with_the_reason_never_cached(store_dtype, value, reason, tmp_path, monkeypatch):
    from pipeline.extract.options import ExtractOptions
    from pipeline.extract.run import run_extract

    _poison_cats(monkeypatch, value)
    data = make_dataset(tmp_path / "pets", classes=("cat", "dog"), per_class=3)
    options = ExtractOptions(**{**TINY_BACKBONE, "store_dtype": store_dtype}, batch_size=4, valid_fraction=0.3)
    summary = run_extract(data, tmp_path / "cache", options)
    failed = {Path(failure["path"]).parent.name for failure in summary.failures}
    assert failed == {"cat"} and len(summary.failures) == 6
    assert all(reason in failure["reason"] for failure in summary.failures), summary.failures
    info = read_cache_info(summary.cache_path)
    assert {info.class_names[label] for label in info.images.label} == {"dog"}
    assert verify_cache(summary.cache_path) == []


@pytest.fixture(scope="module")
def fitted(pristine, tmp_path_factory):
    """(dataset, cache file, sidecar path) of a logreg head fitted on a copy of the pristine cache."""
    from pipeline.heads.fitting import fit_head

    folder = tmp_path_factory.mktemp("fitted") / "cache"
    shutil.copytree(pristine[1], folder)
    cache = only_cache(folder)
    report = fit_head(cache, "logreg", None)
    return pristine[0], cache, Path(report.sidecar_path)


def test_fit_head_refuses_non_finite_features_naming_the_images(cache_copy, cli):
    with h5py.File(cache_copy, "a") as handle:
        features = handle["features"]
        rows = handle["images/row"][()]
        relpaths = [bytes(p).decode() for p in handle["images/relpath"][()]]
        for position, value in ((0, np.nan), (3, np.inf)):
            row = features[rows[position]]
            row.flat[0] = value
            features[rows[position]] = row
    payload, result = cli.json(["fit-head", cache_copy, "--head", "logreg"], expect_ok=False)
    assert result.exit_code == 1, result.output
    error = payload["error"]
    assert "2 images" in error and "NaN or infinite features" in error and "cache rm" in error, error
    assert relpaths[0] in error and relpaths[3] in error
    problems = verify_cache(cache_copy)
    assert any("2 feature rows hold NaN or infinite values" in problem for problem in problems), problems


def test_a_head_with_nan_weights_does_not_predict_nan(fitted, tmp_path, cli):
    import json

    data, cache, sidecar_path = fitted
    for name in (sidecar_path.name, json.loads(sidecar_path.read_text())["model_file"]):
        shutil.copy(sidecar_path.with_name(name), tmp_path / name)
    sidecar = tmp_path / sidecar_path.name
    model_file = tmp_path / json.loads(sidecar.read_text())["model_file"]
    with np.load(model_file) as arrays:
        contents = dict(arrays)
    contents["coef"] = np.full_like(contents["coef"], np.nan)
    np.savez(model_file, **contents)
    image = next(data.rglob("*.jpg"))
    payload, result = cli.json(["predict", image, "--head", sidecar, "--cache-dir", cache.parent], expect_ok=False)
    # refused when the head's model file is read (its weights are checked), before any probability
    assert result.exit_code == 1 and "NaN or infinite weights" in payload["error"], result.output
    assert "fit the head again" in payload["error"]




def test_a_read_only_cache_folder_is_exit_1_even_with_every_row_cached(pristine, tmp_path):
    import json
    import os
    import subprocess
    import sys

    from conftest import REPO_ROOT, TINY_CLI_ARGS
    from reliability_support import SUBPROCESS_TIMEOUT

    data, cache_dir = pristine
    shutil.copytree(cache_dir, tmp_path / "cache")
    for path in [tmp_path / "cache", *(tmp_path / "cache").rglob("*")]:
        path.chmod(0o555 if path.is_dir() else 0o444)
    before = sorted(p.name for p in (tmp_path / "cache").rglob("*"))
    commands = {"extract": ["extract", data, "--cache-dir", tmp_path / "cache", *TINY_CLI_ARGS],
                "fit-head": ["fit-head", tmp_path / "cache", "--head", "logreg"]}
    for name, args in commands.items():
        preexec = drop_permission_override if os.geteuid() == 0 else None
        try:
            run = subprocess.run([sys.executable, "cli.py", *map(str, args), "--json"], cwd=REPO_ROOT, text=True,
                                 capture_output=True, timeout=SUBPROCESS_TIMEOUT, preexec_fn=preexec)
        except subprocess.SubprocessError as error:
            pytest.skip(f"running as root and cannot drop CAP_DAC_OVERRIDE: {error}")
        assert run.returncode == 1, (name, run.stdout, run.stderr[-2000:])
        error = json.loads(run.stdout.splitlines()[-1])["error"]
        assert "Permission denied" in error and "a folder you can write to" in error, (name, error)
    assert sorted(p.name for p in (tmp_path / "cache").rglob("*")) == before


@pytest.mark.parametrize("kind", ["logreg", "gap-dense"])
def test_a_full_disk_during_fit_head_is_exit_1_and_leaves_nothing(kind, small_disk, pristine, cli):
    import os

    shutil.copytree(pristine[1], small_disk / "cache")
    cache = only_cache(small_disk / "cache")
    heads = small_disk / "cache" / "heads" / cache.stem
    heads.mkdir(parents=True)
    filler = small_disk / "filler"
    for free_bytes in (0, 6_000, 30_000):
        free = os.statvfs(small_disk).f_bavail * os.statvfs(small_disk).f_frsize
        filler.write_bytes(b"\0" * max(0, free - free_bytes))
        payload, result = cli.json(["fit-head", cache, "--head", kind], expect_ok=False)
        assert result.exit_code == 1 and "the disk is full" in payload["error"], payload
        assert list(heads.iterdir()) == [], f"{free_bytes} bytes free: left {list(heads.iterdir())}"
        filler.unlink()
    payload, _ = cli.json(["fit-head", cache, "--head", "logreg"])
    assert Path(payload["sidecar_path"]).is_file()


def _dead_pid() -> int:
    """The pid of a process that has exited."""
    import subprocess
    import sys

    child = subprocess.Popen([sys.executable, "-c", "pass"])
    child.wait()
    return child.pid


_KILLED_FIT = """
import os, signal, sys
from pathlib import Path
from pipeline.heads import fitting

def killed(stem, metrics, class_names, title):
    Path(f"{stem}.confusion-test.png").touch()  # the PNG Matplotlib had begun to write
    os.kill(os.getpid(), signal.SIGKILL)

fitting.save_final_confusion = killed
fitting.fit_head(Path(sys.argv[1]), "logreg")
"""


def test_a_killed_fit_head_leaves_no_visible_file_and_the_next_one_cleans_up(cache_copy, cli):
    import subprocess
    import sys

    from conftest import REPO_ROOT
    from reliability_support import SUBPROCESS_TIMEOUT

    from pipeline.heads.store import heads_dir_of, list_sidecars

    killed = subprocess.run([sys.executable, "-c", _KILLED_FIT, str(cache_copy)], cwd=REPO_ROOT,
                            capture_output=True, text=True, timeout=SUBPROCESS_TIMEOUT)
    assert killed.returncode == -9, killed.stderr[-2000:]
    folder = heads_dir_of(cache_copy)
    left = sorted(p.name for p in folder.iterdir())
    assert left and all(name.startswith(".") and ".tmp" in name for name in left), left
    assert list_sidecars(cache_copy) == []
    payload, _ = cli.json(["fit-head", cache_copy, "--head", "logreg"])
    names = sorted(p.name for p in folder.iterdir())
    stem = Path(payload["sidecar_path"]).stem
    assert names == sorted([f"{stem}.confusion-test.png", f"{stem}.json", f"{stem}.npz"]), names


def test_the_next_export_removes_what_a_killed_export_left(fitted, tmp_path, cli):
    import os

    _, cache, sidecar = fitted
    out = tmp_path / "model.keras"
    dead, live = _dead_pid(), os.getppid()
    leftovers = [tmp_path / f".model.keras.tmp{dead}.keras", tmp_path / f".model.keras.json.tmp{dead}.json"]
    for path in leftovers:
        path.write_bytes(b"half a model")
    kept = [tmp_path / f".model.keras.tmp{live}.keras", tmp_path / f".other.keras.tmp{dead}.keras"]
    for path in kept:
        path.write_bytes(b"another process's file")
    payload, _ = cli.json(["export", sidecar, out, "--format", "keras", "--cache-dir", cache.parent])
    assert Path(payload["path"]) == out and out.is_file()
    assert not any(path.exists() for path in leftovers)
    assert all(path.exists() for path in kept), "a live writer's file, and another OUT's, are not ours to delete"


def test_the_next_merge_removes_the_temporary_file_of_a_killed_merge(tmp_path, cli):
    from conftest import TINY_CLI_ARGS

    data = make_dataset(tmp_path / "pets", per_class=3)
    cache_dir = tmp_path / "cache"
    for index in range(2):
        cli.json(["extract", data, "--shard", f"{index}/2", "--cache-dir", cache_dir, *TINY_CLI_ARGS])
    merged = Path(cli.json(["merge", cache_dir])[0]["cache_path"])
    leftover = merged.with_name(f".{merged.name}.tmp{_dead_pid()}.h5")
    shutil.copy(merged, leftover)
    cli.json(["merge", *sorted(cache_dir.glob("*shard*.h5"))])
    assert not leftover.exists()


def test_cache_rm_removes_a_symlinked_heads_folder_as_a_link_and_keeps_its_target(cache_copy, tmp_path, cli):
    from pipeline.heads.store import heads_dir_of

    target = tmp_path / "elsewhere"
    target.mkdir()
    (target / "precious.txt").write_text("not the cache's to delete")
    heads = heads_dir_of(cache_copy)
    heads.parent.mkdir(parents=True)
    heads.symlink_to(target, target_is_directory=True)
    payload, result = cli.json(["cache", "rm", "--yes", cache_copy])
    assert result.exit_code == 0
    assert not cache_copy.exists() and not heads.is_symlink() and (target / "precious.txt").is_file()
    assert any("a symbolic link; its target" in line for lines in payload["removed"] for line in lines), payload


def test_the_imbalance_note_counts_only_images_that_decoded(tmp_path):
    from pipeline.extract.options import ExtractOptions
    from pipeline.extract.run import run_extract

    data = make_dataset(tmp_path / "pets", per_class=3, splits=("train", "valid"))
    for index in range(4):
        (data / "train" / "cat" / f"broken_{index}.jpg").write_bytes(b"not an image %d" % index)
    summary = run_extract(data, tmp_path / "cache", ExtractOptions(**TINY_BACKBONE, batch_size=8))
    assert len(summary.failures) == 4
    notes = summary.notes + list(read_cache_info(summary.cache_path).dataset.notes)
    assert not [note for note in notes if note.startswith("class imbalance")], notes
    for index in range(4, 8):  # real imbalance among decodable images is still noted (a trailing byte: new files)
        (data / "train" / "dog" / f"dog_copy_{index}.jpg").write_bytes(
            (data / "train" / "dog" / "dog_0.jpg").read_bytes() + bytes([index]))
    summary = run_extract(data, tmp_path / "cache", ExtractOptions(**TINY_BACKBONE, batch_size=8))
    assert any(note.startswith("class imbalance in train: dog has 7 images, cat 3") for note in summary.notes), \
        summary.notes


@pytest.mark.parametrize("kind", ["mlp", "gap-dense"])
def test_the_missing_validation_refusal_names_the_head_asked_for(kind, tmp_path, cli):
    from pipeline.extract.options import ExtractOptions
    from pipeline.extract.run import run_extract

    data = make_dataset(tmp_path / "pets", per_class=3, splits=("train", "test"))
    summary = run_extract(data, tmp_path / "cache", ExtractOptions(**TINY_BACKBONE, batch_size=8, valid_fraction=0))
    payload, result = cli.json(["fit-head", summary.cache_path, "--head", kind], expect_ok=False)
    assert result.exit_code == 1 and payload["error"].startswith(f"{kind} keeps the best epoch"), payload["error"]
    assert kind == "gap-dense" or "gap-dense" not in payload["error"]


#: A file name that would turn the terminal red and fake a line of output if printed raw.
EVIL_NAME = "evil\x1b[31mred\nFeatures   999 extracted\u202e.jpg"


def test_file_names_with_escape_sequences_and_newlines_are_printed_escaped(tmp_path, cli):
    from conftest import TINY_CLI_ARGS

    data = make_dataset(tmp_path / "pets", per_class=3)
    (data / "train" / "cat" / EVIL_NAME).write_bytes(b"not an image")
    outputs = {
        "inspect": cli(["inspect", data]),
        "extract": cli(["extract", data, "--cache-dir", tmp_path / "cache", *TINY_CLI_ARGS]),
    }
    outputs["cache show"] = cli(["cache", "show", only_cache(tmp_path / "cache")])
    for command, result in outputs.items():
        assert result.exit_code == 0, (command, result.output)
        assert "\x1b" not in result.output and "\u202e" not in result.output, command
        assert not any(line.startswith("Features   999") for line in result.output.splitlines()), command
    for command in ("extract", "cache show"):
        assert "evil\\x1b[31mred\\nFeatures   999 extracted\\u202e.jpg" in outputs[command].output, command
    payload, _ = cli.json(["cache", "show", only_cache(tmp_path / "cache")])
    assert [failure["path"] for failure in payload["failures"]] == [f"train/cat/{EVIL_NAME}"], "JSON: the exact name"


def test_non_finite_reasons_tell_overflow_from_a_broken_backbone():
    from pipeline.extract.loop import non_finite_reasons

    computed = np.array([[1.0, 2.0], [1e6, 0.0], [np.nan, 0.0], [np.inf, 1.0]], dtype=np.float32)
    with np.errstate(over="ignore", invalid="ignore"):
        stored = computed.astype(np.float16)
    reasons = non_finite_reasons(computed, stored)
    assert sorted(reasons) == [1, 2, 3]
    assert "overflow float16 storage" in reasons[1] and "--store-dtype float32" in reasons[2]
    assert "backbone computed NaN" in non_finite_reasons(computed, computed)[2]
    assert "beyond float16's range" in non_finite_reasons(stored, stored)[1], "the Ray engine sees stored rows only"
