"""docs/architecture.md stays true: its tree lists every module of pipeline/, and imports run down the stages."""

from __future__ import annotations

import ast
import functools
import re
import subprocess
import sys
from pathlib import Path

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


# --- imports run down the stages ---------------------------------------------------------------

#: The stages in data-flow order, lowest first. A module may import its own stage and earlier ones,
#: never a later one. The stages of one tier are peers (each builds on those before it): they may import
#: each other, as long as no import cycle forms. The package root and `atomic`/`errors` sit below all.
STAGE_TIERS = (
    ("pipeline", "atomic", "errors", "npz_safety"),
    ("data",),
    ("backbones",),
    ("cache",),
    ("extract",),
    ("heads",),
    ("finetune", "predict", "explain", "export", "report", "interop", "audit", "search", "caches"),
    ("api", "quickstart"),
    ("cli",),
)
TIER_OF = {stage: tier for tier, stages in enumerate(STAGE_TIERS) for stage in stages}

#: Imports that still run up the stages, each with its reason. Nothing else may, and an entry whose
#: import is gone must be removed.
UPWARD_IMPORTS_ALLOWED: dict[tuple[str, str], str] = {}


def _module_name(path) -> str:
    parts = path.relative_to(REPO_ROOT).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _pipeline_modules() -> dict:
    """Every module of pipeline/ by dotted name -> its file."""
    return {_module_name(p): p for p in (REPO_ROOT / "pipeline").rglob("*.py")}


def _imported_modules(name: str, path, modules: dict) -> set[str]:
    """The pipeline modules `name` imports anywhere in its file (top level, in functions, under TYPE_CHECKING)."""
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            targets = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join(anchor + ([node.module] if node.module else []))
            # `from pipeline.x import y` imports the module pipeline.x.y when there is one, else pipeline.x
            targets = [f"{base}.{alias.name}" if f"{base}.{alias.name}" in modules else base for alias in node.names]
        else:
            continue
        found.update(t for t in targets if t == "pipeline" or t.startswith("pipeline."))
    return found - {name}


@functools.cache
def _import_graph() -> dict[str, set[str]]:
    """Module -> the pipeline modules it imports (parsed once per test run; do not mutate)."""
    modules = _pipeline_modules()
    return {name: _imported_modules(name, path, modules) for name, path in modules.items()}


def _stage(module: str) -> str:
    return module.split(".")[1] if "." in module else module


def test_every_pipeline_module_has_a_stage():
    unplaced = sorted({_stage(m) for m in _pipeline_modules()} - set(TIER_OF))
    assert unplaced == [], "add these subpackages or modules of pipeline/ to STAGE_TIERS"


def test_no_import_runs_up_the_stages():
    upward = {(module, imported) for module, imports in _import_graph().items() for imported in imports
              if TIER_OF[_stage(imported)] > TIER_OF[_stage(module)]}
    assert sorted(upward - set(UPWARD_IMPORTS_ALLOWED)) == [], "imports of a later stage (see docs/architecture.md)"
    assert sorted(set(UPWARD_IMPORTS_ALLOWED) - upward) == [], "allowed upward imports that are gone: remove them"


def test_stage_numbers_agree_with_the_tiers():
    """Each subpackage's docstring and its line in docs/architecture.md open with its tier's number, and the
    package map in pipeline/__init__.py names every stage."""
    import pipeline

    text = (REPO_ROOT / "docs" / "architecture.md").read_text()
    for init in sorted((REPO_ROOT / "pipeline").glob("*/__init__.py")):
        stage = init.parent.name
        docstring = ast.get_docstring(ast.parse(init.read_text())) or ""
        assert docstring.startswith(f"Stage {TIER_OF[stage]}"), f"pipeline/{stage}/__init__.py"
        assert re.search(rf"^  {stage}/ +stage {TIER_OF[stage]}:", text, re.M), f"docs/architecture.md: {stage}/"
        assert re.search(rf"\b{stage}\b", pipeline.__doc__), f"pipeline/__init__.py's map lacks {stage}"


def _cycle_through(graph: dict[str, set[str]]) -> list[str] | None:
    """One import cycle of `graph` as [a, b, ..., a], or None when there is none."""
    done, path, on_path = set(), [], set()

    def visit(module):
        path.append(module)
        on_path.add(module)
        for imported in sorted(graph.get(module, ())):
            if imported in on_path:
                return path[path.index(imported):] + [imported]
            if imported not in done:
                cycle = visit(imported)
                if cycle:
                    return cycle
        on_path.discard(path.pop())
        done.add(module)
        return None

    for module in sorted(graph):
        if module not in done:
            cycle = visit(module)
            if cycle:
                return cycle
    return None


def test_no_import_cycle_between_modules():
    assert _cycle_through(_import_graph()) is None


def test_the_cycle_check_finds_a_cycle_and_accepts_a_chain():
    assert _cycle_through({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == ["a", "b", "c", "a"]
    assert _cycle_through({"a": {"b"}, "b": {"c"}, "c": set(), "d": {"a", "c"}}) is None


# --- the linter sees every module ----------------------------------------------------------------


def test_ruff_checks_every_module_of_pipeline():
    """No exclude pattern in pyproject.toml hides a folder of pipeline/ (as `cache` once hid pipeline/cache/)."""
    listed = subprocess.run([sys.executable, "-m", "ruff", "check", "--show-files", "."], cwd=REPO_ROOT,
                            capture_output=True, text=True, check=True).stdout
    checked = {Path(line.strip()).resolve() for line in listed.splitlines() if line.strip().endswith(".py")}
    modules = {p.resolve() for p in (REPO_ROOT / "pipeline").rglob("*.py")}
    assert len(modules) > 1
    missing = sorted(str(p.relative_to(REPO_ROOT)) for p in modules - checked)
    assert missing == [], "pipeline modules that `ruff check .` skips (see extend-exclude in pyproject.toml)"
