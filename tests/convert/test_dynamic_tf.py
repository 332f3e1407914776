"""Dynamic dimensions through the TensorFlow-side converters (issue 16): a Keras ``None`` batch
stays -1 in TFLite's shape signature, ``None`` in a SavedModel and a ``dim_param`` in ONNX; an
ONNX model's ``dim_param`` stays -1 through onnx2tf; each artifact is judged at several sizes;
a converter that can only write a static artifact fails naming the dimensions and ``--static``."""

from __future__ import annotations

import io
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
from rich.console import Console

import portkit
from portkit.cli.render import mobile_tables
from portkit.convert.dynamic import require_kept
from portkit.errors import ConversionError
from portkit.fixtures import keras_models
from portkit.formats.tflite import mobile_report
from portkit.results import ConvertReport
from portkit.runtimes.worker import Pool
from portkit.specs import Dim, TensorSpec

Saved = Callable[[str, str], Path]


def _sizes(report: ConvertReport, runtime: str) -> set[str]:
    checks = [c for c in report.checks if c.runtime == runtime]
    assert checks and all(c.passed for c in checks), [c.error for c in checks]
    return {c.size for c in checks}


def _render(report: ConvertReport) -> str:
    console = Console(file=io.StringIO(), width=200)
    for table in mobile_tables(report.mobile):
        console.print(table)
    return console.file.getvalue()  # type: ignore[attr-defined]


def test_keras_free_batch_becomes_a_resizable_tflite_matching_at_batch_3(
        saved_models: Saved, workers: Pool, tmp_path: Path) -> None:
    import keras
    from ai_edge_litert.interpreter import Interpreter

    source = saved_models("keras_cnn", "keras")
    out = tmp_path / "m.tflite"
    report = portkit.convert(source, "tflite", out, route="tflite-converter", workers=workers)
    assert report.passed, report.routes_tried[-1].error
    assert _sizes(report, "tflite") == {"image 1x32x32x3", "image 3x32x32x3"}
    [image] = report.mobile.inputs
    assert image.shape == (-1, 32, 32, 3) and image.resizable
    assert "resizable" in _render(report) and " yes " in _render(report)
    # The artifact itself, run here at batch 3 against the Keras model.
    interpreter = Interpreter(model_path=str(out))
    [detail] = interpreter.get_input_details()
    assert detail["shape_signature"][0] == -1
    x = np.random.default_rng(3).standard_normal((3, 32, 32, 3)).astype(np.float32)
    interpreter.resize_tensor_input(detail["index"], x.shape, strict=True)
    interpreter.allocate_tensors()
    interpreter.set_tensor(detail["index"], x)
    interpreter.invoke()
    got = interpreter.get_tensor(interpreter.get_output_details()[0]["index"])
    want = keras.saving.load_model(str(source), compile=False).predict(x, verbose=0)
    assert got.shape == (3, 10)
    np.testing.assert_allclose(got, want, atol=1e-4)


def test_static_fixes_the_batch_and_the_mobile_report_says_not_resizable(
        saved_models: Saved, workers: Pool, tmp_path: Path) -> None:
    report = portkit.convert(saved_models("keras_cnn", "keras"), "tflite", tmp_path / "m.tflite",
                             route="tflite-converter", static=True, workers=workers)
    assert report.passed and _sizes(report, "tflite") == {""}
    [image] = report.mobile.inputs
    assert image.shape == (1, 32, 32, 3) and not image.resizable


def test_a_static_tflite_fails_validation_against_a_dynamic_source(
        saved_models: Saved, workers: Pool, tmp_path: Path) -> None:
    static = tmp_path / "static.tflite"
    assert portkit.convert(saved_models("keras_cnn", "keras"), "tflite", static, static=True,
                           route="tflite-converter", workers=workers).passed
    report = portkit.api.validate(static, saved_models("keras_cnn", "keras"), runtimes=["tflite"])
    assert not report.passed
    errors = " ".join(c.error or "" for c in report.checks if not c.passed)
    assert "is fixed at 1x32x32x3" in errors and "wrote a static dimension" in errors


def test_onnx_dim_params_stay_dynamic_through_onnx2tf(saved_models: Saved, workers: Pool,
                                                       tmp_path: Path) -> None:
    report = portkit.convert(saved_models("onnx_dynamic_cnn", "onnx"), "tflite",
                             tmp_path / "m.tflite", inputs=["x:1x3x16x16"], route="onnx2tf",
                             workers=workers)
    assert report.passed, report.routes_tried[-1].error
    sizes = _sizes(report, "tflite")
    assert "x 1x3x16x16" in sizes and len(sizes) >= 2
    [x] = mobile_report(tmp_path / "m.tflite").inputs
    assert x.shape == (-1, -1, -1, 3) and x.resizable  # NHWC, batch and both sides free


@pytest.mark.parametrize("target", ["onnx", "savedmodel"])
def test_keras_free_batch_stays_free_in_onnx_and_savedmodel(
        saved_models: Saved, workers: Pool, tmp_path: Path, target: str) -> None:
    out = tmp_path / f"m.{target}"
    report = portkit.convert(saved_models("keras_cnn", "keras"), target, out, workers=workers)
    assert report.passed, report.routes_tried[-1].error
    runtime = {"onnx": "onnxruntime", "savedmodel": "tensorflow"}[target]
    assert _sizes(report, runtime) == {"image 1x32x32x3", "image 3x32x32x3"}
    info = portkit.api.inspect(out).info
    [image] = info.inputs
    assert image.shape == (None, 32, 32, 3)
    if target == "onnx":
        import onnx

        [axis, *_] = onnx.load(str(out)).graph.input[0].type.tensor_type.shape.dim
        assert axis.dim_param == "batch"


def test_free_batch_lstm_converts_with_its_batch_fixed_unless_it_is_asked_dynamic(
        workers: Pool, tmp_path: Path) -> None:
    source = tmp_path / "lstm.keras"
    keras_models.free_batch_lstm().save(str(source))
    asked = portkit.convert(source, "tflite", tmp_path / "m.tflite", route="tflite-converter",
                            dims=["batch=1..8"], workers=workers)
    assert not asked.passed and asked.fixed is None
    error = asked.routes_tried[-1].error
    assert "can't keep the source's dynamic dimensions dynamic (seq: batch)" in error
    assert "TensorListReserve" in error and "--static" in error
    # By default the batch nobody asked for is fixed, and the report says so.
    fixed = portkit.convert(source, "tflite", tmp_path / "m.tflite", route="tflite-converter",
                            workers=workers)
    assert fixed.passed and fixed.mobile.inputs[0].shape == (1, 10, 8)
    assert fixed.fixed is not None and fixed.fixed.sizes == (("batch", 1),)
    assert [a.fixed for a in fixed.routes_tried] == [(), ("batch",)]


def test_require_kept_names_the_dims_an_artifact_fixed() -> None:
    x = TensorSpec("x", (1, 3, 16, 16), dims=(Dim("batch"), None, Dim("height"), Dim("width")))
    require_kept("tool", [x], [("serving_default_x:0", (None, None, None, 3))])
    with pytest.raises(ConversionError, match=r"\(x: batch, height, width\).*x written as "
                                              r"\?x16x16x3.*--static"):
        require_kept("tool", [x], [("x", (None, 16, 16, 3))])
    require_kept("tool", [TensorSpec("x", (1, 4))], [("x", (1, 4))])  # nothing dynamic


def test_a_calibration_set_for_a_free_batch_model_is_read_as_samples(
        saved_models: Saved, tmp_path: Path) -> None:
    # 140 stacked images: once read as one batch of 140, outside the batch's 1..64 (exit 2)
    from tests.convert.test_tensorflow_edges import convert_json

    calibration = tmp_path / "calibration.npz"
    np.savez(calibration, np.random.default_rng(0).random((140, 32, 32, 3), dtype=np.float32))
    code, report, err = convert_json(saved_models("keras_cnn", "keras"), "--to", "tflite",
                                     "-o", tmp_path / "q.tflite", "--quantize", "dynamic",
                                     "--calibration", calibration)
    assert code == 0, err
    # The policy's 32, judged at batch 1 and again resized to batch 3: counted once.
    assert report["inputs_from"].startswith("the last 32 of 140 --calibration samples"), \
        report["inputs_from"]
    assert [i["shape"] for i in report["inputs"]] == [[1, 32, 32, 3]]
