"""How the suite runs in CI: `.ci/run` is the README's test command, on pytest-xdist workers, printing the slowest."""

from __future__ import annotations

import configparser
import re
import shlex
from pathlib import Path

import conftest
from conftest import REPO_ROOT


def _pytest_options() -> list[str]:
    config = configparser.ConfigParser()
    config.read(REPO_ROOT / "setup.cfg")
    return shlex.split(config["tool:pytest"]["addopts"])


def test_ci_runs_the_readme_test_command_after_the_lint():
    readme_line = next(line for line in (REPO_ROOT / "README.md").read_text().splitlines() if "# the tests" in line)
    install, tests = (part.strip() for part in readme_line.split("#")[0].split("&&"))
    script = [line.strip() for line in (REPO_ROOT / ".ci" / "run").read_text().splitlines()]
    assert script.index(install) < script.index("ruff check .") < script.index(tests)


def test_the_suite_runs_whole_files_on_two_workers_and_prints_the_slowest():
    options = _pytest_options()
    assert "--durations=15" in options
    assert options[options.index("-n") + 1] == "2" and options[options.index("--dist") + 1] == "loadfile"
    config = configparser.ConfigParser()
    config.read(REPO_ROOT / "setup.cfg")
    test_extra = config["options.extras_require"]["test"].split()
    assert any(re.match(r"pytest-xdist\b", requirement) for requirement in test_extra)


class _Item:
    def __init__(self, path: str, slow: bool):
        self.path, self.slow = Path(path), slow

    def get_closest_marker(self, name):
        return object() if self.slow and name == "slow" else None


def _order(worker, monkeypatch) -> list[tuple[str, bool]]:
    items = [_Item("a.py", False), _Item("b.py", False), _Item("b.py", True), _Item("c.py", False),
             _Item("d.py", True), _Item("d.py", False)]
    monkeypatch.setattr(conftest, "XDIST_WORKER", worker)
    conftest.pytest_collection_modifyitems(None, items)
    return [(item.path.name, item.slow) for item in items]


def test_workers_start_with_the_files_that_hold_a_slow_test_keeping_each_file_together(monkeypatch):
    assert _order("gw0", monkeypatch) == [("b.py", False), ("b.py", True), ("d.py", True), ("d.py", False),
                                          ("a.py", False), ("c.py", False)]
    assert _order(None, monkeypatch) == [("a.py", False), ("b.py", False), ("b.py", True), ("c.py", False),
                                         ("d.py", True), ("d.py", False)]
