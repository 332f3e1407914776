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


@pytest.mark.parametrize("name", ["/abs/path/out/victim", "../../x", "a/b", ".hidden", "", 7])
def test_a_model_name_is_a_plain_file_name(tmp_path: Path, name: object) -> None:
    # It names the model's folder in the work dir and its bundles: never a path.
    path = tmp_path / "portkit.toml"
    value = f'"{name}"' if isinstance(name, str) else str(name)
    path.write_text(f'[[model]]\nname = {value}\nfixture = "cnn"\ntargets = ["onnx"]\n')
    with pytest.raises(UsageError, match=r"#1: name = .*letters, digits"):
        load_config(path)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["portkit.toml"]


def test_two_models_of_one_name_are_refused(tmp_path: Path) -> None:
    path = tmp_path / "portkit.toml"
    model = '[[model]]\nname = "a"\nfixture = "cnn"\ntargets = ["onnx"]\n'
    path.write_text(model + model.replace('fixture = "cnn"', 'source = "missing.pt2"'))
    with pytest.raises(UsageError, match=r"#2: name = 'a' is also model #1's"):
        load_config(path)
    path.write_text(model + model.replace('"a"', '"a.v2"'))
    assert [e.name for e in load_config(path)] == ["a", "a.v2"]
