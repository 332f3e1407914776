"""A ``.pte`` with one weight changed in the file (the float32 bytes of a torch parameter, stored
raw in the program's constant data, scaled by 1.1): ``validate`` fails it (exit 1) and ``debug``
names where it first diverges, the delegate call (by its XNNPACK nodes) and the source op, from
ExecuTorch's ETDump intermediates."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest

from portkit import api
from portkit.fixtures import FIXTURES
from portkit.formats.pte import program_report
from portkit.runtimes.worker import Pool
from tests.conftest import run_cli
from tests.executorch.test_convert import Converted, to_pte
from tests.schema import assert_schema

Saved = Callable[[str, str], Path]


@pytest.fixture(scope="module")
def cnn(saved_models: Saved, tmp_path_factory: pytest.TempPathFactory) -> Converted:
    """The cnn fixture's ExportedProgram as a ``.pte`` (``portkit convert``, once per run)."""
    made = to_pte(tmp_path_factory, "cnn-pt2", lambda _: saved_models("cnn", "pt2"),
                  FIXTURES["cnn"].input_flags)
    assert made.exit_code == 0, made.stderr
    return made


@pytest.fixture(scope="module")
def encoder(saved_models: Saved, workers: Pool,
            tmp_path_factory: pytest.TempPathFactory) -> Converted:
    """The attention fixture (a transformer encoder block) as a ``.pte``: five XNNPACK calls,
    layer norms and a split left to portable kernels between them."""
    made = to_pte(tmp_path_factory, "attention-pt2", lambda _: saved_models("attention", "pt2"),
                  FIXTURES["attention"].input_flags, workers)
    assert made.exit_code == 0, made.stderr
    return made


def changed(pte: Path, weight: object, out: Path, factor: float = 1.1) -> Path:
    """A copy of ``pte`` with the float32 bytes of ``weight`` (a torch parameter, found once
    in the file) scaled by ``factor``."""
    array = weight.detach().numpy().astype(np.float32)  # type: ignore[attr-defined]
    data, raw = pte.read_bytes(), array.tobytes()
    assert data.count(raw) == 1, "the weight is not stored raw, once, in the program"
    out.write_bytes(data.replace(raw, (array * factor).astype(np.float32).tobytes()))
    return out


def test_cnn_with_its_head_changed_fails_validate_and_debug_names_the_delegate_call(
        cnn: Converted, workers: Pool, tmp_path: Path) -> None:
    bad = changed(cnn.pte, FIXTURES["cnn"].module().head.weight, tmp_path / "bad.pte")
    done = run_cli("validate", bad, "--reference", cnn.source)
    assert done.returncode == 1, done.stderr
    said = " ".join(done.stdout.split())
    assert "PARITY FAILED" in said
    assert "First divergence: source linear (aten.linear.default" in said
    assert "-> artifact delegate#1 (XNNPACK:" in said and "Fully Connected" in said
    # What portkit debug reports (its JSON), in workers that have ExecuTorch imported.
    found = api.debug(bad, cnn.source, workers=workers)
    report = found.to_dict()
    assert_schema("debug", report)
    first = report["first_divergence"]
    # The whole CNN is one XNNPACK call, so that call is the finest grain: its output
    # diverges, its input (the image) agrees.
    assert first["source_node"] == "linear"
    assert first["artifact_node"].startswith("delegate#1 (XNNPACK: ")
    assert first["artifact_op_type"] == "DELEGATE_CALL" and first["last_agreeing"] == ["x"]
    assert first["scaled_err"] > 1e-3 and report["exit_code"] == 1


@pytest.mark.parametrize("layer", ["qkv", "mlp"])
def test_encoder_debug_names_the_delegate_call_holding_the_changed_weight(
        encoder: Converted, workers: Pool, tmp_path: Path, layer: str) -> None:
    module = FIXTURES["attention"].module()
    weight = module.qkv.weight if layer == "qkv" else module.mlp[2].weight
    bad = changed(encoder.pte, weight, tmp_path / f"{layer}.pte")
    found = api.debug(bad, encoder.source, inputs=FIXTURES["attention"].input_flags,
                      workers=workers)
    first = found.first_divergence
    assert found.exit_code == 1 and first is not None
    # qkv is the first XNNPACK call (after a portable layer norm), the MLP's second linear the
    # last; everything before it matches the source.
    calls = program_report(encoder.pte).delegate_calls
    assert first.artifact_node.startswith(f"delegate#{1 if layer == 'qkv' else calls} (XNNPACK:")
    assert "Fully Connected" in first.artifact_node and first.artifact_op_type == "DELEGATE_CALL"
    assert first.source_node == ("linear" if layer == "qkv" else "add_1"), first
    assert ("layer_norm" if layer == "qkv" else "layer_norm_1") in first.last_agreeing
    failed = {n.source_tensor for n in found.nodes if n.passed is False}
    agreed = {n.source_tensor for n in found.nodes if n.passed}
    if layer == "mlp":  # all the attention before it agrees
        assert failed == {"add_1"} and {"linear", "softmax", "add", "layer_norm_1"} <= agreed
    else:
        assert "linear" in failed and {"tokens", "layer_norm"} <= agreed
