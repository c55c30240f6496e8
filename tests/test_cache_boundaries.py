"""Fine-tune's boundary caches: their size is said when made, `cache ls` marks them, `cache rm` removes them."""

from __future__ import annotations

import shutil

import pytest
from conftest import TINY_CLI_ARGS, make_dataset

from pipeline import api
from pipeline.caches.admin import MEGABYTE


@pytest.fixture(scope="module")
def tuned(tmp_path_factory):
    from click.testing import CliRunner

    from cli import main

    root = tmp_path_factory.mktemp("boundaries")
    data = make_dataset(root / "pets", per_class=5)
    cache_dir = root / "cache"
    runner = CliRunner()

    def run(*args):
        result = runner.invoke(main, [str(a) for a in args], catch_exceptions=False)
        assert result.exit_code == 0, result.output
        return result.stdout

    run("extract", data, *TINY_CLI_ARGS, "--cache-dir", cache_dir)
    cache = next(cache_dir.glob("*.h5"))
    run("fit-head", cache, "--head", "logreg", "--cache-dir", cache_dir)
    head = next((cache_dir / "heads" / cache.stem).glob("logreg-*.json"))
    first = run("fine-tune", cache, "--from-head", head, "--unfreeze", "block5", "--epochs", "1",
                "--cache-dir", cache_dir)
    second = run("fine-tune", cache, "--from-head", head, "--unfreeze", "block5", "--epochs", "1",
                 "--cache-dir", cache_dir)
    boundary = next(path for path in cache_dir.glob("*.h5") if path != cache)
    return cache_dir, cache, boundary, first, second


def test_fine_tune_says_the_boundary_cache_size_and_whether_it_was_built(tuned):
    _, cache, boundary, first, second = tuned
    megabytes = boundary.stat().st_size / MEGABYTE
    assert f"Boundary   {boundary.name}: {megabytes:.1f} MB on disk, built now" in first
    assert f"Boundary   {boundary.name}: {megabytes:.1f} MB on disk, reused" in second
    assert f"`cache rm` of {cache.name} removes it" in first


def test_cache_ls_marks_the_boundary_cache_and_open_cache_sets_it_aside(tuned, cli):
    cache_dir, cache, boundary, _, _ = tuned
    text = cli(["cache", "ls", "--cache-dir", cache_dir]).stdout
    line = next(line for line in text.splitlines() if line.startswith(str(boundary)))
    assert f"(fine-tune boundary of {cache.name}" in line and "vgg16/block4_pool" in line
    assert "Boundary   1 fine-tune boundary caches" in text
    assert api.open_cache(cache_dir).path == cache  # the boundary cache is not a candidate beside it
    assert api.open_cache(cache_dir, layer="block4_pool").path == boundary


def test_cache_rm_removes_the_boundary_cache_with_its_cache_unless_kept(tuned, cli, tmp_path):
    cache_dir, cache, boundary, _, _ = tuned
    copy = tmp_path / "copy"
    copy.mkdir()
    shutil.copytree(cache_dir / "heads", copy / "heads")
    for path in (cache, boundary):
        shutil.copy2(path, copy / path.name)
    # the sidecars name the originals' boundary path: point them at the copy
    for sidecar in (copy / "heads").rglob("*.json"):
        sidecar.write_text(sidecar.read_text().replace(str(cache_dir.resolve()), str(copy.resolve())))
    kept, _ = cli.json(["cache", "rm", "--yes", "--keep-boundaries", "--cache-dir", copy, copy / cache.name])
    assert str(copy / cache.name) in kept["removed"][0] and (copy / boundary.name).exists()
    for path in (cache, boundary):
        shutil.copy2(path, copy / path.name)
    shutil.copytree(cache_dir / "heads" / cache.stem, copy / "heads" / cache.stem)
    for sidecar in (copy / "heads").rglob("*.json"):
        sidecar.write_text(sidecar.read_text().replace(str(cache_dir.resolve()), str(copy.resolve())))
    removed, _ = cli.json(["cache", "rm", "--yes", "--cache-dir", copy, "pets/layer=block5_pool"])
    assert str(copy / boundary.name) in removed["removed"][0] and not (copy / boundary.name).exists()
    assert not (copy / cache.name).exists() and not list(copy.glob("*.lock"))
