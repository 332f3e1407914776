from __future__ import annotations

from pathlib import Path

from portkit import api
from portkit.options import Budget


def _dynamic_onnx(path: Path) -> Path:
    """y = relu(x) + 1 over x: batch x seq (both dim_param)."""
    import onnx
    from onnx import TensorProto, helper

    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, ["batch", "seq"])
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, ["batch", "seq"])
    one = helper.make_tensor("one", TensorProto.FLOAT, [], [1.0])
    graph = helper.make_graph([helper.make_node("Relu", ["x"], ["r"]),
                               helper.make_node("Add", ["r", "one"], ["y"])],
                              "g", [x], [y], [one])
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), str(path))
    return path


def test_bench_times_a_dynamic_model_at_each_shape(tmp_path: Path) -> None:
    model = _dynamic_onnx(tmp_path / "m.onnx")
    report = api.bench([model], shapes=["x:1x16", "x:1x512"],
                       budget=Budget(warmup=1, min_runs=3, min_seconds=0.01))
    assert [r.inputs for r in report.rows] == ["x 1x16", "x 1x512"]
    assert report.ratios() == [1.0, 1.0]  # each size against the first row of that size
    assert all(r.latency.runs >= 3 for r in report.rows)
