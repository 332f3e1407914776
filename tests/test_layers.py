"""Imports point down: each unit of portkit (a top-level module or a subpackage) imports only the
units below it in ``LAYERS``, so no import closes a cycle; nor do the imports between files,
within a unit too, where the layers don't look (``test_no_file_level_import_cycle``).

Read from the source, not from ``sys.modules``: imports inside functions count, and so does a
worker target written as a string (``"portkit.x:func"``); imports under ``if TYPE_CHECKING:``
don't (they never run).
"""

from __future__ import annotations

import ast
import functools
import re
from pathlib import Path

import pytest

PACKAGE = Path(__file__).parents[1] / "portkit"
# Bottom to top; a unit may import units of earlier layers (and, in the first layer, each other).
LAYERS: list[set[str]] = [
    {"errors", "specs", "shapes", "io", "formats", "bounds", "traces", "quantization", "speed",
     "profiles", "schema"},  # ground floor: values, files, formats
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


def imports(path: Path, module: str | None = None) -> list[tuple[str, tuple[str, ...]]]:
    """What ``path`` (the module ``module``) imports, wherever in the file, outside
    TYPE_CHECKING: ``(module, names)`` per import, relative imports made absolute; ``names`` is
    empty for ``import a.b`` and a worker target string, else what ``from module import ...``
    names (submodules or names defined in ``module``). Each file is parsed once per version
    (every test here walks the whole package)."""
    return list(_imports(path, module, path.read_text()))


@functools.lru_cache(maxsize=None)
def _imports(path: Path, module: str | None, text: str
             ) -> tuple[tuple[str, tuple[str, ...]], ...]:
    tree = ast.parse(text)
    module = module or _module(path)
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    type_only = {id(n) for node in ast.walk(tree)
                 if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test)
                 for n in ast.walk(node)}
    found: list[tuple[str, tuple[str, ...]]] = []
    for node in ast.walk(tree):
        if id(node) in type_only:
            continue
        if isinstance(node, ast.Import):
            found += [(a.name, ()) for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                up = package.split(".")[:len(package.split(".")) - node.level + 1]
                base = ".".join(up + ([node.module] if node.module else []))
            found.append((base, tuple(a.name for a in node.names)))
        elif isinstance(node, ast.Constant) and isinstance(node.value, str):
            found += [(f"portkit.{m}", ()) for m in _TARGET.findall(node.value)]
    return tuple((m, names) for m, names in found if m == "portkit" or m.startswith("portkit."))


def imported(path: Path, module: str | None = None) -> set[str]:
    """The portkit modules ``path`` (the module ``module``) imports, wherever in the file,
    outside TYPE_CHECKING: each ``from`` import's module and ``module.name`` for each name (the
    unit is what counts here, and ``from portkit import x`` imports the unit x)."""
    found: set[str] = set()
    for base, names in imports(path, module):
        if base != "portkit" or not names:  # ``from portkit import x`` imports the unit x
            found.add(base)
        found |= {f"{base}.{name}" for name in names}
    return found


def _exists(module: str) -> bool:
    """Whether ``module`` is a file of portkit (a module or a package's ``__init__``)."""
    path = PACKAGE.parent.joinpath(*module.split("."))
    return path.with_suffix(".py").is_file() or (path / "__init__.py").is_file()


def _file(module: str) -> str:
    """The portkit file ``module`` is, or is in (``portkit.x.y:func``'s module, ``a.b.Name``)."""
    while not _exists(module) and "." in module:
        module = module.rpartition(".")[0]
    return module


def imported_files(path: Path, module: str | None = None) -> set[str]:
    """The portkit files (by module name; a package by its ``__init__``) ``path`` imports:
    ``from a.b import c`` imports a/b/c.py where that is a module or package, else a/b (a name
    defined there); ``import a.b`` and a worker target import their module. Importing a
    submodule doesn't count as importing its package's ``__init__`` too, though Python runs it:
    an ``__init__`` re-exporting its submodules is no cycle."""
    found: set[str] = set()
    for base, names in imports(path, module):
        found |= {_file(f"{base}.{name}") for name in names} if names else {_file(base)}
    return found


def graph() -> dict[str, set[str]]:
    """Unit -> the other units it imports."""
    edges: dict[str, set[str]] = {}
    for path in sorted(PACKAGE.rglob("*.py")):
        source = unit(_module(path))
        edges.setdefault(source, set())
        edges[source] |= {unit(m) for m in imported(path)} - {source}
    return edges


def file_graph() -> dict[str, set[str]]:
    """Module (a file of portkit) -> the other portkit files it imports."""
    return {_module(path): imported_files(path) - {_module(path)}
            for path in sorted(PACKAGE.rglob("*.py"))}


def cycles(edges: dict[str, set[str]]) -> list[list[str]]:
    """Import cycles in ``edges``, each as the path that closes it (``[a, b, a]``): at least one
    through every set of nodes that import each other, none when there are none."""
    state: dict[str, int] = {}  # 1 on the stack, 2 done
    found: list[list[str]] = []

    def visit(node: str, path: list[str]) -> None:
        state[node] = 1
        for nxt in sorted(edges.get(node, ())):
            if state.get(nxt) == 1:
                found.append(path[path.index(nxt):] + [nxt])
            elif nxt not in state:
                visit(nxt, path + [nxt])
        state[node] = 2

    for start in sorted(edges):
        if start not in state:
            visit(start, [start])
    return found


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
    found = cycles(graph())
    assert not found, "import cycle: " + "; ".join(" -> ".join(c) for c in found)


def test_no_file_level_import_cycle() -> None:
    found = cycles(file_graph())
    assert not found, "file-level import cycle: " + "; ".join(" -> ".join(c) for c in found)


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


def test_the_checker_resolves_files(tmp_path: Path) -> None:
    # ``from a import submodule`` is that submodule's file only; ``from a import Name`` is a's
    # file (a package's ``__init__``); ``import a.b``, a worker target and a relative import
    # their module. TYPE_CHECKING still doesn't count; an import inside a function does.
    # (Resolved against portkit's own files: formats/tflite.py is a module, Format is not.)
    sample = tmp_path / "probe.py"
    sample.write_text(
        "from typing import TYPE_CHECKING\n"
        "if TYPE_CHECKING:\n    from portkit.cli import render\n"
        "import portkit.convert.planner\n"
        "from portkit.formats import tflite\n"
        "from portkit.formats import Format\n"
        "from .registry import plan\n"
        "from . import dynamic\n"
        "from portkit import errors\n"
        "def f():\n    from portkit.api import convert\n    return 'portkit.gate.run:run'\n")
    assert imported_files(sample, "portkit.convert.probe") == {
        "portkit.convert.planner", "portkit.formats.tflite", "portkit.formats",
        "portkit.convert.registry", "portkit.convert.dynamic", "portkit.errors",
        "portkit.api", "portkit.gate.run"}


def test_cycles_are_named() -> None:
    edges = {"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}, "e": {"e2"}, "e2": set()}
    assert cycles(edges) == [["a", "b", "c", "a"]]
    assert cycles({"a": {"b"}, "b": set()}) == []
