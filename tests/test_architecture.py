"""The structure docs/architecture.md describes: no import cycle in ``vision`` (function-local imports
included), every top-level part of ``vision`` in a layer of the import-linter contract, and commands only
in ``vision/cli``. (``make test`` runs ``lint-imports`` for the layer order itself.)"""
from __future__ import annotations

import ast
import re
import sys
from pathlib import Path
from typing import Dict, List, Set

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = ROOT / "vision"


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts = parts[:-1]
    return ".".join(parts)


def _modules() -> Dict[str, Path]:
    return {_module_name(path): path for path in PACKAGE.rglob("*.py")}


def _imported_modules(name: str, path: Path, known: Set[str]) -> Set[str]:
    """Every ``vision`` module ``name`` imports, wherever the import statement is (module level, inside a
    function, under ``if``); ``from package import module`` counts as importing that module."""
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        targets: List[str] = []
        if isinstance(node, ast.Import):
            targets = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package
                for _ in range(node.level - 1):
                    base = base.rpartition(".")[0]
                module = f"{base}.{node.module}" if node.module else base
            else:
                module = node.module or ""
            targets = [f"{module}.{alias.name}" for alias in node.names] + [module]
        for target in targets:
            while target and target not in known:
                target = target.rpartition(".")[0]
            if target and target != name and target.startswith("vision"):
                found.add(target)
    return found


def _cycles(graph: Dict[str, Set[str]]) -> List[List[str]]:
    """Strongly connected components of more than one module (Tarjan), each sorted."""
    index: Dict[str, int] = {}
    low: Dict[str, int] = {}
    stack: List[str] = []
    on_stack: Set[str] = set()
    components: List[List[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for successor in sorted(graph[node]):
            if successor not in index:
                visit(successor)
                low[node] = min(low[node], low[successor])
            elif successor in on_stack:
                low[node] = min(low[node], index[successor])
        if low[node] == index[node]:
            component = []
            while True:
                member = stack.pop()
                on_stack.discard(member)
                component.append(member)
                if member == node:
                    break
            if len(component) > 1:
                components.append(sorted(component))

    for node in sorted(graph):
        if node not in index:
            visit(node)
    return components


def test_no_import_cycle_counting_function_local_imports():
    modules = _modules()
    known = set(modules)
    # A package's __init__ is imported with each of its modules; edges into it are kept, as Python runs it.
    graph = {name: _imported_modules(name, path, known) for name, path in modules.items()}
    assert _cycles(graph) == []


def test_the_cycle_finder_finds_a_cycle_through_a_function_local_import(tmp_path):
    graph = {"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}
    assert _cycles(graph) == [["a", "b", "c"]]
    modules = {"vision.x": "import vision.y\n", "vision.y": "def f():\n    from vision import x\n"}
    edges = {}
    for name, text in modules.items():
        path = tmp_path / f"{name.rpartition('.')[2]}.py"
        path.write_text(text)
        edges[name] = _imported_modules(name, path, set(modules))
    assert _cycles(edges) == [["vision.x", "vision.y"]]


def _contract_layers() -> Set[str]:
    if sys.version_info >= (3, 11):
        import tomllib
    else:  # pragma: no cover - Python 3.9/3.10
        tomllib = pytest.importorskip("tomli")
    config = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))
    contract = config["tool"]["importlinter"]["contracts"][0]
    return {name.strip() for layer in contract["layers"] for name in layer.split("|")}


def test_every_part_of_vision_is_in_a_layer_of_the_contract():
    parts = {path.stem if path.is_file() else path.name for path in PACKAGE.iterdir()
             if (path.suffix == ".py" and path.name != "__init__.py") or (path / "__init__.py").is_file()}
    assert parts - _contract_layers() == set()


def test_commands_live_in_vision_cli():
    """No module outside vision/cli defines ``main`` or builds an argparse parser, except the
    ``__main__.py`` shims of ``python -m``."""
    offenders = []
    for name, path in _modules().items():
        if name.startswith("vision.cli") or path.name == "__main__.py":
            continue
        tree = ast.parse(path.read_text(encoding="utf-8"))
        defines_main = any(isinstance(node, ast.FunctionDef) and node.name == "main" for node in tree.body)
        builds_parser = re.search(r"\bArgumentParser\(", path.read_text(encoding="utf-8")) is not None
        if defines_main or builds_parser:
            offenders.append(name)
    assert offenders == []


def test_python_m_shims_only_call_the_command():
    shims = sorted(PACKAGE.rglob("__main__.py"))
    assert shims
    for shim in shims:
        body = ast.parse(shim.read_text(encoding="utf-8")).body
        statements = [ast.unparse(node) for node in body
                      if not (isinstance(node, ast.Expr) and isinstance(node.value, ast.Constant))]
        assert len(statements) == 3 and statements[0] == "import sys" and statements[2] == "sys.exit(main())", shim
        assert re.fullmatch(r"from vision\.cli\.\w+ import main", statements[1]), shim
