"""Quantization that ships, on CNNs trained at test time (``portkit/fixtures/trained.py``): the
fast PyTorch route (litert-torch, then ai-edge-quantizer), validation on calibration samples
held back from calibration, the per-op error, ``--keep-float`` and ``--eval``."""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest

from portkit.fixtures import trained
from portkit.policies import POLICIES
from portkit.validators.parity import compare_outputs
from tests.convert.test_tensorflow_edges import convert_json
from tests.schema import assert_schema

Saved = Callable[[str, str], Path]


@pytest.fixture(scope="module")
def data(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """``calibration.npz`` (132 samples: 100 to calibrate on, 32 held back) and ``eval.npz``
    (512 held-out samples with labels)."""
    return trained.write_data(tmp_path_factory.mktemp("quantize-data"))


def _logits(tflite: Path, x: np.ndarray) -> list[dict[str, np.ndarray]]:
    """The artifact's logits on each held-out image, as the TFLite runtime gives them."""
    from portkit.formats import Format
    from portkit.runtimes import registry

    session = registry.get("tflite").load(tflite, Format.TFLITE, "cpu")
    [name] = [s.name for s in session.inputs]
    return [session.run({name: sample}) for sample in x]


def _against_float(tflite: Path, eval_file: Path) -> float:
    """The artifact's cosine against the float source on the held-out images (portkit's
    cosine: every sample's logits, flattened together)."""
    import torch

    x = np.load(eval_file)["x"]
    net = trained.outlier_cnn()
    with torch.no_grad():
        reference = [{"logits": net(torch.from_numpy(s)).numpy()} for s in x]
    [row] = compare_outputs(reference, _logits(tflite, x), POLICIES["int8"])
    return row.cosine


def test_trained_cnn_int8_keeps_accuracy_in_under_45_percent_of_the_float_size(
        saved_models: Saved, data: tuple[Path, Path], tmp_path: Path) -> None:
    calibration, eval_file = data
    source = saved_models("trained_cnn", "pt2")
    code, report, err = convert_json(source, "--to", "tflite", "-o", tmp_path / "q.tflite",
                                     "--quantize", "int8", "--calibration", calibration,
                                     "--eval", eval_file)
    assert code == 0, err + json.dumps(report.get("routes_tried"), indent=1)
    assert report["route_name"] == "litert-torch"  # the fast route, not the ONNX detour
    assert report["inputs_from"].startswith("the last 32 of 132 --calibration samples")
    quantization = report["quantization"]
    assert quantization["tool"] == "ai-edge-quantizer" and quantization["mode"] == "int8"
    assert (quantization["calibration_samples"], quantization["held_back"]) == (100, 32)
    assert quantization["ops"] and quantization["keep_float"] == []
    assert all(o["quantized"] for o in quantization["ops"])  # every op: a CNN is no transformer
    accuracy = report["accuracy"]
    assert accuracy["samples"] == 512 and accuracy["source_top1"] >= 0.9
    assert accuracy["source_top1"] - accuracy["artifact_top1"] <= 0.02
    mobile = report["mobile"]
    assert mobile["precision"] == "int8"
    assert [t["dtype"] for t in mobile["inputs"] + mobile["outputs"]] == ["float32", "float32"]
    code, floats, err = convert_json(source, "--to", "tflite", "-o", tmp_path / "f.tflite")
    assert code == 0, err
    assert report["artifact"]["size_bytes"] <= 0.45 * floats["artifact"]["size_bytes"]


def test_an_outlier_channel_fails_int8_and_keep_float_auto_keeps_a_few_ops_float(
        saved_models: Saved, data: tuple[Path, Path], tmp_path: Path) -> None:
    calibration, eval_file = data
    source = saved_models("outlier_cnn", "pt2")
    args = ("--to", "tflite", "--quantize", "int8", "--calibration", calibration)
    # Judged on the 32 held-back samples, not on one: plain int8 fails, on every route.
    code, plain, _ = convert_json(source, *args, "-o", tmp_path / "plain.tflite")
    assert code == 1 and plain["passed"] is False
    [row] = plain["checks"][0]["outputs"]
    assert row["samples"] == 32 and "cosine" in row["failed"]
    worst = plain["quantization"]["ops"][0]  # the op adding the most error, first
    assert worst["quantized"] and worst["added"] > 0.1
    assert_schema("convert_int8_failed", plain)  # with where it diverges: here only the command
    assert plain["where"]["searched"] is False and "portkit debug" in plain["where"]["command"]

    code, auto, err = convert_json(source, *args, "-o", tmp_path / "auto.tflite",
                                   "--keep-float", "auto")
    assert code == 0, err + json.dumps(auto.get("routes_tried"), indent=1)
    quantization = auto["quantization"]
    kept = quantization["keep_float"]
    assert quantization["keep_float_auto"] and 1 <= len(kept) <= 4
    assert {o["name"] for o in quantization["ops"] if not o["quantized"]} >= set(kept)
    assert quantization["full_bytes"] < quantization["bytes"]  # the cost, against full int8
    assert quantization["full_p50_ms"] > 0 and quantization["p50_ms"] > 0
    assert _against_float(tmp_path / "auto.tflite", eval_file) >= 0.99

    # The same ops by name (CONV_2D#3, as the per-op table lists them): no search.
    assert all(re.fullmatch(r"[A-Z_0-9]+#\d+", name) for name in kept), kept
    code, named, err = convert_json(source, *args, "-o", tmp_path / "named.tflite",
                                    "--keep-float", ",".join(kept))
    assert code == 0, err
    assert named["quantization"]["keep_float"] == kept
    assert not named["quantization"]["keep_float_auto"]


def test_keep_float_naming_no_op_says_how_ops_are_named(saved_models: Saved,
                                                         data: tuple[Path, Path],
                                                         tmp_path: Path) -> None:
    code, report, _ = convert_json(saved_models("trained_cnn", "pt2"), "--to", "tflite",
                                   "-o", tmp_path / "q.tflite", "--quantize", "int8",
                                   "--calibration", data[0], "--keep-float", "conv9",
                                   "--route", "litert-torch")
    assert code == 3
    [attempt] = report["routes_tried"]
    assert "--keep-float conv9: no such op in this route's float model" in attempt["error"]


@pytest.mark.parametrize(("mode", "representative"), [
    ("dynamic", False), ("dynamic", True), ("int16x8", True)])
def test_dynamic_and_int16x8_take_the_fast_route(saved_models: Saved, data: tuple[Path, Path],
                                                 tmp_path: Path, mode: str,
                                                 representative: bool) -> None:
    calibration = ("--calibration", data[0]) if representative else ()
    code, report, err = convert_json(saved_models("trained_cnn", "pt2"), "--to", "tflite",
                                     "-o", tmp_path / "q.tflite", "--quantize", mode,
                                     *calibration)
    assert code == 0, err + json.dumps(report.get("routes_tried"), indent=1)
    assert report["route_name"] == "litert-torch"
    quantization = report["quantization"]
    assert quantization["mode"] == mode and report["tolerance"]["policy"] == mode
    if not representative:  # seeded inputs, and the report says so
        assert report["inputs_from"].startswith("32 seeded random inputs: nothing representative")
    elif mode == "dynamic":  # calibrates on nothing, judged on the file's last samples
        assert report["inputs_from"] == ("the last 32 of 132 --calibration samples (dynamic "
                                         "quantization calibrates on none)")
    if mode == "dynamic":
        assert quantization["ops"] == [] and quantization["calibration_samples"] == 0
    else:
        assert quantization["held_back"] == 32 and quantization["ops"]


def test_too_few_calibration_samples_to_hold_back_is_exit_2(saved_models: Saved,
                                                            tmp_path: Path) -> None:
    small = tmp_path / "small.npz"
    np.savez(small, x=np.zeros((32, 1, 3, 32, 32), np.float32))
    code, report, err = convert_json(saved_models("trained_cnn", "pt2"), "--to", "tflite",
                                     "-o", tmp_path / "q.tflite", "--quantize", "int8",
                                     "--calibration", small)
    assert code == 2 and set(report) == {"exit_code", "error", "error_type"}  # no report
    assert "holds back the last 32 to validate the quantized model on" in err
    assert not (tmp_path / "q.tflite").exists()


def test_int8_compute_quantizes_only_conv_and_linear_ops(saved_models: Saved,
                                                         data: tuple[Path, Path],
                                                         tmp_path: Path) -> None:
    code, report, err = convert_json(saved_models("trained_cnn", "pt2"), "--to", "tflite",
                                     "-o", tmp_path / "q.tflite", "--quantize", "int8",
                                     "--calibration", data[0], "--route",
                                     "litert-torch[int8-compute]")
    assert code == 0, err + json.dumps(report.get("routes_tried"), indent=1)
    quantization = report["quantization"]
    assert "conv and linear ops only" in quantization["recipe"]
    computed = {o["op_type"]: o["quantized"] for o in quantization["ops"]}
    assert computed["CONV_2D"] and computed["FULLY_CONNECTED"]
    assert not computed["MAX_POOL_2D"] and not computed["MEAN"]  # left float
