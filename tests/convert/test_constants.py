"""``--const NAME=VALUE``: an input bound to a constant before conversion. The artifact doesn't
take it; the source runs with it as the reference; a TorchScript scalar argument left unbound,
or a constant naming no input, is exit 2."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

import portkit
import portkit.api
from portkit.errors import ExitCode, UsageError
from portkit.fixtures import FIXTURES
from portkit.specs import make_inputs
from tests.schema import SNAPSHOT, assert_schema, key_paths

torch = pytest.importorskip("torch")

TS, ONNX = "sample_rate", "onnx_sample_rate"


def _artifact_inputs_and_output(path: Path, x: np.ndarray) -> tuple[list[str], np.ndarray]:
    """The artifact's input names and its output on ``x``, run by its own runtime."""
    if path.suffix == ".tflite":
        from ai_edge_litert.interpreter import Interpreter

        it = Interpreter(model_path=str(path))
        it.allocate_tensors()
        (detail,) = it.get_input_details()
        it.set_tensor(detail["index"], x)
        it.invoke()
        names = [d["name"] for d in it.get_input_details()]
        return names, it.get_tensor(it.get_output_details()[0]["index"])
    import onnxruntime

    session = onnxruntime.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    names = [i.name for i in session.get_inputs()]
    return names, session.run(None, {names[0]: x})[0]


@pytest.mark.parametrize("target", ["onnx", "tflite"])
def test_torchscript_sr_argument_bound_converts_and_runs_without_it(
        saved_models, workers, tmp_path: Path, target: str) -> None:
    src = saved_models(TS, "torchscript")
    out = tmp_path / f"sr.{target}"
    report = portkit.convert(src, target, out, inputs=FIXTURES[TS].input_flags,
                             consts=["sr=16000"], workers=workers)
    assert report.exit_code == ExitCode.OK, [a.error for a in report.routes_tried]
    assert report.constants == {"sr": 16000}
    assert report.preparation is not None and report.preparation.tool == "bind-constants"
    assert "(1 of 1 prim::If decided by them folded)" in report.preparation.detail
    assert [s.name for s in report.inputs] == ["x"]
    # The reference was the source run with sr=16000: the artifact gives the 16 kHz branch on the
    # reference's input, which differs from what the source gives at 8 kHz.
    x = make_inputs(list(report.inputs), seed=report.seed)["x"]
    names, got = _artifact_inputs_and_output(out, x)
    assert names == ["x"] or all("sr" not in n for n in names)
    module = torch.jit.load(str(src))
    with torch.no_grad():
        at_16k = module(torch.from_numpy(x), 16000).numpy()
        at_8k = module(torch.from_numpy(x), 8000).numpy()
    assert np.abs(got - at_16k).max() < 1e-4
    assert np.abs(at_8k - at_16k).max() > 0.1
    data = json.loads(report.to_json())
    # The snapshot's keys for this target, and the preparation hop's (None without --const).
    snapshot = set(json.loads(SNAPSHOT.read_text())[f"convert_{target}"])
    assert key_paths(data) == snapshot | {f"preparation.{k}" for k in (
        "from", "to", "tool", "seconds", "detail")}
    assert data["constants"] == {"sr": 16000}
    assert data["preparation"]["tool"] == "bind-constants"
    assert report.converter_seconds >= report.preparation.seconds


def test_onnx_scalar_input_feeding_an_if_bound_converts_to_tflite(saved_models, workers,
                                                                  tmp_path: Path) -> None:
    src = saved_models(ONNX, "onnx")
    before = src.read_bytes()
    out = tmp_path / "sr.tflite"
    report = portkit.convert(src, "tflite", out, consts={"sr": 16000}, workers=workers)
    assert report.exit_code == ExitCode.OK, [a.error for a in report.routes_tried]
    assert report.route_name == "onnx2tf" and report.constants == {"sr": 16000}
    assert report.preparation is not None
    assert "(1 of 1 If decided by them inlined)" in report.preparation.detail
    assert report.mobile is not None and [t.name for t in report.mobile.inputs] == ["x"]
    assert src.read_bytes() == before  # neither the binding nor onnx2tf wrote to the source


def test_onnx_if_without_const_does_not_convert(saved_models, workers, tmp_path: Path) -> None:
    # What --const is for: onnx2tf fails on this If (measured: KeyError on a branch's weight).
    src = saved_models(ONNX, "onnx")
    before = src.read_bytes()
    report = portkit.convert(src, "tflite", tmp_path / "sr.tflite", route="onnx2tf",
                             workers=workers)
    assert report.exit_code == ExitCode.CONVERSION_FAILED
    assert src.read_bytes() == before  # onnx2tf got a copy: it rewrites the file it is given


def test_validate_feeds_the_constant_to_the_reference_only(saved_models, workers,
                                                           tmp_path: Path) -> None:
    src = saved_models(TS, "torchscript")
    out = tmp_path / "sr.onnx"
    assert portkit.convert(src, "onnx", out, inputs=FIXTURES[TS].input_flags,
                           consts=["sr=16000"], workers=workers).exit_code == ExitCode.OK
    same = portkit.api.validate(out, src, inputs=FIXTURES[TS].input_flags, consts=["sr=16000"],
                                save_bundle=tmp_path / "bundle", workers=workers)
    assert same.exit_code == ExitCode.OK and same.constants == {"sr": 16000}
    assert [s.name for s in same.inputs] == ["x"]
    assert_schema("validate", json.loads(same.to_json()))
    replayed = portkit.api.replay(tmp_path / "bundle")  # the bundle keeps the constant
    assert replayed.exit_code == ExitCode.OK and replayed.constants == {"sr": 16000}
    other = portkit.api.validate(out, src, inputs=FIXTURES[TS].input_flags, consts=["sr=8000"],
                                 workers=workers)
    assert other.exit_code == ExitCode.PARITY_FAILED  # the 16 kHz artifact is not the 8 kHz model


def test_unbound_torchscript_scalar_argument_is_exit_2_naming_const(saved_models,
                                                                    workers) -> None:
    src = saved_models(TS, "torchscript")
    with pytest.raises(UsageError, match=r"forward takes sr: int, which portkit can't feed as "
                                         r"a tensor; pass --const sr=") as raised:
        portkit.convert(src, "onnx", inputs=FIXTURES[TS].input_flags, workers=workers)
    assert raised.value.exit_code == ExitCode.INVALID_INPUT


@pytest.mark.parametrize(("consts", "message"), [
    (["rate=16000"], r"--const rate: no such input; the model's inputs are x, sr"),
    (["sr=0.5"], r"--const sr=0.5: the input is int64; give a whole number"),
])
def test_onnx_const_naming_no_input_or_a_wrong_value_is_exit_2(saved_models, workers,
                                                               consts, message) -> None:
    with pytest.raises(UsageError, match=message):
        portkit.convert(saved_models(ONNX, "onnx"), "tflite", consts=consts, workers=workers)


def test_const_on_a_format_it_cannot_bind_is_exit_2(saved_models) -> None:
    with pytest.raises(UsageError, match="--const binds inputs of TorchScript and ONNX"):
        portkit.convert(saved_models("cnn", "pt2"), "onnx", consts=["x=1"])
