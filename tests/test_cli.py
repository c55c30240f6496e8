"""The CLI end to end on a tiny dataset: JSON contract, files written, exit codes, messages."""

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner
from conftest import TINY_CLI_ARGS, make_dataset


@pytest.fixture(scope="module")
def pristine(tmp_path_factory):
    """One tiny extraction for the whole module: (dataset, cache dir, extract payload). Never modified:
    `extracted` gives each test its own copy of the cache folder."""
    from cli import main

    root = tmp_path_factory.mktemp("extracted")
    dataset, cache_dir = make_dataset(root / "pets"), root / "cache"
    args = ["extract", dataset, *TINY_CLI_ARGS, "--cache-dir", cache_dir, "--json"]
    result = CliRunner().invoke(main, [str(arg) for arg in args], catch_exceptions=False)
    payload = json.loads(result.stdout)
    assert payload["ok"], payload
    return dataset, cache_dir, payload


@pytest.fixture
def extracted(pristine, tmp_path):
    """(cache dir, extract payload) of one tiny extraction: this test's own copy, free to change."""
    _, shared, payload = pristine
    cache_dir = tmp_path / "cache"
    shutil.copytree(shared, cache_dir)
    return cache_dir, dict(payload, cache_path=str(cache_dir / Path(payload["cache_path"]).relative_to(shared)))


@pytest.fixture
def extracted_dataset(pristine) -> Path:
    """The dataset `extracted` was extracted from (read only)."""
    return pristine[0]


def test_extract_json_reports_what_happened(extracted):
    cache_dir, payload = extracted
    assert payload["extracted"] == 24 and payload["reused"] == 0 and payload["classes"] == 2
    assert Path(payload["cache_path"]).parent == cache_dir
    assert payload["feature_shape"] == [1, 1, 512]
    assert payload["split_counts"]["test"] == 12


def test_extract_text_summary_and_rerun(cli, extracted_dataset, extracted):
    cache_dir, _ = extracted
    result = cli(["extract", extracted_dataset, *TINY_CLI_ARGS, "--cache-dir", cache_dir])
    assert result.exit_code == 0
    assert "0 extracted, 24 reused" in result.stdout
    assert "(unchanged)" in result.stdout


def test_cache_dir_comes_from_the_environment(cli, tiny_dataset, tmp_path):
    payload, _ = cli.json(["extract", tiny_dataset, *TINY_CLI_ARGS],
                          env={"BOTTLENECK_CACHE_DIR": str(tmp_path / "envcache")})
    assert Path(payload["cache_path"]).parent == tmp_path / "envcache"


@pytest.mark.parametrize("kind", ["logreg", "svm", "gap-dense"])
def test_fit_head_writes_head_sidecar_and_png(cli, extracted, kind):
    cache_dir, _ = extracted
    payload, _ = cli.json(["fit-head", "--head", kind, "--cache-dir", cache_dir])
    sidecar_path = Path(payload["sidecar_path"])
    sidecar = json.loads(sidecar_path.read_text())
    assert sidecar["kind"] == kind and sidecar["class_names"] == ["cat", "dog"]
    assert set(sidecar["metrics"]) == {"train", "valid", "test"}
    assert sidecar["metrics"]["test"]["n"] == 12
    assert len(sidecar["metrics"]["test"]["confusion_matrix"]) == 2
    for name in payload["files"]:
        assert (sidecar_path.parent / name).is_file()
    assert any(name.endswith(".png") for name in payload["files"])


def test_report_ranks_heads_by_validation(cli, extracted):
    cache_dir, payload = extracted
    for kind in ("logreg", "svm"):
        cli.json(["fit-head", payload["cache_path"], "--head", kind])
    report, _ = cli.json(["report", "--cache-dir", cache_dir])
    kinds = [row["kind"] for row in report["heads"]]
    assert sorted(kinds) == ["logreg", "svm"]
    valid = [row["valid_top1"] for row in report["heads"]]
    assert valid == sorted(valid, reverse=True)
    text = cli(["report", payload["cache_path"]]).stdout
    assert "logreg" in text and "valid" in text.splitlines()[0]


def test_predict_reproduces_the_cached_features(cli, extracted, extracted_dataset):
    cache_dir, payload = extracted
    fit, _ = cli.json(["fit-head", payload["cache_path"], "--head", "logreg"])
    images = [extracted_dataset / "test" / "cat" / "cat_0.jpg", extracted_dataset / "test" / "dog" / "dog_0.jpg"]
    result, _ = cli.json(["predict", *images, "--head", fit["sidecar_path"], "--top-k", "2", "--cache-dir", cache_dir])
    top = [r["predictions"][0]["label"] for r in result["results"]]
    assert top == ["cat", "dog"]
    assert all(abs(sum(p["probability"] for p in r["predictions"]) - 1) < 1e-5 for r in result["results"])


def test_predict_reports_unreadable_images(cli, extracted, extracted_dataset, tmp_path):
    cache_dir, payload = extracted
    fit, _ = cli.json(["fit-head", payload["cache_path"], "--head", "svm"])
    bad = tmp_path / "bad.jpg"
    bad.write_bytes(b"nope")
    good = extracted_dataset / "test" / "cat" / "cat_0.jpg"
    result, _ = cli.json(["predict", bad, good, "--head", fit["sidecar_path"], "--cache-dir", cache_dir])
    assert "not a recognised image format" in result["results"][0]["error"]
    assert result["results"][1]["predictions"]

    failed, outcome = cli.json(["predict", bad, "--head", fit["sidecar_path"], "--cache-dir", cache_dir],
                               expect_ok=False)
    assert outcome.exit_code == 1 and "none of the 1 images could be read" in failed["error"]


def test_export_npz_has_the_classic_keys(cli, extracted, tmp_path):
    _, payload = extracted
    out = tmp_path / "bottleneck.npz"
    result, _ = cli.json(["export-npz", payload["cache_path"], out])
    with np.load(out, allow_pickle=False) as data:
        assert data["train"].shape[1:] == (1, 1, 512) and data["train"].dtype == np.float32
        assert data["test"].shape[0] == 12 == result["rows"]["test"]
        assert list(data["class_names"]) == ["cat", "dog"]
        assert len(data["train_labels"]) == data["train"].shape[0]
        assert sorted(set(data["test_labels"].tolist())) == [0, 1]


def test_cache_commands(cli, extracted):
    cache_dir, payload = extracted
    listing, _ = cli.json(["cache", "ls", "--cache-dir", cache_dir])
    assert [row["file"] for row in listing["caches"]] == [payload["cache_path"]]
    shown, _ = cli.json(["cache", "show", payload["cache_path"]])
    assert shown["classes"] == ["cat", "dog"] and shown["weights"]["source"] == "random"
    verified, _ = cli.json(["cache", "verify", payload["cache_path"]])
    assert verified["problems"] == []
    removed, _ = cli.json(["cache", "rm", payload["cache_path"], "--yes"])
    assert payload["cache_path"] in removed["removed"][0]
    assert not Path(payload["cache_path"]).exists()


def test_user_errors_exit_1_with_a_message_and_no_traceback(cli, tmp_path):
    empty = tmp_path / "empty"
    empty.mkdir()
    result = cli(["extract", empty, *TINY_CLI_ARGS, "--cache-dir", tmp_path / "c"])
    assert result.exit_code == 1
    assert result.stderr.startswith("Error: ") and str(empty) in result.stderr
    assert "Traceback" not in result.output
    payload, result = cli.json(["extract", empty, *TINY_CLI_ARGS, "--cache-dir", tmp_path / "c"], expect_ok=False)
    assert result.exit_code == 1 and str(empty) in payload["error"]


def test_bad_layer_is_explained(cli, tiny_dataset, tmp_path):
    result = cli(["extract", tiny_dataset, *TINY_CLI_ARGS, "--layer", "block9_pool", "--cache-dir", tmp_path / "c"])
    assert result.exit_code == 2 and "has no layer 'block9_pool'" in result.stderr


def test_bad_options_exit_2(cli, tiny_dataset, tmp_path):
    result = cli(["extract", tiny_dataset, "--backbone", "alexnet"])
    assert result.exit_code == 2 and "alexnet" in result.stderr
    result = cli(["extract", tiny_dataset, *TINY_CLI_ARGS, "--input-size", "8", "--cache-dir", tmp_path / "c"])
    assert result.exit_code == 2 and "too small" in result.stderr


def test_fit_head_needs_exactly_one_cache_in_a_directory(cli, tmp_path):
    (tmp_path / "none").mkdir()
    result = cli(["fit-head", "--head", "logreg", "--cache-dir", tmp_path / "none"])
    assert result.exit_code == 1 and "no feature cache" in result.stderr


def test_recipe_only_for_gap_dense(cli, extracted):
    cache_dir, _ = extracted
    result = cli(["fit-head", "--head", "svm", "--recipe", "classic", "--cache-dir", cache_dir])
    assert result.exit_code == 2 and "--recipe" in result.stderr


def test_layers_lists_the_default_bottleneck(cli):
    payload, _ = cli.json(["layers", "vgg16", "--input-size", "32"])
    names = [row["name"] for row in payload["layers"]]
    assert "block5_pool" in names and payload["default_layer"] == "block5_pool"
    assert payload["layers"][names.index("block5_pool")]["shape"] == [1, 1, 512]


@pytest.mark.parametrize("args", [["extract", "/nonexistent/dataset"], ["report", "/nonexistent/cache.h5"]])
def test_missing_files_are_problems_with_files_and_honour_json(cli, args):
    payload, result = cli.json(args, expect_ok=False)
    assert result.exit_code == 1 and "does not exist" in payload["error"]


@pytest.mark.parametrize("args", [
    ["extract", ".", "--shard", "3/2"],
    ["fit-head", "--head", "logreg", "--recipe", "classic"],
    ["cache", "rm", "x.h5"],
])
def test_usage_errors_honour_json(cli, args):
    payload, result = cli.json(args, expect_ok=False)
    assert result.exit_code == 2 and payload["error"]
    assert "Usage:" not in result.output


def test_report_refuses_a_file_that_is_not_a_cache(cli, tmp_path):
    import h5py

    other = tmp_path / "other.h5"
    with h5py.File(other, "w") as handle:
        handle["x"] = [1]
    payload, result = cli.json(["report", other], expect_ok=False)
    assert result.exit_code == 1 and str(other) in payload["error"]


def test_unwritable_cache_dir_is_explained(cli, tiny_dataset, tmp_path):
    blocker = tmp_path / "a-file"
    blocker.write_text("not a folder")
    result = cli(["extract", tiny_dataset, *TINY_CLI_ARGS, "--cache-dir", blocker / "cache"])
    assert result.exit_code == 1 and "cannot create the cache directory" in result.stderr
    assert "Traceback" not in result.output


def test_weights_file_that_does_not_fit_is_explained(cli, tiny_dataset, tmp_path):
    import h5py

    wrong = tmp_path / "other.h5"
    with h5py.File(wrong, "w") as handle:
        handle["x"] = [1]
    result = cli(["extract", tiny_dataset, *TINY_CLI_ARGS[2:], "--weights", wrong, "--cache-dir", tmp_path / "c"])
    assert result.exit_code == 1, result.output
    assert f"could not load {wrong} into vgg16" in result.stderr and "include_top=False" in result.stderr
