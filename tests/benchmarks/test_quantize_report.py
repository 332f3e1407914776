"""The quantization benchmark's report and verdicts, on made-up results (the real ones are in
benchmarks/results/quantize.json and the README)."""

from __future__ import annotations

import copy
from typing import Any

from benchmarks.quantize import TOOLS
from benchmarks.quantize_report import markdown, verdicts


def _run(tool: str, mode: str, ok: bool = True, p50: float = 10.0, seconds: float = 12.0,
         **extra: Any) -> dict[str, Any]:
    label = next(t.label for t in TOOLS if t.name == tool)
    return {"tool": tool, "label": label, "mode": mode, "artifact": "m.tflite" if ok else None,
            "ran": ok, "parity_passed": ok, "cosine": 0.995, "top1": 1.0, "size_bytes": 5e6,
            "seconds": seconds, "error": None if ok else "boom", "exit_code": 0 if ok else 1,
            "route": "litert-torch+ai-edge-quantizer" if tool == "portkit" else None,
            "latency": {"tflite_1t": {"p50_ms": p50}, "tflite_2t": {"p50_ms": p50}}, **extra}


def _results() -> dict[str, Any]:
    runs = [_run("portkit", "dynamic", p50=9.0), _run("litert-torch-pt2e", "dynamic"),
            _run("onnx2tf", "dynamic", ok=False), _run("portkit", "int8", p50=8.0),
            _run("litert-torch+aeq", "int8", p50=8.8)]
    return {"models": [{"name": "encoder4", "runs": runs, "date": "today", "samples": 132,
                        "held_back": 32, "float": {"seconds": 10.0, "route": "litert-torch"},
                        "versions": {"torch": "2.13.0"},
                        "machine": {"cpu": "cpu", "cores": 2, "memory_gib": 24,
                                    "python": "3.11"}}]}


def test_the_verdicts_hold_on_good_results_and_the_markdown_shows_them() -> None:
    found = verdicts(_results())
    assert [v.held for v in found] == [True, True, True], found
    assert "12.0 s (litert-torch+ai-edge-quantizer) against 10.0 s (litert-torch): 1.20x" in (
        found[0].evidence)
    text = markdown(_results())
    assert "| encoder4 | **portkit** (litert-torch+ai-edge-quantizer) | yes | 12.0 | 0.9950 | " \
           "100% | 5.0 | 9 | 0.90× | 9 | 0.90× |" in text
    assert "| encoder4 | torch.onnx + onnx2tf CLI | no: boom |" in text
    assert "| encoder4 | 10.0 (litert-torch) | 12.0 (litert-torch+ai-edge-quantizer) | 1.20× |" \
        in text
    assert "0.91×" in text  # int8: 8.0 against the aeq peer's 8.8


def test_the_dynamic_verdict_fails_when_slow_or_unfaithful_or_unmeasured() -> None:
    data = copy.deepcopy(_results())
    data["models"][0]["runs"][0]["seconds"] = 15.5
    assert not verdicts(data)[0].held and "1.55x" in verdicts(data)[0].evidence
    data = copy.deepcopy(_results())
    data["models"][0]["runs"][0]["parity_passed"] = False
    assert not verdicts(data)[0].held and "did not pass" in verdicts(data)[0].evidence
    data["models"][0]["name"] = "resnet18"
    assert verdicts(data)[0].evidence == "not measured"


def test_portkit_missing_a_model_a_peer_converts_fails_coverage() -> None:
    data = copy.deepcopy(_results())
    data["models"][0]["runs"][3].update(parity_passed=False, failed=["top-1"])
    int8 = next(v for v in verdicts(data) if v.claim.startswith("int8"))
    assert not int8.held and "missed: encoder4" in int8.evidence
    assert "wrong numbers (top-1) (portkit exit 1)" not in markdown(data)
    data["models"][0]["runs"][3]["exit_code"] = 1  # portkit's own check failed it too
    assert ("| **portkit** (litert-torch+ai-edge-quantizer) | wrong numbers (top-1) "
            "(portkit exit 1) |") in markdown(data)
