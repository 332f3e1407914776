"""Stateful models over several calls: state pairs, the reference's unrolled calls, and an
artifact fed its own state back (pure logic; ``tests/convert/test_pipeline.py`` runs a real
recurrent step model)."""

from __future__ import annotations

import numpy as np
import pytest

from portkit.errors import UsageError
from portkit.options import parse_state
from portkit.runtimes.binding import Binding
from portkit.runtimes.steps import run_fed_back, state_pairs, unroll
from portkit.specs import TensorSpec

X, H = TensorSpec("x", (1, 2)), TensorSpec("h", (1, 3))


def test_state_pairs_are_given_or_guessed_by_name_and_shape() -> None:
    outs = {"y": np.zeros((1, 2), np.float32), "hn": np.zeros((1, 3), np.float32)}
    assert state_pairs("m", [X, H], outs, {}, steps=3) == {"h": "hn"}
    assert state_pairs("m", [X, H], outs, {}, steps=1) == {}
    named = {"output_0": outs["y"], "output_1": outs["hn"]}
    assert state_pairs("m", [X, H], named, {"h": "output_1"}, steps=3) == {"h": "output_1"}
    with pytest.raises(UsageError, match="no output looks like the state.*pass --state IN=OUT"):
        state_pairs("m", [X, H], named, {}, steps=3)
    with pytest.raises(UsageError, match="output output_0 has shape"):
        state_pairs("m", [X, H], named, {"h": "output_0"}, steps=3)
    with pytest.raises(UsageError, match="inputs are x, h; outputs are output_0, output_1"):
        state_pairs("m", [X, H], named, {"c": "output_1"}, steps=3)
    assert parse_state(["h=hn", " c = cn "]) == {"h": "hn", "c": "cn"}
    with pytest.raises(UsageError, match="expected IN=OUT"):
        parse_state(["h"])


def _model(x: np.ndarray, h: np.ndarray, drift: float = 0.0) -> dict[str, np.ndarray]:
    new = 0.5 * h + x.sum() + drift
    return {"y": new[:, :2] * 2, "hn": new}


def test_the_reference_feeds_its_state_back_and_the_artifact_its_own() -> None:
    first = [{"x": np.ones((1, 2)), "h": np.zeros((1, 3))}]
    feeds, ref = unroll(first, lambda f: _model(f["x"], f["h"]), 3, {"h": "hn"},
                        lambda i, k: {"x": np.full((1, 2), k + 1.0)})
    assert [float(f["h"][0, 0]) for f in feeds] == [0.0, 2.0, 5.0]  # 0.5*h + sum(x)
    # An artifact that drifts by 0.1 per call: fed its own state, the drift accumulates.
    bindings = [Binding("x", "x"), Binding("h", "h")]
    got = run_fed_back(lambda f: _model(f["x"], f["h"], drift=0.1), dict, feeds, 3,
                       {"h": "hn"}, bindings, ["y", "hn"], [X, H])
    drift = [float(g["hn"][0, 0] - r["hn"][0, 0]) for g, r in zip(got, ref)]
    assert drift == pytest.approx([0.1, 0.15, 0.175])  # not 0.1 each time
