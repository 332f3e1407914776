"""Issue 27, items 1 and 2: a ``portkit.toml`` model's name names its folder under
``--work-dir`` and its bundle, so it is a plain file name, and each model's own."""

from __future__ import annotations

from pathlib import Path

import pytest

from portkit.errors import UsageError
from portkit.gate import load_config


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
