"""Legacy ONNX (opset < 7): the ``onnx-upgrade`` hop, and the reference of last resort.

ONNX Runtime 1.32 refuses these files, so the route starts with ``onnx.version_converter`` and
the source runs on ``onnx.reference.ReferenceEvaluator``; the TFLite artifact must match both
portkit's reference and the outputs ONNX stored beside each model.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

import portkit
from portkit.convert import onnx_upgrade, planner, registry
from portkit.errors import ExitCode, UsageError
from portkit.formats import Format
from portkit.options import ConvertJob
from tests.legacy_onnx import legacy_model, stored


def _run_tflite(path: Path, x: np.ndarray) -> np.ndarray:
    """The artifact run by the TFLite interpreter itself, on a 4-D input made NHWC."""
    from ai_edge_litert.interpreter import Interpreter

    it = Interpreter(model_path=str(path))
    it.allocate_tensors()
    it.set_tensor(it.get_input_details()[0]["index"], x.transpose(0, 2, 3, 1).copy())
    it.invoke()
    return it.get_tensor(it.get_output_details()[0]["index"]).transpose(0, 3, 1, 2)


def test_old_opsets_get_the_upgrade_hop_first() -> None:
    model = legacy_model("test_BatchNorm2d_eval")
    assert onnx_upgrade.opset(model) == 6
    assert registry.needed(str(model), Format.ONNX) == ["onnx-upgrade"]
    job = ConvertJob(source=model, target=Format.TFLITE)
    routes = planner.plan(Format.ONNX, job, ("onnx-upgrade",))
    assert [r.name for r in routes] == ["onnx-upgrade+onnx2tf",
                                        "onnx-upgrade+onnx2tf+tflite-converter"]
    # --route may name the upgrade or leave it out; the planner routes through it only as a prelude.
    for name in ("onnx2tf", "onnx-upgrade+onnx2tf"):
        job = ConvertJob(source=model, target=Format.TFLITE, route=name)
        assert [r.name for r in planner.plan(Format.ONNX, job, ("onnx-upgrade",))] == [
            "onnx-upgrade+onnx2tf"]
    with pytest.raises(UsageError, match="routes: onnx2tf"):
        planner.plan(Format.ONNX, ConvertJob(source=model, target=Format.TFLITE,
                                              route="litert-torch"), ("onnx-upgrade",))
    assert all("onnx-upgrade" not in r.name for r in registry.plan(Format.ONNX, Format.TFLITE))


def test_current_opsets_need_no_upgrade(converted) -> None:
    onnx_file = converted("cnn", "pt2", "onnx")
    assert registry.needed(str(onnx_file), Format.ONNX) == []


@pytest.mark.parametrize("name,route", [("test_BatchNorm2d_eval", None),
                                        ("test_AvgPool2d", "onnx2tf")])
def test_legacy_model_converts_and_matches_its_stored_outputs(workers, tmp_path: Path, name: str,
                                                              route: str | None) -> None:
    model = legacy_model(name)
    out = tmp_path / f"{name}.tflite"
    report = portkit.convert(model, "tflite", out, route=route, workers=workers)
    assert report.exit_code == ExitCode.OK, report.routes_tried[-1].error
    assert [h.tool for h in report.route] == ["onnx-upgrade", "onnx2tf"]
    assert report.route[0].detail == "onnx.version_converter: opset 6 -> 13"
    assert report.reference_runtime == "onnx-reference"  # ONNX Runtime refuses opset 6 here
    assert report.to_dict()["reference_runtime"] == "onnx-reference"
    assert report.checks and all(c.passed for c in report.checks)
    x, expected = stored(model, "input"), stored(model, "output")
    np.testing.assert_allclose(_run_tflite(out, x), expected, rtol=1e-5, atol=1e-5)
