from __future__ import annotations

from benchmarks.dynamic import markdown


def test_the_dynamic_table_sets_each_length_against_its_static_artifact() -> None:
    rows = [
        {"target": "onnx", "length": None, "passed": True, "seconds": 9.0, "route": "torch.onnx",
         "p50_ms": {"16": 2.0, "64": 3.0}},
        {"target": "onnx", "length": 16, "passed": True, "seconds": 8.0, "route": "torch.onnx",
         "p50_ms": {"16": 1.0}},
        {"target": "onnx", "length": 64, "passed": True, "seconds": 8.0, "route": "torch.onnx",
         "p50_ms": {"64": 3.0}},
        {"target": "tflite", "length": None, "passed": False, "seconds": 30.0,
         "routes_failed": ["litert-torch: litert-torch: lowers only axis 0; pass --static",
                           "a+b: onnx2tf: can't keep them (TypeError: x)",
                           "a+b+c: onnx2tf: can't keep them (TypeError: y)"]},
    ]
    data = {"model": "bert_tiny", "lengths": [16, 64], "rows": rows, "date": "today",
            "machine": {"cpu": "cpu", "cores": 2}}
    table = markdown(data).splitlines()
    assert table[2] == "| onnx | dynamic seq | 9.0 | torch.onnx | 2.00 (2.00x static) | 3.00 (1.00x static) |"
    assert table[3] == "| onnx | static, seq 16 | 8.0 | torch.onnx | 1.00 |  |"
    assert table[5].startswith("| tflite | dynamic seq | 30.0 | not converted: litert-torch: "
                               "lowers only axis 0; onnx2tf: can't keep them |")
