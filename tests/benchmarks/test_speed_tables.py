"""The README tables of benchmarks/tflite_vs_ort.py and benchmarks/profiles.py, from their JSON."""

from __future__ import annotations

import json
from pathlib import Path

from benchmarks import profiles, tflite_vs_ort

MACHINE = {"cpu": "cpu", "cores": 2}


def _results(tmp_path: Path, models: list[dict]) -> Path:
    path = tmp_path / "r.json"
    path.write_text(json.dumps({"models": [{**m, "machine": MACHINE, "date": "today"}
                                           for m in models]}))
    return path


def test_the_tflite_vs_ort_table_flags_a_model_past_the_bar(tmp_path: Path) -> None:
    table = tflite_vs_ort.markdown(_results(tmp_path, [
        {"name": "a", "tflite": {"route": "litert-torch"}, "onnx": {"route": "torch.onnx"},
         "tflite_p50_ms": 3.0, "ort_p50_ms": 1.0, "ratio": 3.0},
        {"name": "b", "tflite": {"route": "x"}, "onnx": {"route": "y"}},
    ])).splitlines()
    assert table[2] == "| a | litert-torch | torch.onnx | 3.00 | 1.00 | 3.00x | **no** |"
    assert table[3] == "| b | x | y | - | - | - | not timed |"


def test_the_profile_table_names_what_left_xnnpack(tmp_path: Path) -> None:
    kinds = [{"kind": "WHILE", "ops": "1 op", "share": 0.6, "delegated": False},
             {"kind": "Convolution", "ops": "3 ops", "share": 0.4, "delegated": True}]
    table = profiles.markdown(_results(tmp_path, [
        {"name": "a", "route": "litert-torch", "passed": True, "p50_ms": 2.0,
         "xnnpack_share": 0.4, "builtin_share": 0.6, "builtin_kinds": ["WHILE"], "kinds": kinds},
        {"name": "b", "route": "onnx2tf", "passed": False},
    ])).splitlines()
    assert table[2] == ("| a | litert-torch | 2.00 | 40.0% | 60.0% (WHILE) | "
                        "WHILE (builtin) 60%, Convolution 40% |")
    assert table[3] == "| b | onnx2tf | - | - | - | not converted |"
