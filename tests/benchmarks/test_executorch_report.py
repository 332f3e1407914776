"""The docs tables of benchmarks/executorch.py (fastest format per model, the ``.pte``
conversion against ExecuTorch's own export), on made-up results."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from benchmarks import executorch

MACHINE = {"cpu": "cpu", "cores": 2}


def _model(name: str, **over: Any) -> dict[str, Any]:
    m = {"name": name,
         "executorch": {"passed": True, "route": "executorch-xnnpack", "seconds": 30.0,
                        "converter_seconds": 11.0, "sha256": "same"},
         "tflite": {"passed": True, "route": "litert-torch"},
         "onnx": {"passed": True, "route": "torch.onnx"},
         "peer": {"same_steps": 10.0, "wall": 15.0, "turns": [], "sha256": "same"},
         "latency": {"1t": {"p50_ms": {"executorch": 4.0, "tflite": 5.0, "onnx": 8.0}},
                     "2t": {"p50_ms": {"executorch": 3.0, "tflite": 2.0, "onnx": 6.0}}},
         "machine": MACHINE, "date": "today"}
    for timed in m["latency"].values():
        timed.update(executorch.ranking(timed["p50_ms"]))
    return {**m, **over}


def _table(tmp_path: Path, models: list[dict[str, Any]]) -> list[str]:
    path = tmp_path / "r.json"
    path.write_text(json.dumps({"models": models}))
    return executorch.markdown(path).splitlines()


def test_ranking_names_the_fastest_and_each_ratio_to_it() -> None:
    assert executorch.ranking({"executorch": 3.0, "tflite": 2.0, "onnx": 6.0}) == {
        "fastest": "tflite", "ratio": {"executorch": 1.5, "tflite": 1.0, "onnx": 3.0}}


def test_the_speed_table_bolds_the_fastest_and_gives_the_others_ratios(
        tmp_path: Path) -> None:
    table = _table(tmp_path, [_model("a")])
    assert table[0] == ("| model | threads | ExecuTorch p50 ms | TFLite p50 ms | "
                        "ONNX Runtime p50 ms | fastest |")
    assert table[2] == "| a | 1 | **4.00** | 5.00 (1.25x) | 8.00 (2.00x) | ExecuTorch |"
    assert table[3] == "| a | 2 | 3.00 (1.50x) | **2.00** | 6.00 (3.00x) | TFLite |"


def test_the_conversion_table_holds_the_hop_to_the_bar(tmp_path: Path) -> None:
    slow = _model("b", executorch={"passed": True, "route": "executorch-portable",
                                   "seconds": 40.0, "converter_seconds": 13.0})
    table = _table(tmp_path, [_model("a"), slow])
    assert ("| a | executorch-xnnpack | 11.0 | 10.0 | 1.10x | yes | 30.0 | 15.0 | 2.00x | yes |"
            in table)
    # Another program than the export's (the rewrite hop before it, or no delegate).
    assert ("| b | executorch-portable | 13.0 | 10.0 | 1.30x | **no** | 40.0 | 15.0 | 2.67x | no |"
            in table)
    assert executorch.conversion_ratios(slow) == {"hop": 1.3, "total": 40.0 / 15.0}


def test_a_model_that_did_not_convert_to_pte_says_why_and_is_timed_without_it(
        tmp_path: Path) -> None:
    timed = {"p50_ms": {"tflite": 5.0, "onnx": 4.0}}
    failed = _model("c", executorch={"passed": False, "route": None,
                                     "error": "executorch-xnnpack: could not lower"},
                    latency={"1t": {**timed, **executorch.ranking(timed["p50_ms"])}, "2t": {}})
    table = _table(tmp_path, [failed])
    assert table[2] == "| c | 1 | not converted | 5.00 (1.25x) | **4.00** | ONNX Runtime |"
    assert table[3] == "| c | 2 | not converted | not timed | not timed | - |"
    assert any(line.startswith("| c | - | - | - | - | not compared: executorch-xnnpack: "
                               "could not lower") for line in table)
    assert executorch.conversion_ratios(failed) is None


def test_a_failed_peer_leaves_the_conversion_uncompared(tmp_path: Path) -> None:
    model = _model("d", peer={"turns": [{"ok": False, "error": "RuntimeError: boom"}]})
    assert executorch.conversion_ratios(model) is None
    assert any("not compared: the peer failed: RuntimeError: boom" in line
               for line in _table(tmp_path, [model]))


def test_each_side_is_its_median_turn_and_a_failed_turn_never_counts() -> None:
    turns = [{"passed": True, "converter_seconds": 12.0, "seconds": 20.0, "path": "a"},
             {"passed": True, "converter_seconds": 30.0, "seconds": 25.0, "path": "b"},
             {"passed": True, "converter_seconds": 10.0, "seconds": 40.0, "path": "c"},
             {"passed": False, "converter_seconds": 1.0, "seconds": 2.0, "error": "boom"}]
    found = executorch.typical(turns, "converter_seconds", "passed")
    assert (found["converter_seconds"], found["seconds"], found["path"]) == (12.0, 25.0, "a")
    assert [t["error"] for t in found["turns"]] == [None, None, None, "boom"]
    assert "path" not in found["turns"][0]
    peers = [{"ok": False, "wall": 1.0, "error": "x"}]
    assert executorch.typical(peers, "same_steps", "ok")["ok"] is False


def test_the_tables_keep_the_zoo_order_whatever_order_the_results_are_in(
        tmp_path: Path) -> None:
    table = _table(tmp_path, [_model("lstm"), _model("resnet18")])
    assert [line.split(" | ")[0] for line in table[2:6]] == ["| resnet18"] * 2 + ["| lstm"] * 2
