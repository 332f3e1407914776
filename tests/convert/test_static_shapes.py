"""Traced shape arithmetic folded after TS2EPConverter (``portkit.runtimes.static_shapes``)."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest

from portkit.convert._torch import load_exported_program
from portkit.fixtures import FIXTURES
from portkit.formats import Format
from portkit.runtimes.torch_export import example_args

torch = pytest.importorskip("torch")


@pytest.mark.parametrize("name", ["shuffle", "attention"])
def test_traced_sizes_become_constants(saved_models: Callable[[str, str], Path],
                                       name: str) -> None:
    fixture = FIXTURES[name]
    inputs = list(fixture.inputs)
    program = load_exported_program(saved_models(name, "torchscript"), Format.TORCHSCRIPT, inputs)
    targets = {str(n.target) for n in program.graph.nodes if n.op == "call_function"}
    # What litert-torch can't lower: symbolic sizes, .item() on traced 0-d tensors, their asserts.
    assert not {t for t in targets
                if "sym_size" in t or "_local_scalar_dense" in t or "_assert_scalar" in t}
    assert "aten.floor_divide.default" not in targets
    args = example_args(inputs)
    with torch.no_grad():
        expected = fixture.module()(*args)
        got = program.module()(*args)
    torch.testing.assert_close(got, expected, rtol=1e-5, atol=1e-5)
