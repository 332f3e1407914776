"""The walk and the first divergence, on synthetic traces (pure logic)."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np

from portkit.debug.divergence import walk
from portkit.debug.match import match
from portkit.policies import POLICIES
from tests.debug.synthetic import conv, nhwc, trace

RNG = np.random.default_rng(1)
X = RNG.standard_normal((1, 4, 6, 5)).astype(np.float32)
W1 = RNG.standard_normal((8, 4)).astype(np.float32)
W2 = RNG.standard_normal((8, 8)).astype(np.float32)
TOL = POLICIES["fp32"]


def _model(w1: np.ndarray, w2: np.ndarray) -> dict[str, np.ndarray]:
    c1 = conv(X, w1)
    r1 = np.maximum(c1, 0)
    c2 = conv(r1, w2)
    return {"c1": c1, "r1": r1, "c2": c2, "out": np.tanh(c2)}


def _source(tmp_path: Path):
    v = _model(W1, W2)
    return trace(tmp_path / "src", {
        "x": ("input", (), X), "conv1": ("Conv", ("x",), v["c1"]),
        "relu1": ("Relu", ("conv1",), v["r1"]), "conv2": ("Conv", ("relu1",), v["c2"]),
        "out": ("Tanh", ("conv2",), v["out"])}, ("out",))


def _artifact(tmp_path: Path, w1: np.ndarray, w2: np.ndarray):
    """A TFLite-like artifact: NHWC, conv1+relu1 fused."""
    v = _model(w1, w2)
    return trace(tmp_path / "art", {
        "in": ("input", (), nhwc(X)), "t0": ("CONV_2D", ("in",), nhwc(v["r1"])),
        "t1": ("CONV_2D", ("t0",), nhwc(v["c2"])), "o": ("TANH", ("t1",), nhwc(v["out"]))},
        ("o",), "tflite")


def test_a_faithful_artifact_has_no_divergence(tmp_path: Path) -> None:
    src, art = _source(tmp_path), _artifact(tmp_path, W1, W2)
    nodes, first = walk(src, art, match(src, art), TOL)
    assert first is None
    by = {n.source_tensor: n for n in nodes}
    assert by["conv1"].passed is None and math.isnan(by["conv1"].max_abs_err)  # fused away
    assert all(by[n].passed for n in ("x", "relu1", "conv2", "out"))


def test_the_first_divergence_is_the_changed_conv(tmp_path: Path) -> None:
    w2 = W2.copy()
    w2[0] *= 1.01  # one conv's weights changed by 1%
    src, art = _source(tmp_path), _artifact(tmp_path, W1, w2)
    nodes, first = walk(src, art, match(src, art), TOL)
    assert first is not None
    assert (first.source_tensor, first.artifact_tensor, first.op_type) == ("conv2", "t1", "Conv")
    assert first.last_agreeing == ("relu1",)
    assert first.max_abs_err > 0 and first.cosine < 1.0
    assert not {n.source_tensor: n for n in nodes}["out"].passed  # downstream: not the first


def test_a_fused_conv_change_is_named_at_the_fused_relu(tmp_path: Path) -> None:
    w1 = W1.copy()
    w1[2] *= 1.01
    src, art = _source(tmp_path), _artifact(tmp_path, w1, W2)
    _nodes, first = walk(src, art, match(src, art), TOL)
    assert first is not None and first.source_tensor == "relu1"
    assert first.last_agreeing == ("x",)  # conv1 is unmatched: its nearest matched ancestor


def test_a_failing_pair_with_a_failing_input_is_not_first(tmp_path: Path) -> None:
    # Pairs given by hand: conv1 fails, and its consumer (through unmatched relu1) fails too;
    # only conv1 is the first divergence even though both fail.
    from portkit.debug.match import Pair

    w1 = W1 * 1.5
    v, bad = _model(W1, W2), _model(w1, W2)
    src = _source(tmp_path)
    art = trace(tmp_path / "art2", {
        "in": ("input", (), X), "a": ("Conv", ("in",), bad["c1"]),
        "b": ("Conv", ("a",), bad["c2"]), "o": ("Tanh", ("b",), bad["out"])}, ("o",))
    pairs = {"x": Pair("x", "in", "input"), "conv1": Pair("conv1", "a", "value"),
             "conv2": Pair("conv2", "b", "value"), "out": Pair("out", "o", "output")}
    nodes, first = walk(src, art, pairs, TOL)
    assert first is not None and first.source_tensor == "conv1"
    failing = [n.source_tensor for n in nodes if n.passed is False]
    assert failing[0] == "conv1" and len(failing) >= 2
    assert not np.allclose(v["c2"], bad["c2"])


def test_an_output_of_the_wrong_shape_is_a_divergence(tmp_path: Path) -> None:
    # onnx2tf's padding bug: the artifact's output has another shape; it still pairs with the
    # source's output, and fails.
    v = _model(W1, W2)
    src = _source(tmp_path)
    art = trace(tmp_path / "art", {
        "in": ("input", (), X), "a": ("Conv", ("in",), v["c1"]), "b": ("Relu", ("a",), v["r1"]),
        "c": ("Conv", ("b",), v["c2"]), "o": ("Pad", ("c",), np.zeros((1, 8, 7, 5), "float32"))},
        ("o",))
    nodes, first = walk(src, art, match(src, art), TOL)
    assert first is not None and first.source_tensor == "out" and first.artifact_tensor == "o"
    assert math.isinf(first.max_abs_err) and first.last_agreeing == ("conv2",)
    assert {n.source_tensor: n.layout for n in nodes}["out"] == "misfit"


def _chain(tmp_path: Path, errors: dict[str, float]):
    """x -> a -> b -> out, and an artifact whose tensors are off by ``errors`` (each a fraction
    of that tensor's own scale): float drift, or a jump."""
    values = {"a": RNG.standard_normal((1, 16)), "b": RNG.standard_normal((1, 16)),
              "out": RNG.standard_normal((1, 16))}
    inputs = {"a": ("x",), "b": ("a",), "out": ("b",)}

    def spec(off: dict[str, float]) -> dict:
        tensors = {"x": ("input", (), X[0, 0])}
        for name, v in values.items():
            drift = off.get(name, 0.0) * np.abs(v).max()
            tensors[name] = ("Op", inputs[name], (v + drift).astype(np.float32))
        return tensors

    return (trace(tmp_path / "src", spec({}), ("out",)),
            trace(tmp_path / "art", spec(errors), ("out",)))


def test_drift_deep_inside_is_not_a_divergence_while_the_outputs_pass(tmp_path: Path) -> None:
    # ResNet-50's TFLite: 0.9e-4 of scale, then 1.2e-4 (over fp32's 1e-4), outputs within it.
    src, art = _chain(tmp_path, {"a": 0.9e-4, "b": 1.2e-4, "out": 0.5e-4})
    nodes, first = walk(src, art, match(src, art), TOL)
    assert first is None
    assert [n.passed for n in nodes] == [True, True, False, True]


def test_a_jump_is_a_divergence_even_after_drift(tmp_path: Path) -> None:
    src, art = _chain(tmp_path, {"a": 0.9e-4, "b": 3e-2, "out": 3e-2})
    _, first = walk(src, art, match(src, art), TOL)
    assert first is not None and first.source_tensor == "b" and first.last_agreeing == ("a",)


def test_drift_that_fails_an_output_names_where_it_left_the_policy(tmp_path: Path) -> None:
    src, art = _chain(tmp_path, {"a": 0.9e-4, "b": 1.2e-4, "out": 1.5e-4})
    _, first = walk(src, art, match(src, art), TOL)
    assert first is not None and first.source_tensor == "b"
