"""Shared test fixtures: sample models saved once per session, warm workers, and a CLI runner."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from portkit.fixtures import FIXTURES
from portkit.runtimes.worker import Pool


@pytest.fixture(scope="session")
def saved_models(tmp_path_factory: pytest.TempPathFactory) -> Callable[[str, str], Path]:
    """``saved_models(name, kind)``: a fixture model saved as ``torchscript`` or ``pt2`` (cached)."""
    folder = tmp_path_factory.mktemp("models")
    cache: dict[tuple[str, str], Path] = {}

    def get(name: str, kind: str = "torchscript") -> Path:
        if (name, kind) not in cache:
            sub = folder / kind
            sub.mkdir(exist_ok=True)
            cache[name, kind] = FIXTURES[name].save(sub, kind)
        return cache[name, kind]

    return get


@pytest.fixture(scope="session")
def workers() -> Iterator[Pool]:
    """Workers kept warm across the session's API calls (``workers=``), as ``portkit check``
    keeps them across cases: each framework is imported once, not once per test."""
    with Pool() as pool:
        yield pool


@pytest.fixture(scope="session")
def converted(saved_models: Callable[[str, str], Path], workers: Pool,
              tmp_path_factory: pytest.TempPathFactory) -> Callable[[str, str, str], Path]:
    """``converted(name, kind, target)``: a fixture model converted by its default route, once
    per session, for tests that need an artifact rather than a conversion."""
    import portkit

    folder = tmp_path_factory.mktemp("converted")
    cache: dict[tuple[str, str, str], Path] = {}

    def get(name: str, kind: str, target: str) -> Path:
        if (name, kind, target) not in cache:
            out = folder / f"{name}-{kind}.{target}"
            report = portkit.convert(saved_models(name, kind), target, out,
                                     inputs=FIXTURES[name].input_flags, workers=workers)
            assert report.exit_code == 0, report.routes_tried
            cache[name, kind, target] = out
        return cache[name, kind, target]

    return get


def run_cli(*args: str | Path, cwd: Path | None = None,
            env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    """Run ``portkit ARGS`` in a fresh interpreter, as a user would (``env`` adds variables)."""
    return subprocess.run([sys.executable, "-m", "portkit", *map(str, args)], cwd=cwd,
                          capture_output=True, text=True, timeout=900,
                          env={**os.environ, **(env or {})})
