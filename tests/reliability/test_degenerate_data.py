"""Degenerate representative data never proves an int8 artifact (issue 27, item 7): held-back
``--calibration`` samples that carry no variation (copies of one constant input, all zeros) are
said to be degenerate, and the artifact is judged again on seeded inputs, passing only if it
passes on both. Setup as the issue's: a tiny ``Linear(8,4)+ReLU`` exported as ``m.pt2``."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from portkit.convert.representative import degeneracy, seeded_samples
from portkit.errors import ExitCode
from tests.conftest import run_cli
from tests.reliability import models

SAMPLES = 64  # as the probe: 32 calibrated on, the policy's 32 held back


@pytest.fixture(scope="module")
def model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return models.linear_pt2(tmp_path_factory.mktemp("degenerate"))


def _quantize(model: Path, folder: Path, data: np.ndarray) -> tuple[int, dict, str]:
    """``portkit convert m.pt2 --to tflite --quantize int8 --calibration DATA``: the exit code,
    the JSON report and the terminal output."""
    np.savez(folder / "calib.npz", x=data)
    done = run_cli("convert", model, "--to", "tflite", "--quantize", "int8", "--calibration",
                   folder / "calib.npz", "-o", folder / "q.tflite", "--report",
                   folder / "r.json")
    report = json.loads((folder / "r.json").read_text()) if (folder / "r.json").exists() else {}
    return done.returncode, report, done.stdout + done.stderr


def _many(value: np.ndarray, count: int = SAMPLES) -> list[dict[str, np.ndarray]]:
    return [{"x": value.copy()} for _ in range(count)]


def _normal(seed: int, count: int = SAMPLES) -> np.ndarray:
    return np.random.default_rng(seed).standard_normal((count, 1, 8)).astype(np.float32)


# The rule, on labelled cases.

@pytest.mark.parametrize("samples, words", [
    (_many(np.full((1, 8), 0.5, np.float32)), "input 'x' holds only 0.5"),
    (_many(np.zeros((1, 8), np.float32)), "input 'x' holds only zeros"),
    (_many(np.full((1, 8), 0.5, np.float32) + np.float32(1e-7) * np.arange(8, dtype=np.float32)),
     "input 'x' holds only 0.5"),  # near-constant: float rounding apart
    ([{"x": _normal(1, 1)[0]} for _ in range(SAMPLES)], "all 64 samples are one"),
    ([{"x": _normal(i % 2, 1)[0]} for i in range(SAMPLES)], "only 2 distinct of 64"),
], ids=["constant copies", "all zeros", "near-constant", "copies of one sample", "two samples"])
def test_samples_without_variation_are_degenerate(samples, words) -> None:
    why = degeneracy(samples)
    assert why is not None and words in why, why


@pytest.mark.parametrize("samples", [
    [{"x": x} for x in _normal(0)],
    [{"x": x, "mask": np.ones((1, 8), np.float32)} for x in _normal(0)],
    [{"ids": np.zeros((1, 8), np.int64), "x": x} for x in _normal(0)],
    [{"ids": np.full((1, 8), i, np.int64), "mask": np.ones((1, 8), np.float32)}
     for i in range(SAMPLES)],
    [{"ids": np.zeros((1, 8), np.int64)}] * SAMPLES,  # no float input: nothing to judge by
    [{"x": x} for x in _normal(0, 8)] * 2,  # 8 distinct of 16: few, but not far fewer
    [{"x": np.full((1, 8), 1e-4 * i, np.float32)} for i in range(SAMPLES)],  # quiet, but varied
], ids=["varied", "constant float mask beside varied x", "constant ids beside varied x",
        "constant float mask beside varied ids", "integer inputs only", "8 distinct of 16",
        "each sample constant, samples differ"])
def test_varied_samples_and_legitimately_constant_inputs_are_not(samples) -> None:
    assert degeneracy(samples) is None


def test_seeded_samples_spread_over_the_range_or_are_standard_normal() -> None:
    few = [{"x": _normal(i % 2, 1)[0] * 3, "mask": np.ones((1, 8), np.float32),
            "ids": np.full((1, 8), 7, np.int64)} for i in range(SAMPLES)]
    values = np.stack([s["x"] for s in few])
    spread = seeded_samples(few, seed=0)
    got = np.stack([s["x"] for s in spread])
    assert len(spread) == SAMPLES and len({s["x"].tobytes() for s in spread}) == SAMPLES
    assert values.min() <= got.min() and got.max() <= values.max()
    assert all((s["mask"] == 1).all() and (s["ids"] == 7).all() for s in spread)
    assert seeded_samples(few, seed=0)[5]["x"].tobytes() == spread[5]["x"].tobytes()
    flat = seeded_samples(_many(np.zeros((1, 8), np.float32)), seed=3)
    assert np.allclose(flat[0]["x"], np.random.default_rng(3).standard_normal((1, 8)))
    assert flat[0]["x"].dtype == np.float32


# The probes, as a user runs them.

@pytest.mark.parametrize("value", [0.5, 0.0], ids=["constant", "all zeros"])
def test_degenerate_calibration_fails_int8_on_seeded_inputs(model, tmp_path, value) -> None:
    code, report, shown = _quantize(model, tmp_path, np.full((SAMPLES, 1, 8), value, np.float32))
    assert code == ExitCode.PARITY_FAILED, shown[-3000:]
    held = "zeros" if value == 0 else "0.5"
    assert f"input 'input' holds only {held}" in report["degenerate"]["why"]
    assert report["degenerate"]["passed"] is False and report["passed"] is False
    assert "32 seeded inputs" in report["degenerate"]["seeded"]
    assert "degenerate" in report["routes_tried"][0]["error"]
    assert "give representative samples" in shown and "seeded inputs" in shown
    assert (tmp_path / "q.failed.tflite").exists() and not (tmp_path / "q.tflite").exists()


def test_varied_calibration_passes_as_before(model, tmp_path) -> None:
    code, report, shown = _quantize(model, tmp_path, _normal(0))
    assert code == ExitCode.OK, shown[-3000:]
    assert report["degenerate"] is None and (tmp_path / "q.tflite").exists()
