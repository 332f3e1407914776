"""Input arrays, non-finite values and bad input files end in exit 2 or a true verdict, never
in exit 70 (issue 13): each probe that used to crash or pass wrongly, run as a user runs it."""

from __future__ import annotations

import subprocess
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest

from portkit.errors import ExitCode
from tests.conftest import run_cli

SHAPE = (1, 3, 32, 32)


@pytest.fixture(scope="module")
def cnn(saved_models: Callable[[str, str], Path], converted: Callable[[str, str, str], Path]
        ) -> dict[str, Path]:
    """The cnn fixture as TorchScript (no dtypes stored), an ExportedProgram (static
    1x3x32x32 float32) and the ONNX artifact made from the TorchScript."""
    return {"pt": saved_models("cnn", "torchscript"), "pt2": saved_models("cnn", "pt2"),
            "onnx": converted("cnn", "torchscript", "onnx")}


def _npz(folder: Path, name: str, **arrays: np.ndarray) -> Path:
    path = folder / name
    np.savez(path, **arrays)
    return path


def _fails(result: subprocess.CompletedProcess[str], code: ExitCode, *fragments: str) -> None:
    """One ``portkit: error:`` line naming every fragment, and the exit code."""
    errors = [line for line in result.stderr.splitlines() if line.startswith("portkit: error:")]
    assert result.returncode == code, result.stderr[-2000:]
    assert len(errors) == 1, result.stderr[-2000:]
    for fragment in fragments:
        assert fragment in errors[0], errors[0]


def _validate(cnn: dict[str, Path], source: str, *args: str | Path
              ) -> subprocess.CompletedProcess[str]:
    return run_cli("validate", cnn["onnx"], "--reference", cnn[source], "--runtime",
                   "onnxruntime", *args)


@pytest.mark.parametrize("dtype", ["float64", "int64"])
def test_float64_and_int64_arrays_for_a_float_input_are_cast(cnn, tmp_path, dtype) -> None:
    values = np.random.default_rng(0).integers(-8, 8, SHAPE).astype(dtype)
    result = _validate(cnn, "pt2", "--inputs", _npz(tmp_path, "x.npz", x=values))
    assert result.returncode == 0, result.stderr[-2000:]


def test_float64_arrays_for_torchscript_are_fed_as_float32(cnn, tmp_path) -> None:
    values = np.random.default_rng(0).standard_normal(SHAPE)
    result = _validate(cnn, "pt", "--inputs", _npz(tmp_path, "x.npz", x=values))
    assert result.returncode == 0, result.stderr[-2000:]


def test_int64_arrays_a_torchscript_model_fails_on_are_exit_2(cnn, tmp_path) -> None:
    values = np.zeros(SHAPE, np.int64)
    _fails(_validate(cnn, "pt", "--inputs", _npz(tmp_path, "x.npz", x=values)),
           ExitCode.INVALID_INPUT, "input 'x' as int64", "declares no input dtypes", "float32")


@pytest.mark.parametrize("damage", ["not a zip", "a damaged member"])
def test_a_damaged_npz_is_exit_2_naming_the_file(cnn, tmp_path, damage) -> None:
    path = _npz(tmp_path, "x.npz", x=np.zeros(SHAPE, np.float32))
    data = bytearray(path.read_bytes())
    if damage == "not a zip":
        data = bytearray(b"PK\x03\x04" + b"garbage" * 20)
    else:  # the zip directory intact, the array's header bytes flipped
        start = data.index(b"NUMPY")
        data[start + 10:start + 60] = bytes(b ^ 0x55 for b in data[start + 10:start + 60])
    path.write_bytes(bytes(data))
    _fails(_validate(cnn, "pt", "--inputs", path), ExitCode.INVALID_INPUT,
           f"--inputs {path}: cannot read it as .npz")


def test_an_input_dtype_the_model_does_not_take_is_exit_2(cnn) -> None:
    _fails(_validate(cnn, "pt2", "--input", "x:1x3x32x32:int64"), ExitCode.INVALID_INPUT,
           "cnn.pt2: --input x:...:int64", "takes float32", "drop ':int64'")
    _fails(_validate(cnn, "pt", "--input", "x:1x3x32x32:int64"), ExitCode.INVALID_INPUT,
           "cnn.pt: the model failed on input 'x' as int64")


def test_a_pt2_given_a_batch_it_was_not_exported_for_is_exit_2(cnn, tmp_path) -> None:
    result = run_cli("convert", cnn["pt2"], "--to", "onnx", "-o", tmp_path / "b2.onnx",
                     "--input", "x:2x3x32x32")
    _fails(result, ExitCode.INVALID_INPUT, "cnn.pt2: --input x:2x3x32x32",
           "the model takes x: 1x3x32x32 float32", "--input x:1x3x32x32")
    assert not (tmp_path / "b2.onnx").exists()


def test_a_pt2_given_a_size_outside_its_range_is_refused_before_the_guard() -> None:
    import torch

    from portkit.errors import UsageError
    from portkit.runtimes.torch import exported_ranges, refuse_shape

    class Double(torch.nn.Module):
        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return x * 2

    batch = torch.export.Dim("batch", min=2, max=8)
    ep = torch.export.export(Double(), (torch.ones(3, 4),), dynamic_shapes={"x": {0: batch}})
    [val] = [n.meta["val"] for n in ep.graph.nodes if n.op == "placeholder"]
    dims = exported_ranges(ep, val)
    assert dims == ((2, 8), (4, 4))
    refuse_shape("m.pt2", "x", (8, 4), dims)
    with pytest.raises(UsageError, match=r"m\.pt2: input 'x' is 1x4 but the ExportedProgram "
                                         r"takes 2\.\.8x4 .* --input x:2x4"):
        refuse_shape("m.pt2", "x", (1, 4), dims)


@pytest.mark.parametrize("flags, fragments", [
    (["--input", "y:1x3x32x32"], ["--input names y, but the model's inputs are x"]),
    (["--input", "x:0x3x32x32"], ["--input 'x:0x3x32x32'", "at least 1", "x:1x3x32x32"]),
])
def test_an_unknown_input_or_a_zero_dimension_is_exit_2(cnn, flags, fragments) -> None:
    _fails(_validate(cnn, "pt", *flags), ExitCode.INVALID_INPUT, *fragments)


def test_unknown_array_names_in_inputs_are_exit_2(cnn, tmp_path) -> None:
    path = _npz(tmp_path, "yz.npz", y=np.zeros(SHAPE, np.float32), z=np.zeros(SHAPE, np.float32))
    _fails(_validate(cnn, "pt2", "--inputs", path), ExitCode.INVALID_INPUT,
           "--inputs holds y, z, but the model's inputs are x")


def test_one_array_of_another_name_feeds_a_one_input_model_and_says_so(cnn, tmp_path) -> None:
    path = _npz(tmp_path, "y.npz", y=np.zeros(SHAPE, np.float32))
    result = _validate(cnn, "pt2", "--inputs", path)
    assert result.returncode == ExitCode.OK, result.stderr[-2000:]
    assert "Note: input 'x' read from the array 'y' of --inputs, by position" in result.stdout


@pytest.mark.parametrize("kind", ["object arrays", "an empty folder", "NaN"])
def test_bad_calibration_data_is_exit_2_before_converting(cnn, tmp_path, kind) -> None:
    data = tmp_path / "calib.npz"
    if kind == "object arrays":
        np.savez(data, x=np.array([{"a": 1}, 1], dtype=object))
    elif kind == "NaN":
        np.savez(data, x=np.full((4, *SHAPE), np.nan, np.float32))
    else:
        data = tmp_path / "calib"
        data.mkdir()
    result = run_cli("convert", cnn["pt"], "--to", "tflite", "-o", tmp_path / "q.tflite",
                     "--input", "x:1x3x32x32", "--quantize", "int8", "--calibration", data)
    _fails(result, ExitCode.INVALID_INPUT, f"--calibration {data}",
           *(["holds 12288 NaN", "--allow-nonfinite"] if kind == "NaN" else []))


@pytest.mark.parametrize("value, counted", [(np.nan, "3072 NaN and 0 inf"),
                                            (np.inf, "0 NaN and 3072 inf")])
def test_non_finite_inputs_are_exit_2_unless_allowed(cnn, tmp_path, value, counted) -> None:
    path = _npz(tmp_path, "x.npz", x=np.full(SHAPE, value, np.float32))
    _fails(_validate(cnn, "pt", "--inputs", path), ExitCode.INVALID_INPUT,
           f"input 'x' holds {counted}", "--allow-nonfinite")


def test_all_nan_outputs_never_pass_and_match_exactly_when_allowed(cnn, tmp_path, workers
                                                                   ) -> None:
    from portkit.api import validate

    path = _npz(tmp_path, "x.npz", x=np.full(SHAPE, np.nan, np.float32))
    allowed = validate(cnn["onnx"], cnn["pt"], inputs_file=path, allow_nonfinite=True,
                               runtimes=["onnxruntime"], workers=workers)
    assert allowed.exit_code == 0  # NaN where the reference has NaN: an exact match
    [row] = allowed.checks[0].outputs
    assert row.passed and row.nonfinite is None and allowed.tolerance.allow_nonfinite


def test_an_inputs_file_with_fewer_samples_than_the_policy_compares_is_exit_2(cnn, tmp_path
                                                                              ) -> None:
    # A policy "over 4 inputs" is never judged on one (issue 15: an int8 artifact passed on the
    # single sample of --inputs while the table said "over 32 inputs").
    one = _npz(tmp_path, "one.npz", x=np.zeros(SHAPE, np.float32))
    _fails(_validate(cnn, "pt2", "--inputs", one, "--samples", "4"), ExitCode.INVALID_INPUT,
           "1 sample(s)", "compares over 4", "--samples 1")
    four = _npz(tmp_path, "four.npz", x=np.random.default_rng(0).standard_normal(
        (4, *SHAPE)).astype(np.float32))
    assert _validate(cnn, "pt2", "--inputs", four, "--samples", "4").returncode == 0
