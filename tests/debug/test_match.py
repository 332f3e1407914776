"""Pairing traced tensors across frameworks, on synthetic traces (pure logic)."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from portkit.debug.match import layouts, match
from tests.debug.synthetic import conv, nhwc, trace

RNG = np.random.default_rng(0)
X = RNG.standard_normal((1, 4, 6, 5)).astype(np.float32)
W1 = RNG.standard_normal((8, 4)).astype(np.float32)
W2 = RNG.standard_normal((8, 8)).astype(np.float32)
C1 = conv(X, W1)
R1 = np.maximum(C1, 0)
C2 = conv(R1, W2)
OUT = np.tanh(C2)


def _source(tmp_path: Path):
    return trace(tmp_path / "src", {
        "x": ("input", (), X), "conv1": ("Conv", ("x",), C1), "relu1": ("Relu", ("conv1",), R1),
        "conv2": ("Conv", ("relu1",), C2), "out": ("Tanh", ("conv2",), OUT)}, ("out",))


def test_layouts_prefer_same_then_channels_last_then_reshape() -> None:
    assert layouts((1, 4, 6, 5), (1, 4, 6, 5)) == [(None, False)]
    assert layouts((1, 4, 6, 5), (1, 6, 5, 4)) == [((0, 2, 3, 1), False)]
    assert layouts((1, 4, 6, 5), (1, 120)) == [(None, True)]
    assert layouts((1, 4, 6, 5), (1, 121)) == []


def test_nhwc_artifact_with_a_fused_conv_relu(tmp_path: Path) -> None:
    # A TFLite-like artifact: NHWC, conv1+relu1 fused into one op, names unrelated.
    art = trace(tmp_path / "art", {
        "serving_default_x:0": ("input", (), nhwc(X)),
        "t0": ("CONV_2D", ("serving_default_x:0",), nhwc(R1)),
        "t1": ("CONV_2D", ("t0",), nhwc(C2)),
        "Identity:0": ("TANH", ("t1",), nhwc(OUT))}, ("Identity:0",), "tflite")
    pairs = match(_source(tmp_path), art)
    assert {s: (p.artifact, p.by) for s, p in pairs.items()} == {
        "x": ("serving_default_x:0", "input"), "relu1": ("t0", "value"),
        "conv2": ("t1", "value"), "out": ("Identity:0", "output")}
    assert pairs["relu1"].layout == "0,3,1,2"  # NHWC -> NCHW
    assert "conv1" not in pairs  # the fused op's one output stands for its last tensor


def test_kept_names_win_over_values_and_pick_the_last_tensor(tmp_path: Path) -> None:
    # onnx2tf-like: the artifact names its tensors after the source's (origin); conv2 split
    # in two tensors, the last is its output. A decoy closer in value must not win over names.
    art = trace(tmp_path / "art", {
        "in": ("input", (), X),
        "a": ("Conv", ("in",), C1, "conv1"), "b": ("Relu", ("a",), R1, "relu1"),
        "c_pre": ("Transpose", ("b",), R1 * 0 + 1, "conv2"),
        "c": ("Conv", ("c_pre",), C2 * 1.5, "conv2"), "o": ("Tanh", ("c",), OUT)}, ("o",))
    pairs = match(_source(tmp_path), art)
    assert pairs["conv2"].artifact == "c" and pairs["conv2"].by == "name"
    assert pairs["conv1"].artifact == "a"


def test_value_matches_stay_in_topological_order(tmp_path: Path) -> None:
    # The artifact holds a copy of conv2's value before relu1's twin: conv2 comes after relu1
    # in the source, so it can't take a tensor placed before relu1's match.
    art = trace(tmp_path / "art", {
        "in": ("input", (), X), "early": ("Conv", ("in",), C2), "r": ("Relu", ("in",), R1),
        "o": ("Tanh", ("r", "early"), OUT)}, ("o",))
    src = trace(tmp_path / "src", {
        "x": ("input", (), X), "relu1": ("Relu", ("x",), R1), "conv2": ("Conv", ("relu1",), C2),
        "out": ("Tanh", ("conv2",), OUT)}, ("out",))
    pairs = match(src, art)
    assert pairs["relu1"].artifact == "r"
    assert "conv2" not in pairs


def test_dissimilar_tensors_stay_unmatched(tmp_path: Path) -> None:
    other = RNG.standard_normal(C1.shape).astype(np.float32)
    art = trace(tmp_path / "art", {
        "in": ("input", (), X), "z": ("Conv", ("in",), other), "o": ("Tanh", ("z",), OUT)},
        ("o",))
    pairs = match(_source(tmp_path), art)
    assert set(pairs) == {"x", "out"}


def test_reshape_only_when_nothing_fits_better(tmp_path: Path) -> None:
    src = trace(tmp_path / "src", {"x": ("input", (), X), "flat": ("Flatten", ("x",), X.reshape(1, -1) * 2),
                                   "out": ("Relu", ("flat",), np.maximum(X.reshape(1, -1) * 2, 0))},
                ("out",))
    art = trace(tmp_path / "art", {"in": ("input", (), X),
                                   "f": ("Reshape", ("in",), (X * 2).reshape(120)),
                                   "o": ("Relu", ("f",), np.maximum(X.reshape(1, -1) * 2, 0))},
                ("o",))
    pairs = match(src, art)
    assert pairs["flat"].artifact == "f" and pairs["flat"].layout == "reshape"
