"""Every fixture along every route that applies, through the library API.

A route that does not work today is listed in KNOWN_FAILURES with the reason, and its test is a
strict xfail: it fails the suite the day that route starts working, so the list stays true.
"""

from __future__ import annotations

from pathlib import Path

import pytest

import portkit
from portkit.convert import registry
from portkit.errors import ExitCode
from portkit.fixtures import FIXTURES
from portkit.formats import TARGETS, Format

pytest.importorskip("torch")

KINDS = {"torchscript": Format.TORCHSCRIPT, "pt2": Format.EXPORTED_PROGRAM}
# ONNX exported from TorchScript (through TS2EPConverter, or by the legacy exporter) keeps the
# traced shape arithmetic; onnx2tf 1.29 turns it into Flex ops or shapes XNNPACK rejects.
_TS_ONNX = "onnx2tf on ONNX exported from TorchScript"
KNOWN_FAILURES: dict[tuple[str, str, str], str] = {
    ("cnn", "torchscript", "torch.onnx+onnx2tf"): f"{_TS_ONNX}: emits a Flex op",
    ("two_io", "torchscript", "torch.onnx+onnx2tf"): f"{_TS_ONNX}: XNNPACK fails to prepare",
    ("lstm", "torchscript", "torch.onnx+onnx2tf"): f"{_TS_ONNX}: onnx2tf fails on the LSTM",
    ("lstm", "torchscript", "torch.onnx-legacy+onnx2tf"): f"{_TS_ONNX}: onnx2tf fails on the LSTM",
    ("lstm", "pt2", "torch.jit.trace+torch.onnx-legacy+onnx2tf"):
        f"{_TS_ONNX}: onnx2tf fails on the LSTM",
    ("attention", "torchscript", "litert-torch"):
        "traced size arithmetic survives TS2EPConverter; litert-torch needs static shapes",
    ("attention", "torchscript", "torch.onnx+onnx2tf"): f"{_TS_ONNX}: dynamic Reshape",
    ("attention", "torchscript", "torch.onnx-legacy+onnx2tf"): f"{_TS_ONNX}: dynamic Reshape",
    ("attention", "pt2", "torch.jit.trace+torch.onnx-legacy+onnx2tf"):
        f"{_TS_ONNX}: dynamic Reshape",
    ("upsample", "torchscript", "litert-torch"):
        "litert-torch cannot lower a stride-2 ConvTranspose2d with padding",
    ("upsample", "torchscript", "torch.onnx+onnx2tf"): f"{_TS_ONNX}: wrong Conv channels",
    ("upsample", "pt2", "litert-torch"):
        "litert-torch cannot lower a stride-2 ConvTranspose2d with padding",
}


def _cases() -> list[pytest.param]:
    cases = []
    for name in FIXTURES:
        for kind, fmt in KINDS.items():
            for target in ("onnx", "tflite", "torchscript"):
                for route in registry.plan(fmt, TARGETS[target]):
                    key = (name, kind, route.name)
                    marks = ([pytest.mark.xfail(strict=True, reason=KNOWN_FAILURES[key])]
                             if key in KNOWN_FAILURES else [])
                    cases.append(pytest.param(name, kind, target, route.name, marks=marks,
                                              id=f"{name}-{kind}-{route.name}"))
    return cases


@pytest.mark.parametrize("name,kind,target,route", _cases())
def test_fixture_route(saved_models, tmp_path: Path, name: str, kind: str, target: str,
                       route: str) -> None:
    fixture = FIXTURES[name]
    report = portkit.convert(saved_models(name, kind), target, tmp_path / f"out.{target}",
                             inputs=fixture.input_flags, route=route)
    assert report.exit_code == ExitCode.OK, report.routes_tried[-1].error
    assert [h.tool for h in report.route] == route.split("+")
    assert report.checks and all(c.passed for c in report.checks)
