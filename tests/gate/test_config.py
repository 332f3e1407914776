"""``portkit.toml``: per-model and per-output policies, read as the flags are."""

from __future__ import annotations

from pathlib import Path

import pytest

from portkit.errors import UsageError
from portkit.gate import load_config
from portkit.policies import OutputKind, Tolerance


def test_output_kinds_and_scale_tolerances_per_output(tmp_path: Path) -> None:
    path = tmp_path / "portkit.toml"
    path.write_text('''
[[model]]
name = "enc"
fixture = "cnn"
kind = "pt2"
targets = ["onnx"]
scale_tol = 1e-3
[model.outputs.embedding]
kind = "embedding"
[model.outputs.logits]
atol = 1e-3
''')
    [entry] = load_config(path)
    assert entry.kind == "pt2" and entry.tolerance == Tolerance(scale_tol=1e-3)
    assert entry.per_output["embedding"] == Tolerance(scale_tol=1e-3, kind=OutputKind.EMBEDDING)
    # atol without scale_tol is numpy.allclose, as --atol is
    assert entry.per_output["logits"] == Tolerance(atol=1e-3, scale_tol=0.0)
    path.write_text(path.read_text().replace('"embedding"\n', '"vector"\n'))
    with pytest.raises(UsageError, match="--output-kind vector: one of"):
        load_config(path)
