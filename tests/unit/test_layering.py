"""The package is layered (DESIGN.md §2): nothing imports upward. This test keeps it so."""

from __future__ import annotations

import ast
from pathlib import Path

import raymix

PKG = Path(raymix.__file__).parent
ALLOWED: dict[str, set[str]] = {
    "errors": set(),
    "config": {"errors"},
    "data": {"config", "errors"},
    "tracking": {"config", "errors"},
    "eval": {"config", "data", "tracking", "errors"},
    "train": {"data", "config", "tracking", "eval", "errors"},
    # the mixing-law searcher fits analysis' law (pure numpy; analysis imports no sweep)
    "sweep": {"train", "data", "config", "tracking", "eval", "analysis", "errors"},
    "analysis": {"tracking", "config", "errors"},
    "cli": {"sweep", "train", "data", "config", "tracking", "eval", "analysis", "errors"},
    "__main__": {"cli"},
    "__init__": set(),
}


def _layer(path: Path) -> str:
    rel = path.relative_to(PKG)
    return rel.parts[0] if len(rel.parts) > 1 else rel.stem


def _imports(path: Path) -> set[str]:
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        names = []
        if isinstance(node, ast.Import):
            names = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names = [node.module]
        for n in names:
            parts = n.split(".")
            if parts[0] == "raymix" and len(parts) > 1:
                found.add(parts[1])
    return found


def test_no_module_imports_upward() -> None:
    bad = []
    for path in sorted(PKG.rglob("*.py")):
        layer = _layer(path)
        for target in _imports(path) - {layer}:
            if target not in ALLOWED[layer]:
                bad.append(f"{path.relative_to(PKG)} imports raymix.{target}")
    assert not bad, "\n".join(bad)


def test_every_layer_is_known() -> None:
    layers = {_layer(p) for p in PKG.rglob("*.py")}
    assert layers <= set(ALLOWED), layers - set(ALLOWED)
