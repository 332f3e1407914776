"""A legacy ONNX file (opset 6, which ONNX Runtime 1.32 refuses) through the real CLI: inspect,
convert (``onnx-upgrade`` hop) and validate against it, with ``onnx-reference`` as the reference."""

from __future__ import annotations

import json
from pathlib import Path

from tests.conftest import run_cli
from tests.legacy_onnx import legacy_model
from tests.schema import assert_schema


def test_inspect_convert_and_validate_a_legacy_onnx_file(tmp_path: Path) -> None:
    model = legacy_model("test_BatchNorm2d_eval")
    result = run_cli("inspect", model, "--json")
    assert result.returncode == 0, result.stderr
    info = json.loads(result.stdout)["info"]
    assert info["op_counts"] == {"BatchNormalization": 1}
    assert [i["name"] for i in info["inputs"]] == ["0"]  # weights listed as inputs (IR 3) left out

    out = tmp_path / "bn.tflite"
    result = run_cli("convert", model, "--to", "tflite", "-o", out)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "onnx-upgrade+onnx2tf" in result.stdout
    assert "opset 6 -> 13" in result.stdout
    assert "run on onnx-reference" in result.stdout

    result = run_cli("validate", out, "--reference", model, "--json")
    assert result.returncode == 0, result.stdout + result.stderr
    report = json.loads(result.stdout)
    assert report["reference_runtime"] == "onnx-reference"
    assert report["passed"]
    assert_schema("validate", report)
