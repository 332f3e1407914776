"""ONNX folded where a bound constant or a fixed input shape decides an ``If``
(``convert/onnx_fold``), and the inputs onnx2tf must keep in their layout (RNN states)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from portkit.convert import onnx_fold
from portkit.convert._onnx2tf import rnn_states
from portkit.convert.constants import _bind_onnx
from portkit.fixtures import onnx_models

onnx = pytest.importorskip("onnx")
ort = pytest.importorskip("onnxruntime")


def _ops(model) -> list[str]:
    return [n.op_type for n in model.graph.node]


def test_the_ifs_a_constant_decides_are_told_from_those_shapes_decide() -> None:
    model = onnx_models.stateful_audio()
    # The sample rate's If, and one If on the batch in each of its two branches.
    assert onnx_fold.count_ifs(model, ["sr"]) == (1, 2)
    assert onnx_fold.count_ifs(model, []) == (0, 3)


def test_binding_sr_inlines_its_branch_and_fixing_the_shapes_folds_the_batch_if(
        tmp_path: Path) -> None:
    src, bound = tmp_path / "vad.onnx", tmp_path / "bound.onnx"
    onnx.save(onnx_models.stateful_audio(), str(src))
    detail = _bind_onnx(src, bound, {"sr": 16000})
    assert "(1 of 1 If decided by them inlined; 1 If left, decided by other inputs" in detail
    model = onnx.load(str(bound))
    assert _ops(model).count("If") == 1 and "Relu" in _ops(model)  # the 16 kHz branch
    onnx_fold.fix_shapes(model, {"input": (1, 512), "state": (2, 1, 128)})
    folded = onnx_fold.fold(model)
    assert "If" not in _ops(folded) and not onnx_fold.has_control_flow(folded)
    feeds = {"input": np.random.default_rng(0).standard_normal((1, 512)).astype(np.float32),
             "state": np.random.default_rng(1).standard_normal((2, 1, 128)).astype(np.float32)}
    want = ort.InferenceSession(str(bound)).run(None, feeds)
    got = ort.InferenceSession(folded.SerializeToString()).run(None, feeds)
    for w, g in zip(want, got, strict=True):
        np.testing.assert_allclose(g, w, atol=1e-6)


def test_an_input_reaching_an_rnn_initial_state_is_a_state(tmp_path: Path) -> None:
    path = tmp_path / "bound.onnx"
    src = tmp_path / "vad.onnx"
    onnx.save(onnx_models.stateful_audio(), str(src))
    _bind_onnx(src, path, {"sr": 16000})
    # Through Split into the LSTM's initial_h/initial_c.
    assert rnn_states(onnx.load(str(path))) == ["state"]
    dynamic = tmp_path / "cnn.onnx"
    onnx.save(onnx_models.dynamic_cnn(), str(dynamic))
    assert rnn_states(onnx.load(str(dynamic))) == []


def test_a_fold_the_optimizer_fails_on_leaves_onnx2tf_the_shapes_fixed(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from portkit.convert._onnx2tf import _fix_inputs

    def broken(model):
        raise RuntimeError("the optimizer's own bug")

    monkeypatch.setattr(onnx_fold, "fold", broken)
    path = tmp_path / "vad.onnx"
    model = onnx_models.stateful_audio()  # it branches: folding is tried
    written = _fix_inputs(path, model, {"input": (1, 512), "state": (2, 1, 128)})
    reread = onnx.load(str(path))
    assert "If" in _ops(reread) and _ops(written) == _ops(reread)
    dims = [[d.dim_value for d in i.type.tensor_type.shape.dim] for i in reread.graph.input]
    assert dims[:2] == [[1, 512], [2, 1, 128]]
