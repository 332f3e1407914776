"""The TensorFlow side through the CLI: Keras and SavedModel sources, TFLite -> ONNX, quantization,
Flex ops, Lambda layers and signatures (the must-shows of issue 3)."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest

from portkit.fixtures import FIXTURES
from tests.conftest import run_cli
from tests.schema import assert_schema

Saved = Callable[[str, str], Path]


def convert_json(*args: str | Path) -> tuple[int, dict, str]:
    """``portkit convert ARGS --json``: exit code, report and stderr."""
    done = run_cli("convert", *args, "--json")
    report = json.loads(done.stdout) if done.stdout.strip() else {}
    return done.returncode, report, done.stderr


@pytest.mark.parametrize("target", ["tflite", "onnx", "savedmodel"])
@pytest.mark.parametrize("name", ["keras_cnn", "keras_text", "keras_transformer"])
def test_keras_converts_within_1e_5(saved_models: Saved, tmp_path: Path, name: str,
                                    target: str) -> None:
    code, report, err = convert_json(saved_models(name, "keras"), "--to", target,
                                     "-o", tmp_path / f"out.{target}", "--atol", "1e-5")
    assert code == 0, err + json.dumps(report.get("routes_tried"), indent=1)
    assert report["passed"] and report["tolerance"]["atol"] == 1e-5
    runtime = {"tflite": "tflite", "onnx": "onnxruntime", "savedmodel": "tensorflow"}[target]
    rows = [o for c in report["checks"] if c["runtime"] == runtime for o in c["outputs"]]
    assert rows and all(o["max_abs_err"] <= 1e-5 for o in rows)
    assert report["source"]["format"] == "keras"
    if target == "savedmodel":
        assert (tmp_path / "out.savedmodel" / "saved_model.pb").is_file()


@pytest.mark.parametrize("name,input_name", [("keras_cnn", "image"),
                                             ("keras_transformer", "sequence")])
def test_tflite_converts_to_onnx_matching_the_tflite(saved_models: Saved, tmp_path: Path,
                                                     name: str, input_name: str) -> None:
    # keras_transformer's GELU is a TFL_GELU op, which tf2onnx maps only with portkit's handler.
    code, first, err = convert_json(saved_models(name, "keras"), "--to", "tflite",
                                    "-o", tmp_path / "m.tflite")
    assert code == 0, err
    code, report, err = convert_json(tmp_path / "m.tflite", "--to", "onnx", "-o",
                                     tmp_path / "m.onnx")
    assert code == 0, err
    assert report["source"]["format"] == "tflite" and report["route"][0]["tool"] == "tf2onnx"
    # The TFLite's batch is free (-1): the ONNX keeps it, matching at each size.
    assert len(report["checks"]) >= 2
    for check in report["checks"]:
        assert check["runtime"] == "onnxruntime" and check["outputs"][0]["max_abs_err"] <= 1e-5
    # The ONNX keeps the signature's names, not TFLite's tensor names.
    done = run_cli("inspect", tmp_path / "m.onnx", "--json")
    assert [i["name"] for i in json.loads(done.stdout)["info"]["inputs"]] == [input_name]


def _calibration(path: Path, scale: float = 1.0) -> Path:
    data = np.random.default_rng(123).standard_normal((64, 1, 32, 32, 3)) * scale
    np.savez(path, image=data.astype(np.float32))
    return path


def test_int8_with_calibration_reports_top1_and_cosine_over_32_inputs(
        saved_models: Saved, tmp_path: Path) -> None:
    code, report, err = convert_json(
        saved_models("keras_cnn", "keras"), "--to", "tflite", "-o", tmp_path / "q.tflite",
        "--quantize", "int8", "--calibration", _calibration(tmp_path / "calib.npz"))
    assert code == 0, err
    assert_schema("convert_int8", report)
    policy = report["tolerance"]
    assert policy["policy"] == "int8" and policy["samples"] >= 32 and policy["atol"] is None
    [row] = report["checks"][0]["outputs"]
    assert row["samples"] == policy["samples"]
    assert row["cosine"] >= policy["min_cosine"] and row["top1"] >= policy["min_top1"]
    assert report["passed"] is True and report["mobile"]["precision"] == "int8"
    assert report["mobile"]["builtin_only"] is True


def test_int8_calibrated_on_the_wrong_scale_fails_on_real_inputs(saved_models: Saved,
                                                                  tmp_path: Path) -> None:
    # Calibrated on data 100 times too wide, judged on the inputs the model really sees.
    calib = _calibration(tmp_path / "wide.npz", scale=100.0)
    real = tmp_path / "real.npz"
    np.savez(real, image=np.random.default_rng(7).standard_normal((32, 1, 32, 32, 3)).astype("f4"))
    code, report, _ = convert_json(saved_models("keras_cnn", "keras"), "--to", "tflite",
                                   "-o", tmp_path / "q.tflite", "--quantize", "int8",
                                   "--calibration", calib, "--inputs", real)
    assert code == 1 and report["passed"] is False
    [row] = report["checks"][0]["outputs"]
    assert "cosine" in row["failed"] and row["cosine"] < report["tolerance"]["min_cosine"]
    # A parity failure keeps the artifact beside -o, never at it.
    assert (tmp_path / "q.failed.tflite").exists() and not (tmp_path / "q.tflite").exists()
    assert report["artifact"]["path"] == str(tmp_path / "q.failed.tflite")


def test_int16x8_uses_its_policy(saved_models: Saved, tmp_path: Path) -> None:
    code, report, err = convert_json(
        saved_models("keras_cnn", "keras"), "--to", "tflite", "-o", tmp_path / "q.tflite",
        "--quantize", "int16x8", "--calibration", _calibration(tmp_path / "calib.npz"))
    assert code == 0, err
    assert report["tolerance"]["policy"] == "int16x8" and report["mobile"]["precision"] == "int16x8"
    [row] = report["checks"][0]["outputs"]
    assert row["cosine"] >= report["tolerance"]["min_cosine"] and row["samples"] == 32


def test_int8_io_makes_inputs_and_outputs_int8(saved_models: Saved, tmp_path: Path) -> None:
    code, report, err = convert_json(
        saved_models("keras_cnn", "keras"), "--to", "tflite", "-o", tmp_path / "q.tflite",
        "--quantize", "int8", "--calibration", _calibration(tmp_path / "calib.npz"), "--int8-io")
    assert code == 0, err
    mobile = report["mobile"]
    for tensor in mobile["inputs"] + mobile["outputs"]:
        assert tensor["dtype"] == "int8" and len(tensor["scale"]) == 1
    assert mobile["inputs"][0]["layout"] == "NHWC"


def test_int8_without_calibration_is_a_clear_usage_error(saved_models: Saved,
                                                         tmp_path: Path) -> None:
    done = run_cli("convert", saved_models("keras_cnn", "keras"), "--to", "tflite",
                   "--quantize", "int8", "-o", tmp_path / "q.tflite")
    assert done.returncode == 2
    [line] = [ln for ln in done.stderr.splitlines() if ln.startswith("portkit:")]
    assert "--quantize int8 needs calibration data" in line and "--calibration" in line
    assert not (tmp_path / "q.tflite").exists()


@pytest.mark.parametrize("mode", ["fp16", "dynamic"])
def test_fp16_and_dynamic_use_their_policies(saved_models: Saved, tmp_path: Path,
                                             mode: str) -> None:
    code, report, err = convert_json(saved_models("keras_transformer", "keras"), "--to",
                                     "tflite", "-o", tmp_path / "q.tflite", "--quantize", mode)
    assert code == 0, err
    assert report["tolerance"]["policy"] == mode and report["quantize"] == mode
    if mode == "fp16":
        assert report["mobile"]["precision"] == "float16"


def test_flex_ops_are_listed_and_no_flex_fails_naming_the_op(saved_models: Saved,
                                                             tmp_path: Path) -> None:
    source = saved_models("keras_flex", "keras")
    code, report, _ = convert_json(source, "--to", "tflite", "-o", tmp_path / "f.tflite",
                                   "--route", "tflite-converter")
    # Converted, but nothing here runs it: kept beside -o as a failed artifact.
    assert code == 1 and (tmp_path / "f.failed.tflite").exists()
    assert report["mobile"]["flex_ops"] == ["Cumprod"] and not report["mobile"]["builtin_only"]
    assert "Flex runtime" in report["checks"][0]["error"]
    done = run_cli("inspect", tmp_path / "f.failed.tflite", "--json")
    assert json.loads(done.stdout)["info"]["mobile"]["flex_ops"] == ["Cumprod"]

    code, report, _ = convert_json(source, "--to", "tflite", "-o", tmp_path / "g.tflite",
                                   "--route", "tflite-converter", "--no-flex")
    assert code == 3 and not (tmp_path / "g.tflite").exists()
    assert "Cumprod" in report["routes_tried"][0]["error"]
    assert "--no-flex" in report["routes_tried"][0]["error"]


def test_lambda_layer_exits_2_naming_the_layer_and_the_flag(saved_models: Saved,
                                                            tmp_path: Path) -> None:
    source = saved_models("keras_lambda", "keras")
    done = run_cli("convert", source, "--to", "tflite", "-o", tmp_path / "l.tflite")
    assert done.returncode == 2
    [line] = [ln for ln in done.stderr.splitlines() if ln.startswith("portkit:")]
    assert "Lambda layer 'double'" in line and "--trust-model" in line
    assert "Traceback" not in done.stderr and not (tmp_path / "l.tflite").exists()
    done = run_cli("convert", source, "--to", "tflite", "-o", tmp_path / "l.tflite",
                   "--trust-model")
    assert done.returncode == 0, done.stderr
    # validate runs the source as its reference: the same refusal, the same flag.
    done = run_cli("validate", tmp_path / "l.tflite", "--reference", source)
    assert done.returncode == 2 and "--trust-model" in done.stderr
    done = run_cli("validate", tmp_path / "l.tflite", "--reference", source, "--trust-model")
    assert done.returncode == 0, done.stderr


def test_signature_picks_one_of_two(saved_models: Saved, tmp_path: Path) -> None:
    source = saved_models("two_signatures", "savedmodel")
    code, report, err = convert_json(source, "--to", "tflite", "-o", tmp_path / "s.tflite",
                                     "--signature", "scaled")
    assert code == 0, err
    assert sorted(i["name"] for i in report["inputs"]) == ["scale", "x"]
    assert "signature scaled" in report["route"][0]["detail"]
    code, report, err = convert_json(source, "--to", "onnx", "-o", tmp_path / "d.onnx")
    assert code == 0, err
    assert [i["name"] for i in report["inputs"]] == ["x"]  # serving_default by default
    done = run_cli("convert", source, "--to", "onnx", "--signature", "nope", "-o",
                   tmp_path / "n.onnx")
    assert done.returncode == 2
    assert "no signature 'nope'" in done.stderr and "scaled" in done.stderr


def test_h5_source_converts(saved_models: Saved, tmp_path: Path) -> None:
    code, report, err = convert_json(saved_models("keras_cnn", "h5"), "--to", "onnx",
                                     "-o", tmp_path / "m.onnx", "--atol", "1e-5")
    assert code == 0, err
    assert report["source"]["format"] == "h5"


def test_opset_is_choosable_and_capped(saved_models: Saved, tmp_path: Path) -> None:
    source = saved_models("keras_cnn", "keras")
    code, report, err = convert_json(source, "--to", "onnx", "-o", tmp_path / "m.onnx",
                                     "--opset", "17")
    assert code == 0, err
    assert "opset 17" in report["route"][0]["detail"]
    code, report, err = convert_json(source, "--to", "onnx", "-o", tmp_path / "n.onnx",
                                     "--opset", "30")  # refused before any work
    assert code == 2 and set(report) == {"exit_code", "error", "error_type"}
    assert "--opset 30: tf2onnx writes opsets 7-18" in err


def test_quantized_torch_source_falls_back_through_a_savedmodel(saved_models: Saved,
                                                                 tmp_path: Path) -> None:
    # Calibration data in the source's NCHW layout reaches onnx2tf's NHWC SavedModel.
    fixture = FIXTURES["cnn"]
    calib = tmp_path / "calib.npz"
    np.savez(calib, x=np.random.default_rng(5).standard_normal((40, 1, 3, 32, 32)).astype("f4"))
    code, report, err = convert_json(
        saved_models("cnn", "pt2"), "--to", "tflite", "-o", tmp_path / "q.tflite",
        "--quantize", "int8", "--calibration", calib, "--route",
        "torch.onnx+onnx2tf+tflite-converter",
        *[a for f in fixture.input_flags for a in ("--input", f)])
    assert code == 0, err + json.dumps(report.get("routes_tried"), indent=1)
    assert [h["tool"] for h in report["route"]] == ["torch.onnx", "onnx2tf", "tflite-converter"]
    assert report["mobile"]["precision"] == "int8"
    assert report["checks"][0]["input_layouts"] == ["x: NCHW->NHWC"]
