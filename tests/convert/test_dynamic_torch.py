"""PyTorch converters keep the dimensions a source declares dynamic: ONNX ``dim_param``, TFLite
``shape_signature`` -1; each artifact matches its source at several sizes (the report's checks,
one per size) and, run here on its own at another size, matches torch too. ``--static`` writes
fixed shapes on purpose."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np
import pytest

import portkit
from portkit.errors import ExitCode
from portkit.fixtures import FIXTURES, torch_models
from portkit.specs import Dim, TensorSpec

torch = pytest.importorskip("torch")

BATCH = Dim("batch", 1, 8)
# The CNN fixture with a dynamic batch (the registered one is static).
CNN_BATCH = dataclasses.replace(
    FIXTURES["cnn"], name="cnn_batch",
    inputs=(TensorSpec("x", (1, 3, 32, 32), "float32", (BATCH, None, None, None)),))


def _onnx_dims(path: Path) -> list[list[str | int]]:
    """Each graph input's dimensions: the ``dim_param`` where symbolic, else the size."""
    import onnx

    model = onnx.load(str(path))
    return [[d.dim_param or d.dim_value for d in i.type.tensor_type.shape.dim]
            for i in model.graph.input]


def _tflite_signatures(path: Path) -> list[list[int]]:
    from ai_edge_litert.interpreter import Interpreter

    return [[int(x) for x in d["shape_signature"]]
            for d in Interpreter(model_path=str(path)).get_input_details()]


def _run_onnx(path: Path, feed: np.ndarray) -> np.ndarray:
    import onnxruntime as ort

    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    return session.run(None, {session.get_inputs()[0].name: feed})[0]


def _run_tflite(path: Path, feed: np.ndarray) -> np.ndarray:
    """Run a one-input TFLite model at ``feed``'s shape (a 4-D feed made NHWC when the model
    takes NHWC)."""
    from ai_edge_litert.interpreter import Interpreter

    interpreter = Interpreter(model_path=str(path))
    detail = interpreter.get_input_details()[0]
    if feed.ndim == 4 and detail["shape_signature"][1] != feed.shape[1]:
        feed = feed.transpose(0, 2, 3, 1)
    interpreter.resize_tensor_input(detail["index"], list(feed.shape), strict=True)
    interpreter.allocate_tensors()
    interpreter.set_tensor(detail["index"], np.ascontiguousarray(feed.astype(detail["dtype"])))
    interpreter.invoke()
    return interpreter.get_tensor(interpreter.get_output_details()[0]["index"])


def _torch_out(fixture_name: str, feed: np.ndarray) -> np.ndarray:
    module = (CNN_BATCH if fixture_name == "cnn_batch" else FIXTURES[fixture_name]).module()
    with torch.no_grad():
        return module(torch.from_numpy(feed)).numpy()


def _sizes(report: portkit.ConvertReport) -> set[str]:
    assert report.exit_code == ExitCode.OK, [(a.route, a.error) for a in report.routes_tried]
    assert report.checks and all(c.passed for c in report.checks)
    return {c.size for c in report.checks}


@pytest.fixture(scope="module")
def encoder_pt2(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return FIXTURES["text_encoder"].save(tmp_path_factory.mktemp("encoder"), "pt2")


@pytest.fixture(scope="module")
def cnn_pt2(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return CNN_BATCH.save(tmp_path_factory.mktemp("cnn_batch"), "pt2")


def _ids(batch: int, length: int) -> np.ndarray:
    return np.random.default_rng(batch * 1000 + length).integers(0, 100, (batch, length))


def test_text_encoder_to_onnx_keeps_batch_and_sequence_dynamic(encoder_pt2, workers,
                                                              tmp_path: Path) -> None:
    out = tmp_path / "encoder.onnx"
    report = portkit.convert(encoder_pt2, "onnx", out, workers=workers)
    sizes = _sizes(report)
    assert len(sizes) == 3 and all(s.startswith("ids ") for s in sizes), sizes
    assert _onnx_dims(out) == [["batch", "ids.1"]]  # dim_param on both axes, as portkit names them
    ids = _ids(3, 33)
    np.testing.assert_allclose(_run_onnx(out, ids), _torch_out("text_encoder", ids),
                               rtol=1e-4, atol=1e-5)


def test_text_encoder_to_tflite_falls_back_to_onnx_and_stays_dynamic(encoder_pt2, workers,
                                                                    tmp_path: Path) -> None:
    out = tmp_path / "encoder.tflite"
    report = portkit.convert(encoder_pt2, "tflite", out, workers=workers)
    sizes = _sizes(report)
    assert len(sizes) == 3, sizes
    litert = report.routes_tried[0]
    assert litert.route == "litert-torch" and not litert.converted
    assert "lowers only a dynamic first dimension" in (litert.error or "")
    assert "ids axis 1" in (litert.error or "")
    assert report.route_name == "torch.onnx+onnx2tf"
    assert _tflite_signatures(out) == [[-1, -1]]
    ids = _ids(3, 33)
    np.testing.assert_allclose(_run_tflite(out, ids), _torch_out("text_encoder", ids),
                               rtol=1e-4, atol=1e-5)


def test_cnn_with_a_dynamic_batch_to_tflite(cnn_pt2, workers, tmp_path: Path) -> None:
    out = tmp_path / "cnn.tflite"
    report = portkit.convert(cnn_pt2, "tflite", out, workers=workers)
    sizes = _sizes(report)
    assert len(sizes) >= 2 and any(s.startswith("x 3x") for s in sizes), sizes
    # litert-torch 0.10 fails on torch.flatten of a dynamic batch ("Shapes must be 1D sequences
    # of concrete values"): the route through ONNX ships, batch kept dynamic (NHWC).
    litert = report.routes_tried[0]
    assert litert.route == "litert-torch" and not litert.converted
    assert "failed to lower x axis 0 (batch 1..8) dynamic" in (litert.error or "")
    (signature,) = _tflite_signatures(out)
    assert signature[0] == -1 and sorted(signature[1:]) == [3, 32, 32], signature
    x = np.random.default_rng(3).standard_normal((3, 3, 32, 32)).astype(np.float32)
    np.testing.assert_allclose(_run_tflite(out, x), _torch_out("cnn_batch", x),
                               rtol=1e-4, atol=1e-4)


def test_litert_torch_keeps_a_dynamic_batch_of_a_module(workers, tmp_path: Path) -> None:
    torch.manual_seed(0)
    module = torch_models.pooled_conv().eval()
    out = tmp_path / "conv.tflite"
    report = portkit.convert(module, "tflite", out, inputs=["x:Nx3x16x16"], dims=["N=1..4"],
                             workers=workers)
    assert _sizes(report) == {"x 1x3x16x16", "x 3x3x16x16", "x 4x3x16x16"}
    assert report.route_name == "litert-torch"
    assert _tflite_signatures(out) == [[-1, 3, 16, 16]]
    x = np.random.default_rng(3).standard_normal((3, 3, 16, 16)).astype(np.float32)
    with torch.no_grad():
        want = module(torch.from_numpy(x)).numpy()
    np.testing.assert_allclose(_run_tflite(out, x), want, rtol=1e-4, atol=1e-4)


def test_torchscript_batch_named_by_input_flag_becomes_a_dim_param(workers,
                                                                  tmp_path: Path) -> None:
    source = CNN_BATCH.save(tmp_path, "torchscript")  # TorchScript stores no shapes
    out = tmp_path / "cnn.onnx"
    report = portkit.convert(source, "onnx", out, inputs=["x:Nx3x32x32"], dims=["N=1..5"],
                             workers=workers)
    assert _sizes(report) == {"x 1x3x32x32", "x 3x3x32x32", "x 5x3x32x32"}
    assert _onnx_dims(out) == [["N", 3, 32, 32]]
    for batch in (1, 3, 5):
        x = np.random.default_rng(batch).standard_normal((batch, 3, 32, 32)).astype(np.float32)
        np.testing.assert_allclose(_run_onnx(out, x), _torch_out("cnn_batch", x),
                                   rtol=1e-4, atol=1e-4)


def test_static_writes_fixed_shapes_validated_at_one_size(cnn_pt2, workers,
                                                          tmp_path: Path) -> None:
    onnx_out, tflite_out = tmp_path / "cnn.onnx", tmp_path / "cnn.tflite"
    for out in (onnx_out, tflite_out):
        report = portkit.convert(cnn_pt2, out.suffix[1:], out, static=True, workers=workers)
        assert _sizes(report) == {""}  # one size: the example's (no size label)
        assert report.inputs[0].shape == (1, 3, 32, 32) and not report.inputs[0].dims
    assert _onnx_dims(onnx_out) == [[1, 3, 32, 32]]
    assert _tflite_signatures(tflite_out) == [[1, 3, 32, 32]]


def test_trusted_pickle_exported_with_the_dimension_its_input_flag_names(workers,
                                                                        tmp_path: Path) -> None:
    path = tmp_path / "whole.pt"
    torch.manual_seed(0)
    torch.save(torch.nn.Sequential(torch.nn.Linear(4, 2), torch.nn.ReLU()), path)
    out = tmp_path / "m.onnx"
    report = portkit.convert(path, "onnx", out, trust_model=True, inputs=["x:Bx4"],
                             dims=["B=1..6"], workers=workers)
    # Sequential.forward names its argument "input"; the .pt2 keeps that name
    assert _sizes(report) == {"input 1x4", "input 3x4", "input 6x4"}
    (dims,) = _onnx_dims(out)
    assert isinstance(dims[0], str) and dims[0] and dims[1] == 4, dims  # the .pt2 calls B batch
