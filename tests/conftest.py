"""Shared test fixtures: sample models saved once per session, and a CLI runner."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest

from portkit.fixtures import FIXTURES


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


def run_cli(*args: str | Path, cwd: Path | None = None,
            env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    """Run ``portkit ARGS`` in a fresh interpreter, as a user would (``env`` adds variables)."""
    return subprocess.run([sys.executable, "-m", "portkit", *map(str, args)], cwd=cwd,
                          capture_output=True, text=True, timeout=900,
                          env={**os.environ, **(env or {})})
