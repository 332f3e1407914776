"""Reports as JSON, through the one mixin: plain types, derived keys, the exit code."""

from __future__ import annotations

import json
from pathlib import Path

from portkit.formats import Format
from portkit.options import Budget, Optimize
from portkit.policies import POLICIES, Quantize
from portkit.results import (
    Attempt,
    BenchReport,
    BenchRow,
    Check,
    ConvertReport,
    FileInfo,
    Hop,
    Latency,
    OutputParity,
    ValidateReport,
)
from portkit.specs import TensorSpec


def _parity(err: float) -> OutputParity:
    return OutputParity(name="y", artifact_name="y", shape=(1, 2), max_abs_err=err,
                        max_rel_err=float("inf"), cosine=1.0, min_atol_to_pass=0.0, passed=True)


def _latency(p50: float) -> Latency:
    return Latency(runtime="tflite", device="cpu", threads=2, batch=1, cold_start_ms=1.0, runs=30,
                   p50_ms=p50, p90_ms=p50, p99_ms=p50, mean_ms=p50, cv=0.0, throughput=1.0,
                   peak_rss_mb=1.0)


def test_a_convert_report_is_plain_json_with_its_derived_keys() -> None:
    hop = Hop(Format.EXPORTED_PROGRAM, Format.TFLITE, "litert-torch", 1.23456, "detail")
    check = Check(runtime="tflite", device="cpu", passed=True, outputs=(_parity(1e-7),))
    attempt = Attempt(route="litert-torch", converted=True, passed=True, hops=(hop,),
                      checks=(check,), latency=_latency(2.0))
    report = ConvertReport(
        passed=True, validated=True, source=FileInfo("m.pt2", "exported-program"),
        target="tflite", artifact=FileInfo("m.tflite", "tflite", 10, "abc"), route=(hop,),
        routes_tried=(attempt,), checks=(check,), inputs=(TensorSpec("x", (1, 2)),),
        tolerance=POLICIES["int8"], seed=0, seconds=3.0, quantize=Quantize.INT8,
        optimize=Optimize.LATENCY, converter_seconds=1.0, route_name="litert-torch")
    data = json.loads(report.to_json())
    assert data["exit_code"] == 0 and data["overhead_seconds"] == 2.0
    assert data["quantize"] == "int8" and data["optimize"] == "latency"
    assert data["route"] == [{"from": "exported-program", "to": "tflite", "tool": "litert-torch",
                              "seconds": 1.235, "detail": "detail"}]
    [tried] = data["routes_tried"]
    assert tried["ok"] is True and tried["passed"] is True and tried["hops"] == data["route"]
    assert tried["latency"]["p50_ms"] == 2.0
    assert data["checks"][0]["outputs"][0]["max_rel_err"] == "inf"  # non-finite as a string
    assert data["tolerance"]["policy"] == "int8" and data["inputs"][0]["shape"] == [1, 2]


def test_exit_codes_follow_the_verdict(tmp_path: Path) -> None:
    base = dict(passed=False, validated=True, source=FileInfo("m", "onnx"), target="tflite",
                artifact=None, route=(), routes_tried=(), checks=(), inputs=(),
                tolerance=POLICIES["fp32"], seed=0, seconds=1.0)
    assert ConvertReport(**base).exit_code == 3
    base["artifact"] = FileInfo("m.tflite", "tflite")
    assert ConvertReport(**base).exit_code == 1
    assert ConvertReport(**{**base, "validated": False}).exit_code == 0
    report = ValidateReport(False, FileInfo("a", "onnx"), FileInfo("b", "onnx"), (), (),
                            POLICIES["fp32"], {}, 0, 1.0)
    assert report.to_dict()["exit_code"] == 1 and report.to_dict()["flags"]
    report.write_json(tmp_path / "r.json")
    assert json.loads((tmp_path / "r.json").read_text())["passed"] is False


def test_bench_rows_carry_their_ratio_to_the_first() -> None:
    report = BenchReport((BenchRow("a.onnx", "onnx", _latency(2.0)),
                          BenchRow("b.tflite", "tflite", _latency(1.0))), Budget())
    assert [r["p50_ratio"] for r in report.to_dict()["rows"]] == [1.0, 0.5]
    assert "exit_code" not in report.to_dict()
