"""The README's journey, in its order, in one folder: quickstart, the "Using it" commands, the Python example.

Run as written from a working directory laid out as the README assumes (`cache/` there, the dataset
at `path/to/dataset`, a `photo.jpg`), with two liberties that keep it fast and offline: the
extractions use the suite's tiny random-weight VGG16 (`TINY_CLI_ARGS`, appended to `extract`; the
same options for quickstart's own extraction, whose closing ImageNet predictions `test_quickstart.py`
checks with genuine weights), and the `<key>`, `<cache>`, `<time>` placeholders are filled from
the files the earlier commands wrote.
"""

from __future__ import annotations

import dataclasses
import re
import shlex
import shutil
from pathlib import Path

import pytest
from conftest import REPO_ROOT, TINY_BACKBONE, TINY_CLI_ARGS, make_dataset

README = (REPO_ROOT / "README.md").read_text()
#: A placeholder in a README command: <key>, <cache>, <time>.
PLACEHOLDER = re.compile(r"<(key|cache|time)>")


def _block(marker: str, language: str) -> str:
    return re.search(rf"<!-- {marker} -->\n```{language}\n(.*?)```", README, re.S).group(1)


def _commands(block: str) -> list[list[str]]:
    """`python cli.py ...` lines of a bash block, comments dropped, as argument lists."""
    found = []
    for line in block.splitlines():
        line = line.split("  #", 1)[0].strip()
        if line.startswith("python cli.py "):
            found.append(shlex.split(line)[2:])
    return found


def _fill(argument: str) -> str:
    """A README argument with its placeholders filled from what exists on disk (exactly one match)."""
    if not PLACEHOLDER.search(argument):
        return argument
    matches = sorted(Path(".").glob(PLACEHOLDER.sub("*", argument)))
    assert len(matches) == 1, f"{argument} should name one file, found {matches}"
    return str(matches[0])


@pytest.fixture
def journey_dir(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    make_dataset(tmp_path / "path" / "to" / "dataset")
    shutil.copy(next((tmp_path / "path" / "to" / "dataset" / "test" / "dog").glob("*.jpg")), tmp_path / "photo.jpg")
    import pipeline.quickstart as quickstart

    original = quickstart.run_quickstart

    def tiny_quickstart(cache_dir, options, **kwargs):
        return original(cache_dir, dataclasses.replace(options, **TINY_BACKBONE), **kwargs)

    monkeypatch.setattr(quickstart, "run_quickstart", tiny_quickstart)
    monkeypatch.setattr(quickstart, "sample_photo_predictions", lambda cache_dir: (None, "not in this test"))
    return tmp_path


def test_the_readme_journey_runs_in_its_order(journey_dir, cli, capsys):
    setup = re.search(r"## Set up and run\n.*?```bash\n(.*?)```", README, re.S).group(1)
    assert "python cli.py quickstart" in setup
    result = cli(["quickstart"])
    assert result.exit_code == 0, result.output

    commands = _commands(_block("readme-journey", "bash"))
    assert [c[0] for c in commands] == ["extract", "cache", "fit-head", "fit-head", "fit-head", "report", "audit",
                                         "predict"]
    outputs = []
    for command in commands:
        args = [_fill(argument) for argument in command] + (TINY_CLI_ARGS if command[0] == "extract" else [])
        result = cli(args)
        assert result.exit_code == 0, f"README command `{' '.join(command)}` failed:\n{result.output}"
        outputs.append(result.stdout)
    extract, listing, *_, report, audit, predict = outputs
    assert "dataset-vgg16-block5_pool-" in extract
    assert "quickstart-shapes" in listing and "dataset" in listing
    assert all(kind in report for kind in ("logreg", "svm", "gap-dense"))
    assert "Near-duplicates" in audit and "Label issues" in audit and "Outliers" in audit
    assert predict.startswith("photo.jpg: ")

    code = _block("api-example", "python")
    assert 'api.open_cache("cache")' in code
    exec(compile(code, "README api-example", "exec"), {})  # as written: cache/ holds quickstart's cache and ours
    assert re.search(r"valid top-1 \d\.\d{3}, mean per-class \d\.\d{3}", capsys.readouterr().out)
    recorded = list(Path("cache/heads").glob("dataset-vgg16-*/hist-gradient-boosting-*.json"))
    assert len(recorded) == 1, "the example recorded its model beside the dataset's cache, not quickstart's"
