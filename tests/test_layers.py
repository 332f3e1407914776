"""Imports point down: each unit of portkit (a top-level module or a subpackage) imports only the
units below it in ``LAYERS``, so no import closes a cycle.

Read from the source, not from ``sys.modules``: imports inside functions count, and so does a
worker target written as a string (``"portkit.x:func"``); imports under ``if TYPE_CHECKING:``
don't (they never run).
"""

from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest

PACKAGE = Path(__file__).parents[1] / "portkit"
# Bottom to top; a unit may import units of earlier layers (and, in the first layer, each other).
LAYERS: list[set[str]] = [
    {"errors", "specs", "shapes", "io", "formats", "bounds", "traces", "quantization", "speed",
     "profiles"},  # ground floor: values, files, formats
    {"safety"},
    {"policies"},
    {"options"},
    {"results"},
    {"runtimes"},
    {"fixtures"},
    {"validators"},
    {"convert"},
    {"debug"},
    {"gate"},
    {"api"},
    {"cli"},
    {"__main__", "portkit"},  # the entry points: ``python -m portkit`` and the package itself
]
GROUND = LAYERS[0]
_TARGET = re.compile(r"portkit\.([\w.]+):\w+")


def _module(path: Path) -> str:
    parts = list(path.relative_to(PACKAGE.parent).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def unit(module: str) -> str:
    """``portkit.convert.registry`` -> ``convert``; the package itself is ``portkit``."""
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else "portkit"


def imported(path: Path, module: str | None = None) -> set[str]:
    """The portkit modules ``path`` (the module ``module``) imports, wherever in the file,
    outside TYPE_CHECKING."""
    tree = ast.parse(path.read_text())
    module = module or _module(path)
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    type_only = {id(n) for node in ast.walk(tree)
                 if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test)
                 for n in ast.walk(node)}
    found: set[str] = set()
    for node in ast.walk(tree):
        if id(node) in type_only:
            continue
        if isinstance(node, ast.Import):
            found |= {a.name for a in node.names}
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                up = package.split(".")[:len(package.split(".")) - node.level + 1]
                base = ".".join(up + ([node.module] if node.module else []))
            if base != "portkit":  # ``from portkit import x`` imports the unit x
                found.add(base)
            found |= {f"{base}.{a.name}" for a in node.names}
        elif isinstance(node, ast.Constant) and isinstance(node.value, str):
            found |= {f"portkit.{m}" for m in _TARGET.findall(node.value)}
    return {m for m in found if m == "portkit" or m.startswith("portkit.")}


def graph() -> dict[str, set[str]]:
    """Unit -> the other units it imports."""
    edges: dict[str, set[str]] = {}
    for path in sorted(PACKAGE.rglob("*.py")):
        source = unit(_module(path))
        edges.setdefault(source, set())
        edges[source] |= {unit(m) for m in imported(path)} - {source}
    return edges


def _layer(name: str) -> int:
    return next(i for i, layer in enumerate(LAYERS) if name in layer)


def test_every_unit_has_a_layer() -> None:
    placed = set().union(*LAYERS)
    assert set(graph()) <= placed, f"units missing from LAYERS: {set(graph()) - placed}"


@pytest.mark.parametrize("source", sorted(graph()))
def test_imports_point_down(source: str) -> None:
    level = _layer(source)
    up = {t for t in graph()[source]
          if _layer(t) > level or (_layer(t) == level and source not in GROUND)}
    assert not up, f"{source} (layer {level}) imports {sorted(up)} at or above its layer"


def test_no_import_cycle() -> None:
    edges = graph()
    state: dict[str, int] = {}  # 1 on the stack, 2 done

    def visit(node: str, path: list[str]) -> None:
        state[node] = 1
        for nxt in sorted(edges.get(node, ())):
            if state.get(nxt) == 1:
                cycle = path[path.index(nxt):] + [nxt] if nxt in path else [node, nxt]
                pytest.fail("import cycle: " + " -> ".join(cycle))
            if nxt not in state:
                visit(nxt, path + [nxt])
        state[node] = 2

    for start in sorted(edges):
        if start not in state:
            visit(start, [start])


def test_the_ground_floor_imports_nothing_above_it() -> None:
    edges = graph()
    for name in GROUND:
        assert edges[name] <= GROUND, f"{name} imports {sorted(edges[name] - GROUND)}"


def test_the_checker_sees_what_it_must(tmp_path: Path) -> None:
    # An import inside a function and a worker target string count; TYPE_CHECKING doesn't.
    sample = tmp_path / "probe.py"
    sample.write_text(
        "from typing import TYPE_CHECKING\n"
        "if TYPE_CHECKING:\n    from portkit.cli import render\n"
        "from .registry import plan\n"
        "def f():\n    from portkit import api\n    return 'portkit.gate.run:run'\n")
    assert imported(sample, "portkit.convert.probe") == {
        "portkit.api", "portkit.gate.run", "portkit.convert.registry",
        "portkit.convert.registry.plan"}
