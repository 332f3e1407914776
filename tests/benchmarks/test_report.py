"""The benchmark report's verdicts, on made-up results (the real ones are in
benchmarks/results/zoo.json and the README)."""

from __future__ import annotations

import copy
from typing import Any

from benchmarks.report import markdown, verdicts
from benchmarks.run import tools_for
from benchmarks.zoo import by_name


def _run(tool: str, target: str, mode: str = "", ok: bool = True, p50: float = 10.0,
         **extra: Any) -> dict[str, Any]:
    return {"tool": tool, "label": tool if mode != "optimize" else "portkit --optimize latency",
            "target": target, "mode": mode, "artifact": "m.tflite" if ok else None, "ran": ok,
            "parity_passed": ok, "max_abs_err": 1e-6, "cosine": 1.0, "size_bytes": 1000,
            "seconds": 5.0, "error": None if ok else "boom", "route": "litert-torch",
            "latency": {"tflite_1t": {"p50_ms": p50}, "tflite_2t": {"p50_ms": p50}}, **extra}


def _results() -> dict[str, Any]:
    runs = [_run("portkit", "tflite", "default", portkit_seconds=10.0, converter_seconds=8.0,
                 overhead_seconds=2.0),
            _run("portkit", "tflite", "optimize", p50=10.4),
            _run("litert-torch", "tflite", p50=10.0),
            _run("onnx2tf", "tflite", ok=False)]
    return {"models": [{"name": "resnet18", "framework": "torch", "config": "", "runs": runs,
                        "date": "today", "versions": {"torch": "2.13.0"},
                        "machine": {"cpu": "cpu", "cores": 2, "memory_gib": 24,
                                    "python": "3.11"}}]}


def test_verdicts_hold_on_good_results_and_the_markdown_shows_them() -> None:
    found = {v.claim.split(":")[0]: v for v in verdicts(_results())}
    assert all(v.held for v in found.values()), found
    assert "1.040" in found["--optimize latency"].evidence
    assert "20%" in found["portkit's overhead under 30% of resnet18 -> TFLite"].evidence
    text = markdown(_results())
    assert "| resnet18 | **portkit --optimize latency** (litert-torch) | yes |" in text
    assert "1.04×" in text and "no: boom" in text


def test_verdicts_fail_when_portkit_misses_a_model_is_slow_or_heavy() -> None:
    data = copy.deepcopy(_results())
    runs = data["models"][0]["runs"]
    runs[0].update(parity_passed=False, overhead_seconds=4.0)
    runs[1].update(parity_passed=False)
    assert not [v for v in verdicts(data) if v.claim.startswith("TFLite float32")][0].held
    data = copy.deepcopy(_results())
    data["models"][0]["runs"][1]["latency"]["tflite_1t"]["p50_ms"] = 10.6
    data["models"][0]["runs"][0]["overhead_seconds"] = 4.0
    failed = [v.claim for v in verdicts(data) if not v.held]
    assert len(failed) == 2 and "5% slower" in failed[0] and "overhead" in failed[1]


def test_every_zoo_model_meets_portkit_and_the_peers_for_its_framework() -> None:
    resnet, keras = by_name(["resnet18", "keras_resnet50"])
    assert {(t.name, t.target, t.mode) for t in tools_for(resnet)} == {
        ("portkit", "onnx", "default"), ("torch.onnx", "onnx", ""),
        ("portkit", "tflite", "default"), ("portkit", "tflite", "optimize"),
        ("litert-torch", "tflite", ""), ("onnx2tf", "tflite", "")}
    assert {t.name for t in tools_for(keras) if t.target == "tflite-int8"} == {
        "portkit", "tflite-converter"}
    assert {t.name for t in tools_for(keras) if t.target == "onnx"} == {"portkit", "tf2onnx"}


def test_an_artifact_that_fails_in_one_timed_setting_did_not_convert() -> None:
    data = copy.deepcopy(_results())
    peer = data["models"][0]["runs"][2]
    peer["latency"]["tflite_1t"] = {"error": "XNNPack delegate failed to prepare"}
    assert "does not run on tflite_1t: XNNPack" in markdown(data)
    # The peer that failed no longer sets the bar: no comparable pair is left.
    speed = [v for v in verdicts(data) if v.claim.startswith("--optimize")][0]
    assert speed.evidence == "no comparable pair"


def test_the_report_lists_the_fp32_verdicts_the_scale_aware_rule_changed() -> None:
    data = copy.deepcopy(_results())
    runs = data["models"][0]["runs"]
    runs[0].update(parity_passed_old_rule=False, scaled_err=5e-7, max_abs_err=4e-4)
    runs[2].update(parity_passed_old_rule=True, scaled_err=1e-7)
    text = markdown(data)
    assert "2 float32 artifacts judged by both rules; 1 verdicts changed:" in text
    assert "| resnet18 | **portkit** (litert-torch) | tflite | 0.0004 | 5e-07 | FAIL | pass |" in text


def test_the_tf2onnx_cost_verdict() -> None:
    ort = {"onnxruntime": {"p50_ms": 10.0}}
    runs = [_run("portkit", "onnx", "default", latency=ort, seconds=13.0),
            _run("tf2onnx", "onnx", latency=ort, seconds=10.0)]
    data = {"models": [{**_results()["models"][0], "name": "keras_x", "runs": runs}]}
    found = {v.claim.split(" (")[0]: v for v in verdicts(data)}
    cost = found["TF -> ONNX: portkit's convert and validate within 1.3x of tf2onnx alone"]
    assert cost.held and cost.evidence == "keras_x 1.30x"
    runs[0]["seconds"] = 14.0
    assert not [v for v in verdicts(data) if v.claim.startswith("TF -> ONNX")][0].held


def test_the_ratio_to_the_best_peer_is_taken_within_each_timing_process() -> None:
    # the third process ran slow as a whole: the ratio of the medians (9/8.1) would be 1.11x
    data = copy.deepcopy(_results())
    runs = data["models"][0]["runs"]
    runs[1]["latency"]["tflite_1t"]["p50_ms"] = 10.0
    runs[1]["latency"]["tflite_2t"] = {"p50_ms": 9.0, "p50_ms_each": [8.0, 9.0, 12.0]}
    runs[2]["latency"]["tflite_2t"] = {"p50_ms": 8.1, "p50_ms_each": [7.9, 8.1, 11.8]}
    worst = [v for v in verdicts(data) if v.claim.startswith("--optimize latency")][0]
    assert worst.held and "1.017 (resnet18 tflite tflite_2t)" in worst.evidence  # of 1.013,
    # 1.111 and 1.017


def test_the_provenance_names_each_session_by_day_and_cpu() -> None:
    data = copy.deepcopy(_results())
    other = copy.deepcopy(data["models"][0])
    other.update(name="lstm", machine={**other["machine"], "cpu": "other cpu"})
    data["models"].append(other)
    assert markdown(data).startswith("Runs of today (lstm, other cpu); today (resnet18, cpu),")
