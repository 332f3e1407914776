"""The Python API: a module in, user inputs from .npz, and the same report as the CLI."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

import portkit
from portkit.errors import ExitCode, InvalidModelError, UsageError
from portkit.fixtures import FIXTURES
from tests.schema import assert_schema

torch = pytest.importorskip("torch")


def test_convert_an_nn_module_with_inputs_from_npz(tmp_path: Path) -> None:
    fixture = FIXTURES["two_io"]
    rng = np.random.default_rng(3)
    npz = tmp_path / "inputs.npz"
    np.savez(npz, image=rng.random((1, 3, 16, 16), dtype=np.float32),
             vec=rng.random((1, 8), dtype=np.float32))
    report = portkit.convert(fixture.module(), "onnx", tmp_path / "m.onnx",
                             inputs=fixture.input_flags, inputs_file=npz)
    assert report.exit_code == ExitCode.OK
    assert [c.runtime for c in report.checks] == ["onnxruntime"]
    assert [o.name for o in report.checks[0].outputs] == ["output_0", "output_1"]
    assert (tmp_path / "m.onnx").exists()


def test_module_without_input_shapes_is_a_usage_error(tmp_path: Path) -> None:
    with pytest.raises(UsageError, match="inputs="):
        portkit.convert(FIXTURES["cnn"].module(), "onnx", tmp_path / "m.onnx")


def test_unknown_target_and_route(saved_models, tmp_path: Path) -> None:
    with pytest.raises(UsageError, match="--to caffe: unknown target"):
        portkit.convert(saved_models("cnn"), "caffe")
    with pytest.raises(UsageError, match="--route nope: not a route"):
        portkit.convert(saved_models("cnn"), "onnx", route="nope", inputs=["x:1x3x32x32"])


def test_state_dict_is_refused_with_what_to_do(tmp_path: Path) -> None:
    path = tmp_path / "weights.pt"
    torch.save(FIXTURES["cnn"].module().state_dict(), path)
    with pytest.raises(portkit.errors.InvalidModelError, match="torch.export.save"):
        portkit.convert(path, "onnx")


def test_inspect_onnx(converted) -> None:
    result = portkit.inspect(converted("cnn", "pt2", "onnx"))
    assert result.info.inputs[0].shape == (1, 3, 32, 32)
    assert result.info.op_counts["Conv"] == 2
    assert_schema("inspect_onnx", result.to_dict())


class _Pickled(torch.nn.Module):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * 2


def test_pickled_module_is_refused_unloaded(tmp_path: Path) -> None:
    path = tmp_path / "whole.pt"
    torch.save(_Pickled(), path)
    with pytest.raises(portkit.errors.UnsafeModelError, match="runs code.*--trust-model") as info:
        portkit.convert(path, "onnx")
    assert info.value.exit_code == ExitCode.UNSAFE_INPUT


def test_trusted_pickled_module_is_unpickled_in_a_worker_and_converted(tmp_path: Path) -> None:
    path = tmp_path / "whole.pt"
    torch.manual_seed(0)
    torch.save(torch.nn.Sequential(torch.nn.Linear(4, 2), torch.nn.ReLU()), path)
    with pytest.raises(UsageError, match="pass --input"):
        portkit.convert(path, "onnx", tmp_path / "m.onnx", trust_model=True)
    report = portkit.convert(path, "onnx", tmp_path / "m.onnx", trust_model=True,
                             inputs=["x:1x4"])
    assert report.exit_code == ExitCode.OK and report.source.format == "torch-pickle"


def test_output_in_a_missing_directory_is_refused_before_any_work(saved_models, tmp_path: Path) -> None:
    with pytest.raises(UsageError, match="does not exist; create it first"):
        portkit.convert(saved_models("cnn"), "onnx", tmp_path / "nope" / "m.onnx",
                        inputs=["x:1x3x32x32"])
    assert not (tmp_path / "nope").exists()


def test_no_validate_converts_with_the_first_route_and_runs_nothing(saved_models, tmp_path: Path) -> None:
    report = portkit.convert(saved_models("cnn"), "onnx", tmp_path / "m.onnx",
                             inputs=["x:1x3x32x32"], validate=False)
    assert report.exit_code == ExitCode.OK and not report.validated and not report.passed
    assert len(report.routes_tried) == 1 and report.checks == ()
    assert (tmp_path / "m.onnx").exists()


def test_portkit_debug_is_the_api_function_and_the_package(tmp_path: Path) -> None:
    import portkit.debug.match  # the package stays importable as one

    with pytest.raises(InvalidModelError, match="missing.tflite: no such file"):
        portkit.debug(tmp_path / "missing.tflite", tmp_path / "m.pt")
    assert portkit.debug.match.match is not None
