"""Markdown and JUnit of a ``portkit check`` report (pure rendering)."""

from __future__ import annotations

import xml.etree.ElementTree as ET

from portkit.cli.ci import to_junit, to_markdown
from portkit.gate import Case, CaseResult, CheckReport
from portkit.results import Check, Latency, OutputParity


def _latency(p50: float) -> Latency:
    return Latency(runtime="onnxruntime", device="cpu", threads=None, batch=1,
                   cold_start_ms=5.0, runs=30, p50_ms=p50, p90_ms=p50, p99_ms=p50, mean_ms=p50,
                   cv=0.1, throughput=1000 / p50, peak_rss_mb=70.0)


def _output(err: float, passed: bool) -> OutputParity:
    return OutputParity(name="output_0", artifact_name="output_0", shape=(1, 10),
                        max_abs_err=err, max_rel_err=err, cosine=0.999949,
                        min_atol_to_pass=err * 0.9, passed=passed,
                        failed=() if passed else ("max abs err",))


def report() -> CheckReport:
    skipped = Check(runtime="onnxruntime", device="cuda", passed=False,
                    skipped="no CUDA device visible to onnxruntime")
    good = CaseResult(
        case=Case("cnn", "onnx", "onnxruntime"), passed=True, route="torch.onnx",
        checks=(Check(runtime="onnxruntime", device="cpu", passed=True,
                      outputs=(_output(6e-8, True),), seconds=0.25), skipped),
        latency=_latency(0.05))
    bad = CaseResult(
        case=Case("shipped", "onnx", "onnxruntime"), passed=False, route="given artifact",
        checks=(Check(runtime="onnxruntime", device="cpu", passed=False,
                      outputs=(_output(0.00419, False),), seconds=0.5), skipped),
        latency=_latency(0.02), regressions=("p50 0.02 ms is 50% slower than the baseline's",))
    return CheckReport(False, "portkit.toml", None, (good, bad), None, 12.5, {})


def test_markdown_has_a_row_per_case_and_says_why_each_failure_failed() -> None:
    text = to_markdown(report())
    lines = text.splitlines()
    assert lines[0] == "### portkit check: ❌ failed (1/2 cases)"
    assert "| cnn | onnx | onnxruntime | pass | 6e-08 | 0.999949 | 0.05 | torch.onnx |" in lines
    assert ("| shipped | onnx | onnxruntime | **FAIL** | 0.00419 | 0.999949 | 0.02 | "
            "given artifact |") in lines
    assert "**shipped/onnx/onnxruntime**" in lines
    assert ("- onnxruntime/cpu: output `output_0` max abs err 0.00419 (would pass with --atol "
            "0.00377)") in lines
    assert "- p50 0.02 ms is 50% slower than the baseline's" in lines
    assert lines[-1] == "Skipped: onnxruntime/cuda: no CUDA device visible to onnxruntime"


def test_junit_has_one_test_case_per_case_and_a_failure_with_the_reason() -> None:
    suite = ET.fromstring(to_junit(report())).find("testsuite")
    assert suite is not None
    assert (suite.get("tests"), suite.get("failures"), suite.get("time")) == ("2", "1", "12.500")
    cases = suite.findall("testcase")
    assert [(c.get("classname"), c.get("name"), c.get("time")) for c in cases] == [
        ("cnn.onnx", "onnxruntime", "0.250"), ("shipped.onnx", "onnxruntime", "0.500")]
    assert cases[0].find("failure") is None
    failure = cases[1].find("failure")
    assert failure is not None and "would pass with --atol 0.00377" in failure.get("message", "")
    assert "slower than the baseline" in (failure.text or "")
    assert "no CUDA device" in (cases[0].findtext("system-out") or "")
