"""``Session.trace`` and ``tasks.trace``: every runtime exposes its intermediate tensors.

Each trace runs in a warm worker on a small fixture; its last tensors must equal the model's
outputs, every tensor's inputs come before it, and each ``.npy`` file holds the value recorded.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest

import portkit
from portkit.errors import ExitCode, UsageError
from portkit.formats import Format
from portkit.options import Feed
from portkit.runtimes import tasks
from portkit.runtimes.onnx_trace import _groups, fx_origin
from portkit.runtimes.tflite_trace import dequantize
from portkit.runtimes.tracing import TensorWriter
from portkit.runtimes.worker import Pool
from portkit.specs import TensorSpec
from portkit.traces import Trace

X = TensorSpec("x", (1, 3, 32, 32), "float32")


def _trace(workers: Pool, worker: str, path: Path, fmt: Format, feeds: dict[str, np.ndarray],
           folder: Path, **kwargs: object) -> Trace:
    return workers.call(worker, tasks.trace, path=str(path), fmt=fmt, feeds=feeds,
                        folder=str(folder), **kwargs)


def _values(trace: Trace) -> dict[str, np.ndarray]:
    return {t.name: np.load(t.file, mmap_mode="r") for t in trace.tensors}


def _check_consistent(trace: Trace) -> dict[str, np.ndarray]:
    """Names unique, inputs first, each tensor computed from earlier ones, files as recorded;
    returns the values by name."""
    names = [t.name for t in trace.tensors]
    assert len(set(names)) == len(names)
    kinds = [t.op_type == "input" for t in trace.tensors]
    assert kinds == sorted(kinds, reverse=True) and kinds[0], "graph inputs come first"
    seen: set[str] = set()
    for t in trace.tensors:
        assert set(t.inputs) <= seen, f"{t.name} uses {set(t.inputs) - seen} before they exist"
        assert t.op_type == "input" or t.inputs, f"{t.name} is computed from nothing traced"
        seen.add(t.name)
    assert set(trace.outputs) <= seen and trace.outputs
    values = _values(trace)
    for t in trace.tensors:
        assert values[t.name].shape == t.shape and values[t.name].dtype.name == t.dtype
    return values


@pytest.fixture(scope="module")
def reference(saved_models: Callable[[str, str], Path]) -> dict[str, np.ndarray]:
    return tasks.reference(str(saved_models("cnn", "pt2")), Format.EXPORTED_PROGRAM,
                           Feed((X,))).feeds[0]


@pytest.mark.parametrize("kind", ["pt2", "torchscript"])
def test_torch_traces_fx_nodes(kind: str, saved_models: Callable[[str, str], Path],
                               workers: Pool, tmp_path: Path) -> None:
    path = saved_models("cnn", kind)
    fmt = Format.EXPORTED_PROGRAM if kind == "pt2" else Format.TORCHSCRIPT
    ref = tasks.reference(str(path), fmt, Feed((X,)))
    trace = _trace(workers, "trace-torch", path, fmt, ref.feeds[0], tmp_path)
    values = _check_consistent(trace)
    assert trace.runtime == "torch"
    assert trace.tensors[0].name == "x"  # the session's name, not TS2EPConverter's x_1
    np.testing.assert_array_equal(values["x"], ref.feeds[0]["x"])
    (out,) = trace.outputs
    np.testing.assert_allclose(values[out], ref.outputs[0]["output_0"], rtol=1e-5, atol=1e-6)
    ops = [t.op_type for t in trace.tensors]
    assert ops.count("aten._native_batch_norm_legit_no_training.default") == 2  # via getitem
    if kind == "pt2":  # Model Explorer's ids: the nodes of the program as saved
        ids = {t.name: t.node_id for t in trace.tensors}
        assert (ids["conv2d"], ids["getitem"], ids["mean"]) == ("conv2d", "batch_norm",
                                                                "adaptive_avg_pool2d")


@pytest.mark.parametrize("kind", ["pt2", "torchscript"])
def test_onnx_origins_name_the_fx_nodes(kind: str, converted: Callable[[str, str, str], Path],
                                        saved_models: Callable[[str, str], Path],
                                        reference: dict[str, np.ndarray], workers: Pool,
                                        tmp_path: Path) -> None:
    """torch.onnx's dynamo exporter keeps FX names: each origin is a tensor of the source's
    trace, with the same value (a TorchScript source converted and folded as the edge does)."""
    source = saved_models("cnn", kind)
    onnx = converted("cnn", "pt2", "onnx")
    if kind == "torchscript":
        onnx = tmp_path / "cnn.onnx"
        report = portkit.convert(source, "onnx", onnx, route="torch.onnx", validate=False,
                                 inputs=["x:1x3x32x32:float32"], workers=workers)
        assert report.exit_code == 0, report.routes_tried
    onnx_trace = _trace(workers, "trace-onnx", onnx, Format.ONNX, reference, tmp_path / "onnx")
    fmt = Format.EXPORTED_PROGRAM if kind == "pt2" else Format.TORCHSCRIPT
    torch_trace = _trace(workers, "trace-torch", source, fmt, reference, tmp_path / "torch")
    onnx_values, torch_values = _check_consistent(onnx_trace), _values(torch_trace)
    assert onnx_trace.runtime == "onnxruntime"
    assert onnx_trace.tensors[0].node_id == "[io]x"  # Model Explorer's ONNX adapter's ids
    assert all(t.node_id == t.node for t in onnx_trace.tensors[1:])
    with_origin = [t for t in onnx_trace.tensors if t.origin]
    assert {t.op_type for t in with_origin} >= {"Conv", "Relu", "Add", "Gemm"}
    for t in with_origin:
        assert t.origin in torch_values, f"{t.name}: origin {t.origin} is no FX node"
        np.testing.assert_allclose(onnx_values[t.name], torch_values[t.origin], rtol=1e-4,
                                   atol=1e-5, err_msg=t.name)
    (out,) = onnx_trace.outputs
    assert next(t.origin for t in onnx_trace.tensors if t.name == out) == torch_trace.outputs[0]


def test_tflite_binds_source_feeds_and_numbers_ops(converted: Callable[[str, str, str], Path],
                                                   reference: dict[str, np.ndarray],
                                                   workers: Pool, tmp_path: Path) -> None:
    """onnx2tf's NHWC TFLite, fed the NCHW reference: the input is transposed as run_artifact
    transposes it, every tensor is kept, and node ids are op indices."""
    tflite = tmp_path / "cnn.tflite"
    report = portkit.convert(converted("cnn", "pt2", "onnx"), "tflite", tflite,
                             inputs=["x:1x3x32x32:float32"], validate=False, workers=workers)
    assert report.exit_code == 0, report.routes_tried
    trace = _trace(workers, "trace-tflite", tflite, Format.TFLITE, reference, tmp_path / "t",
                   prefer_channels_last=True)
    values = _check_consistent(trace)
    first = trace.tensors[0]
    assert first.shape == (1, 32, 32, 3)
    np.testing.assert_array_equal(values[first.name], reference["x"].transpose(0, 2, 3, 1))
    ops = [t for t in trace.tensors if t.op_type != "input"]
    assert [t.node_id for t in ops] == [str(i) for i in range(len(ops))]  # one output each
    assert first.node_id == str(len(ops))  # Model Explorer's GraphInputs node
    assert [t.node for t in ops][:2] == ["CONV_2D#0", "CONV_2D#1"]
    run = workers.call("trace-tflite", tasks.run_artifact, path=str(tflite), fmt=Format.TFLITE,
                       runtime="tflite", device="cpu", feeds=(reference,), specs=[X],
                       prefer_channels_last=True)
    (out,) = trace.outputs
    np.testing.assert_allclose(values[out], next(iter(run.outputs[0].values())), rtol=1e-5,
                               atol=1e-5)


def test_keras_traces_layers_and_a_savedmodel_refuses(tmp_path: Path, workers: Pool) -> None:
    from portkit.fixtures import save_fixture

    keras_file = workers.call("trace-tf", save_fixture, name="keras_cnn", folder=str(tmp_path),
                              kind="keras")
    feeds = {"image": np.random.default_rng(0).random((1, 32, 32, 3), dtype=np.float32)}
    trace = _trace(workers, "trace-tf", keras_file, Format.KERAS, feeds, tmp_path / "k")
    values = _check_consistent(trace)
    assert trace.outputs == ("logits",) and trace.tensors[-1].op_type == "Dense"
    assert [t.op_type for t in trace.tensors].count("Conv2D") == 2
    plain = workers.call("trace-tf", tasks.run_artifact, path=str(keras_file), fmt=Format.KERAS,
                         runtime="tensorflow", device="cpu", feeds=(feeds,),
                         specs=[TensorSpec("image", (1, 32, 32, 3), "float32")])
    np.testing.assert_allclose(values["logits"], plain.outputs[0]["logits"], rtol=1e-5,
                               atol=1e-6)
    saved = workers.call("trace-tf", save_fixture, name="keras_cnn", folder=str(tmp_path),
                         kind="savedmodel")
    with pytest.raises(UsageError, match="runtime tensorflow can't expose") as refused:
        _trace(workers, "trace-tf", saved, Format.SAVEDMODEL, feeds, tmp_path / "s")
    assert refused.value.exit_code == ExitCode.INVALID_INPUT


def test_the_default_hook_names_the_runtime(tmp_path: Path) -> None:
    from portkit.runtimes.base import Session

    class Plain(Session):
        def _run(self, feeds: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
            return feeds

    with pytest.raises(UsageError, match="this runtime can't expose"):
        Plain([TensorSpec("x", (1,), "float32")], []).trace({"x": np.zeros(1)}, tmp_path)


def test_writer_keeps_only_traced_inputs(tmp_path: Path) -> None:
    writer = TensorWriter(tmp_path / "w")
    writer.add("x", np.ones((2, 3), np.float32), node="", op_type="input")
    y = writer.add("y", np.arange(6).reshape(2, 3), node="n", op_type="Add",
                   inputs=("x", "weight"))
    assert y.inputs == ("x",) and y.shape == (2, 3) and y.dtype == "int64"
    np.testing.assert_array_equal(np.load(y.file), np.arange(6).reshape(2, 3))
    assert [Path(t.file).name for t in writer.tensors] == ["00000.npy", "00001.npy"]


def test_dequantize_per_tensor_and_per_channel() -> None:
    q = np.array([[0, 10], [20, 30]], np.int8)
    per_tensor = {"quantization_parameters": {"scales": [0.5], "zero_points": [10],
                                              "quantized_dimension": 0}}
    np.testing.assert_allclose(dequantize(q, per_tensor), [[-5, 0], [5, 10]])
    per_channel = {"quantization_parameters": {"scales": [1.0, 0.1], "zero_points": [0, 0],
                                               "quantized_dimension": 1}}
    np.testing.assert_allclose(dequantize(q, per_channel), [[0, 1], [20, 3]], rtol=1e-6)
    floats = np.ones(2, np.float32)
    assert dequantize(floats, per_tensor) is floats


def test_fx_origin_and_output_groups() -> None:
    import onnx.helper

    node = onnx.helper.make_node("Gemm", ["view", "w", "b"], ["output_0"], name="node_linear")
    node.metadata_props.add(key="pkg.torch.onnx.fx_node", value="%linear : [num_users=1] = ...")
    assert fx_origin(node, "output_0", {"output_0"}) == "linear"
    assert fx_origin(node, "val_3", set()) == ""
    relu = onnx.helper.make_node("Relu", ["a"], ["relu"], name="node_relu")
    assert fx_origin(relu, "relu", set()) == ""  # no metadata: not the dynamo exporter
    relu.metadata_props.add(key="pkg.torch.onnx.fx_node", value="%relu : [num_users=2] = ...")
    assert fx_origin(relu, "relu", set()) == "relu"
    sizes = {"a": 600 << 20, "b": 600 << 20, "c": 10}
    assert _groups(["a", "b", "c", "d"], sizes) == [["a"], ["b", "c", "d"]]
    assert _groups(["a"], {}) == [["a"]]


def test_onnx_reference_traces_what_onnxruntime_refuses(tmp_path: Path) -> None:
    from tests.legacy_onnx import legacy_model, stored

    model = legacy_model("test_BatchNorm2d_eval")
    trace = tasks.trace(str(model), Format.ONNX, {"0": stored(model, "input")}, str(tmp_path))
    values = _check_consistent(trace)
    assert trace.runtime == "onnx-reference"
    assert [t.op_type for t in trace.tensors] == ["input", "BatchNormalization"]
    np.testing.assert_allclose(values[trace.outputs[0]], stored(model, "output"), rtol=1e-5,
                               atol=1e-6)
