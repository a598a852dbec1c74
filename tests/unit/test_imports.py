"""No import cycles between raymix modules, not even through imports inside functions, and every
module imports on its own in a fresh interpreter."""

from __future__ import annotations

import ast
import graphlib
import re
import subprocess
import sys
from pathlib import Path

import pytest

import raymix

PKG = Path(raymix.__file__).parent


def _module(path: Path) -> str:
    parts = ("raymix", *path.relative_to(PKG).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


MODULES = {_module(p): p for p in sorted(PKG.rglob("*.py"))}
# a string naming a module (``"raymix.eval.harness"``, ``"raymix.eval.gsm8k:make_task"``) is
# an import made later by importlib: a lazy registry entry, a plugin list
_LAZY = re.compile(r"raymix(\.\w+)+(:\w+)?")


def _resolve(name: str) -> str | None:
    """The raymix module that ``import name`` loads (``from a.b import c`` may name a module c)."""
    while name and name not in MODULES:
        name = name.rpartition(".")[0]
    return name or None


def import_graph() -> dict[str, set[str]]:
    """{module: raymix modules it imports anywhere (top level, inside functions, or lazily by a
    string that names the module)}; a package's ``__init__`` is implied by importing any of its
    modules, so it is an edge too."""
    graph: dict[str, set[str]] = {}
    for mod, path in MODULES.items():
        package = mod if path.name == "__init__.py" else mod.rpartition(".")[0]
        targets: set[str] = set()
        for node in ast.walk(ast.parse(path.read_text())):
            names: list[str] = []
            if isinstance(node, ast.Import):
                names = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom):
                base = node.module or ""
                if node.level:
                    up = package.split(".")[: len(package.split(".")) - node.level + 1]
                    base = ".".join([*up, base] if base else up)
                names = [f"{base}.{a.name}" for a in node.names] + [base]
            elif isinstance(node, ast.Constant) and isinstance(node.value, str):
                names = [node.value.partition(":")[0]] if _LAZY.fullmatch(node.value) else []
            for n in names:
                if n.startswith("raymix"):
                    target = _resolve(n)
                    if target and target != mod:
                        targets.add(target)
        graph[mod] = targets
    return graph


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Every cycle graphlib finds, one at a time (each found cycle's first edge is cut), each
    written in import order: ``[a, b, a]`` means a imports b and b imports a."""
    graph = {k: set(v) for k, v in graph.items()}
    found = []
    while True:
        try:
            graphlib.TopologicalSorter(graph).prepare()
            return found
        except graphlib.CycleError as e:
            cycle = e.args[1]  # each node is imported by the next one
            found.append(cycle[::-1])
            graph[cycle[1]].discard(cycle[0])


def _without_package_inits(graph: dict[str, set[str]]) -> dict[str, set[str]]:
    """A package's ``__init__`` re-exporting its modules is not a cycle with them."""
    return {
        m: {t for t in ts if not (MODULES[t].name == "__init__.py" and m.startswith(t + "."))}
        for m, ts in graph.items()
    }


def test_no_import_cycles() -> None:
    found = cycles(_without_package_inits(import_graph()))
    assert not found, "import cycles:\n" + "\n".join(" -> ".join(c) for c in found)


def test_the_cycle_finder_finds_a_function_level_cycle(tmp_path: Path) -> None:
    graph = {"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": set()}
    assert len(cycles(graph)) == 1
    assert cycles({"a": {"b"}, "b": set()}) == []


@pytest.mark.parametrize("module", sorted(MODULES))
def test_every_module_imports_alone(module: str) -> None:
    done = subprocess.run(
        [sys.executable, "-c", f"import {module}"], capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 0, done.stderr[-2000:]
