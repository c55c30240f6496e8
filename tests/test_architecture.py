"""docs/architecture.md stays true: its tree lists every module of pipeline/, and nothing that is gone."""

from __future__ import annotations

import re

from conftest import REPO_ROOT

INDENT = 2


def _documented_modules() -> set[str]:
    text = (REPO_ROOT / "docs" / "architecture.md").read_text()
    block = re.search(r"## The tree, one line per module\n\n```\n(.*?)```", text, re.S).group(1)
    stack: list[tuple[int, str]] = []
    modules = set()
    for line in block.splitlines():
        if not line.strip():
            continue
        depth = (len(line) - len(line.lstrip())) // INDENT
        name = line.split()[0]
        stack = [(d, n) for d, n in stack if d < depth]
        path = "".join(n for _, n in stack) + name
        if name.endswith("/"):
            stack.append((depth, name))
        elif name.endswith(".py"):
            modules.add(path)
    return modules


def test_the_tree_lists_every_module_and_no_other():
    actual = {str(p.relative_to(REPO_ROOT)) for p in (REPO_ROOT / "pipeline").rglob("*.py") if p.name != "__init__.py"}
    documented = {p for p in _documented_modules() if p.startswith("pipeline/") and not p.endswith("__init__.py")}
    assert sorted(actual - documented) == [], "modules missing from docs/architecture.md"
    assert sorted(documented - actual) == [], "docs/architecture.md lists modules that do not exist"
