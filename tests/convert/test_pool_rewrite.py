"""The ``pool-rewrite`` preparation: pooling windows that cover their whole input become global
pooling before the converter, exactly (module level, ONNX Runtime level), and only then; a CNN
ending like EfficientNet converts to a TFLite with a MEAN, not a padded 1280x1280 pooling, from
an ExportedProgram and from TorchScript."""

from __future__ import annotations

import itertools
from pathlib import Path
from typing import Any

import numpy as np
import pytest

import portkit
from portkit.convert import pool_rewrite, registry
from portkit.errors import ExitCode
from portkit.fixtures import FIXTURES
from portkit.formats import Format
from portkit.formats.tflite import op_counts
from portkit.specs import TensorSpec

torch = pytest.importorskip("torch")


def _rewritten(pool: Any, shape: tuple[int, ...]) -> tuple[list[str], Any, Any]:
    """``pool`` exported on an input of ``shape`` and rewritten: what was rewritten, the
    original's output and the rewritten graph's."""
    torch.manual_seed(0)
    x = torch.randn(*shape)
    module = torch.export.export(torch.nn.Sequential(pool), (x,)).module()
    expected = module(x)
    done = pool_rewrite.rewrite_graph(module.graph)
    module.recompile()
    return done, expected, module(x)


# (pool, input shape, rewritten): the window must cover the input, one output per axis, and an
# average must divide by the input's size.
CASES = [
    (torch.nn.AvgPool2d(1280, ceil_mode=True), (2, 3, 7, 7), True),  # EfficientNet's
    (torch.nn.AvgPool2d(1280, ceil_mode=True, count_include_pad=False), (1, 3, 4, 5), True),
    (torch.nn.AvgPool2d((9, 12), ceil_mode=True), (1, 3, 3, 8), True),
    (torch.nn.AvgPool2d(7), (1, 3, 7, 7), True),
    (torch.nn.AvgPool2d(9, padding=1, count_include_pad=False), (1, 3, 7, 7), True),
    (torch.nn.AvgPool2d(9, padding=1), (1, 3, 7, 7), False),  # divides by 81, not 49
    (torch.nn.AvgPool2d(1280, ceil_mode=True, divisor_override=5), (1, 3, 7, 7), False),
    (torch.nn.AvgPool2d(4), (1, 3, 7, 7), False),  # 1x1 output, but rows 4..6 left out
    (torch.nn.AvgPool2d(3), (1, 3, 7, 7), False),  # 2x2 output
    (torch.nn.MaxPool2d(1280, ceil_mode=True), (2, 3, 7, 7), True),
    (torch.nn.MaxPool2d(9, padding=3, ceil_mode=True), (1, 3, 4, 5), True),
    (torch.nn.MaxPool2d(5, dilation=2, ceil_mode=True), (1, 3, 7, 7), False),
    (torch.nn.MaxPool2d(4), (1, 3, 7, 7), False),
]


@pytest.mark.parametrize("pool,shape,rewritten", CASES, ids=[
    f"{type(p).__name__}-{'x'.join(map(str, s[2:]))}-{i}" for i, (p, s, _) in enumerate(CASES)])
def test_the_rewrite_is_exact_and_refuses_what_is_not(pool: Any, shape: tuple[int, ...],
                                                      rewritten: bool) -> None:
    done, expected, got = _rewritten(pool, shape)
    assert bool(done) == rewritten, done
    assert got.shape == expected.shape
    torch.testing.assert_close(got, expected, rtol=1e-6, atol=1e-6)


def test_a_max_pool_whose_indices_are_used_is_kept() -> None:
    class Indices(torch.nn.Module):
        def forward(self, x: Any) -> Any:
            return torch.nn.functional.max_pool2d(x, 1280, ceil_mode=True, return_indices=True)

    program = torch.export.export(Indices(), (torch.randn(1, 2, 5, 5),))
    assert pool_rewrite.rewrite_graph(program.module().graph) == []


def _onnx_pool(op: str, shape: tuple[int, int], **attrs: Any) -> Any:
    from onnx import TensorProto, helper

    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, ["batch", 3, *shape])
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, None)
    graph = helper.make_graph([helper.make_node(op, ["x"], ["y"], name="pool", **attrs)], "g",
                              [x], [y])
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 19)])


def _ort(model: Any, x: np.ndarray) -> np.ndarray:
    import onnxruntime as ort

    session = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    return session.run(None, {"x": x})[0]


def test_onnx_pooling_is_rewritten_exactly_where_onnx_runtime_agrees() -> None:
    rewrites = 0
    grid = itertools.product([(7, 7), (4, 5)], [1280, 9, 7, 4], [0, 1, 3], [0, 1], [0, 1],
                             ["AveragePool", "MaxPool"])
    for shape, k, pad, ceil, include, op in grid:
        if op == "MaxPool" and include:
            continue
        attrs = {"kernel_shape": [k, k], "strides": [k, k], "pads": [pad] * 4, "ceil_mode": ceil}
        if op == "AveragePool":
            attrs["count_include_pad"] = include
        model = _onnx_pool(op, shape, **attrs)
        x = np.random.default_rng(0).standard_normal((2, 3, *shape)).astype(np.float32)
        try:
            expected = _ort(model, x)
        except Exception:  # noqa: BLE001 - a geometry ONNX Runtime refuses: nothing to compare
            continue
        done = pool_rewrite.rewrite_onnx(model)
        rewrites += bool(done)
        assert [n.op_type for n in model.graph.node] == (
            [f"Global{op}"] if done else [op])
        np.testing.assert_allclose(_ort(model, x), expected, rtol=1e-6, atol=1e-6,
                                   err_msg=f"{op} {attrs} over {shape}: {done}")
    assert rewrites >= 20  # the grid has cases of both kinds


def test_an_onnx_source_gets_the_hop(tmp_path: Path) -> None:
    import onnx

    model = _onnx_pool("AveragePool", (7, 7), kernel_shape=[1280, 1280], strides=[1280, 1280],
                       ceil_mode=1)
    path = tmp_path / "pool.onnx"
    onnx.save(model, str(path))
    assert registry.needed(str(path), Format.ONNX) == ["pool-rewrite"]
    dst = tmp_path / "global.onnx"
    hop = registry.run_edge("pool-rewrite", Format.ONNX, str(path), Format.ONNX, str(dst),
                            None, portkit.options.ConvertOptions())
    assert hop.detail == "AveragePool 1280x1280 over 7x7 -> global mean"
    assert [n.op_type for n in onnx.load(str(dst)).graph.node] == ["GlobalAveragePool"]


def test_models_without_such_windows_need_no_rewrite(saved_models) -> None:
    assert registry.needed(str(saved_models("cnn", "pt2")), Format.EXPORTED_PROGRAM) == []
    assert registry.needed(str(saved_models("wide_avg_pool", "pt2")),
                           Format.EXPORTED_PROGRAM) == ["pool-rewrite"]
    assert all("pool-rewrite" not in r.name
               for r in registry.plan(Format.EXPORTED_PROGRAM, Format.TFLITE))


def _unasked() -> list:
    raise AssertionError("the test asked for the inputs of a module without pooling")


def _narrow_pool(tmp_path: Path) -> Path:
    """A traced module with an ordinary 2x2 max pool (a 4x4 map out of 8x8), input ``x``."""
    class NarrowPool(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.conv, self.pool = torch.nn.Conv2d(3, 4, 3, padding=1), torch.nn.MaxPool2d(2)
            self.head = torch.nn.Linear(64, 2)

        def forward(self, x: Any) -> Any:
            return self.head(torch.flatten(self.pool(self.conv(x)), 1))

    torch.manual_seed(0)
    path = tmp_path / "narrow_pool.pt"
    torch.jit.save(torch.jit.trace(NarrowPool().eval(), torch.randn(1, 3, 8, 8)), str(path))
    return path


def test_a_torchscript_source_needs_it_at_its_inputs_sizes(saved_models, tmp_path: Path) -> None:
    wide = str(saved_models("wide_avg_pool", "torchscript"))
    given = list(FIXTURES["wide_avg_pool"].inputs)
    assert registry.needed(wide, Format.TORCHSCRIPT, given) == ["pool-rewrite"]
    assert registry.needed(str(saved_models("wide_max_pool", "torchscript")),
                           Format.TORCHSCRIPT, given) == ["pool-rewrite"]
    # TorchScript stores no shapes: without --input nothing is known, nothing rewritten (the
    # routes then report the missing --input).
    assert registry.needed(wide, Format.TORCHSCRIPT) == []
    # A module without pooling ops is never exported to find out: the inputs are not asked for.
    cnn = saved_models("cnn", "torchscript")
    assert pool_rewrite.script_needs(cnn, _unasked) is False
    assert registry.needed(str(cnn), Format.TORCHSCRIPT, list(FIXTURES["cnn"].inputs)) == []
    # A pooling op whose window leaves most of the map out: exported, and not rewritten.
    narrow = _narrow_pool(tmp_path)
    assert registry.needed(str(narrow), Format.TORCHSCRIPT,
                           [TensorSpec("x", (1, 3, 8, 8))]) == []
    with pytest.raises(AssertionError, match="inputs of a module"):
        pool_rewrite.script_needs(narrow, _unasked)


def test_a_torchscript_module_that_does_not_trace_back_is_passed_on(
        saved_models, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    def fail(*args: Any, **kwargs: Any) -> Any:
        raise RuntimeError("no trace today")

    src, dst = saved_models("wide_avg_pool", "torchscript"), tmp_path / "prepared.pt"
    inputs = list(FIXTURES["wide_avg_pool"].inputs)
    assert pool_rewrite.rewrite_script(src, Format.TORCHSCRIPT, dst, inputs,
                                       portkit.options.ConvertOptions()) == (
        "AvgPool2d 1280x1280 over 4x4 -> global mean")
    monkeypatch.setattr(torch.jit, "trace", fail)
    detail = pool_rewrite.rewrite_script(src, Format.TORCHSCRIPT, dst, inputs,
                                         portkit.options.ConvertOptions())
    assert detail.startswith("nothing rewritten") and "no trace today" in detail, detail
    assert dst.read_bytes() == src.read_bytes()


def test_a_torchscript_source_without_wide_windows_gets_no_hop(workers, tmp_path: Path) -> None:
    report = portkit.convert(_narrow_pool(tmp_path), "tflite", tmp_path / "narrow.tflite",
                             inputs=["x:1x3x8x8"], workers=workers)
    assert report.exit_code == ExitCode.OK, report.routes_tried
    assert report.route_name == "litert-torch"
    assert "MAX_POOL_2D" in op_counts(tmp_path / "narrow.tflite")


@pytest.mark.parametrize("kind", ["pt2", "torchscript"])
@pytest.mark.parametrize("name,reduction", [("wide_avg_pool", "MEAN"), ("wide_max_pool", "REDUCE_MAX")])
def test_the_default_route_writes_a_global_reduction_and_matches(
        saved_models, workers, tmp_path: Path, name: str, reduction: str, kind: str) -> None:
    out = tmp_path / f"{name}.tflite"
    report = portkit.convert(saved_models(name, kind), "tflite", out,
                             inputs=FIXTURES[name].input_flags, workers=workers)
    assert report.exit_code == ExitCode.OK, report.routes_tried
    assert report.route_name == "pool-rewrite+litert-torch"
    assert report.route[0].tool == "pool-rewrite"
    pool = "AvgPool2d" if "avg" in name else "MaxPool2d"
    what = "mean" if "avg" in name else "max"
    assert report.route[0].detail == f"{pool} 1280x1280 over 4x4 -> global {what}"
    assert report.checks and all(c.passed for c in report.checks)
    ops = op_counts(out)
    assert "AVERAGE_POOL_2D" not in ops and "MAX_POOL_2D" not in ops, ops
    assert ops.get(reduction) == 1, ops
    # Without the rewrite the 4x4 map is padded to the 1280x1280 window (PAD / PADV2) first.
    assert max(max(t["shape"], default=0) for t in _tensors(out)) < 1280


def _tensors(path: Path) -> list[dict]:
    """The TFLite model's tensors as its interpreter lists them (name, shape...)."""
    from ai_edge_litert.interpreter import Interpreter

    return Interpreter(model_path=str(path)).get_tensor_details()
