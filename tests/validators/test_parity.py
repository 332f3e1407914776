from __future__ import annotations

import math

import numpy as np

from portkit.options import POLICIES, Tolerance
from portkit.validators.parity import compare_outputs, metrics


def test_identical_outputs_pass_with_zero_error() -> None:
    a = np.linspace(-1, 1, 10, dtype=np.float32)
    row = metrics("y", a, a.copy(), Tolerance())
    assert row.passed and row.max_abs_err == 0 and row.min_atol_to_pass == 0
    assert math.isclose(row.cosine, 1.0)


def test_failure_reports_the_tolerance_that_would_pass() -> None:
    ref = np.array([1.0, 2.0, 0.0])
    got = np.array([1.0, 2.0, 0.01])
    row = metrics("y", ref, got, Tolerance(atol=1e-4, rtol=0.0))
    assert not row.passed
    assert math.isclose(row.max_abs_err, 0.01)
    assert math.isclose(row.min_atol_to_pass, 0.01)
    assert metrics("y", ref, got, Tolerance(atol=row.min_atol_to_pass, rtol=0.0)).passed


def test_min_atol_accounts_for_rtol() -> None:
    ref, got = np.array([100.0]), np.array([100.5])
    row = metrics("y", ref, got, Tolerance(atol=0.0, rtol=1e-3))
    assert math.isclose(row.min_atol_to_pass, 0.4)


def test_nan_in_artifact_fails() -> None:
    row = metrics("y", np.array([1.0, 2.0]), np.array([1.0, np.nan]), Tolerance())
    assert not row.passed and row.max_abs_err == math.inf


def test_shape_mismatch_is_reported() -> None:
    row = metrics("y", np.zeros((2, 3)), np.zeros((3, 2)), Tolerance())
    assert not row.passed and "shape" in (row.error or "")


def test_compare_maps_nhwc_output_back() -> None:
    rng = np.random.default_rng(0)
    ref = rng.standard_normal((1, 4, 5, 6)).astype(np.float32)
    rows = compare_outputs({"y": ref}, {"PartitionedCall:0": ref.transpose(0, 2, 3, 1)}, Tolerance())
    assert rows[0].passed and rows[0].layout == "NCHW->NHWC"


def test_compare_ambiguous_square_output_picks_the_matching_layout() -> None:
    rng = np.random.default_rng(1)
    ref = rng.standard_normal((1, 4, 4, 4)).astype(np.float32)
    nhwc = compare_outputs({"y": ref}, {"y": ref.transpose(0, 2, 3, 1)}, Tolerance())[0]
    same = compare_outputs({"y": ref}, {"y": ref.copy()}, Tolerance())[0]
    assert nhwc.passed and nhwc.layout == "NCHW->NHWC"
    assert same.passed and same.layout is None


def test_compare_fails_a_wrong_output() -> None:
    ref = np.ones((1, 10), np.float32)
    rows = compare_outputs({"y": ref}, {"y": ref * 1.5}, Tolerance())
    assert not rows[0].passed and math.isclose(rows[0].max_abs_err, 0.5)


def test_nan_in_a_quantized_output_fails_even_when_cosine_is_high() -> None:
    ref = np.linspace(1, 2, 1000).astype(np.float32)
    got = ref.copy()
    got[:20] = np.nan
    row = metrics("y", ref, got, POLICIES["int8"])
    assert not row.passed and "non-finite" in row.failed


def test_top_k_counts_every_row_of_a_batched_classifier() -> None:
    rng = np.random.default_rng(0)
    ref = rng.standard_normal((4, 10))
    shuffled = ref[:, ::-1].copy()  # a different argmax in every row
    row = metrics("logits", ref, shuffled, POLICIES["int8"])
    assert row.top1 is not None and row.top1 < 0.5 and "top-1" in row.failed
    assert metrics("seq", rng.standard_normal((1, 8, 16)), rng.standard_normal((1, 8, 16)),
                   POLICIES["int8"]).top1 is None  # a sequence is not classifier-like
