from __future__ import annotations

import dataclasses
import math

import numpy as np

from portkit.policies import POLICIES, KindHints, OutputKind, Tolerance, hidden_width
from portkit.validators.parity import compare_outputs, guess_kind, metrics


def test_identical_outputs_pass_with_zero_error() -> None:
    a = np.linspace(-1, 1, 10, dtype=np.float32)
    row = metrics("y", a, a.copy(), Tolerance())
    assert row.passed and row.max_abs_err == 0 and row.min_atol_to_pass == 0
    assert math.isclose(row.cosine, 1.0)


def test_failure_reports_the_tolerance_that_would_pass() -> None:
    ref = np.array([1.0, 2.0, 0.0])
    got = np.array([1.0, 2.0, 0.01])
    row = metrics("y", ref, got, Tolerance(atol=1e-4, rtol=0.0, scale_tol=0.0))
    assert not row.passed
    assert math.isclose(row.max_abs_err, 0.01)
    assert math.isclose(row.min_atol_to_pass, 0.01)
    assert metrics("y", ref, got, Tolerance(atol=row.min_atol_to_pass, rtol=0.0,
                                            scale_tol=0.0)).passed


def test_min_atol_accounts_for_rtol() -> None:
    ref, got = np.array([100.0]), np.array([100.5])
    row = metrics("y", ref, got, Tolerance(atol=0.0, rtol=1e-3, scale_tol=0.0))
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


def test_the_error_allowed_follows_the_output_scale() -> None:
    """A logit near zero in a map of logits in the hundreds carries the map's rounding."""
    ref = np.array([400.0, -350.0, 0.01, 120.0])
    rounding = np.array([2e-4, -1e-4, 3e-3, 0.0])  # 7.5e-6 of the scale: float32 rounding
    row = metrics("logits", ref, ref + rounding, POLICIES["fp32"])
    assert row.passed and row.scale == 400.0
    assert math.isclose(row.scaled_err, 3e-3 / 400)
    assert math.isclose(row.min_scale_tol_to_pass, (3e-3 - 1e-9) / 400)
    assert not metrics("logits", ref, ref + rounding, Tolerance(atol=1e-4, rtol=1e-3,
                                                                scale_tol=0.0)).passed
    broken = ref.copy()
    broken[2] += 0.2  # 5e-4 of the scale
    row = metrics("logits", ref, broken, POLICIES["fp32"])
    assert not row.passed and row.failed == ("max abs err",)
    assert metrics("logits", ref, broken,
                   Tolerance(scale_tol=row.min_scale_tol_to_pass * 1.001)).passed


def test_small_outputs_are_held_to_their_own_scale() -> None:
    ref = np.array([3e-3, -1e-3, 2e-3])
    assert metrics("y", ref, ref * (1 + 1e-7), POLICIES["fp32"]).passed
    assert not metrics("y", ref, ref * 1.01, POLICIES["fp32"]).passed


def test_an_all_zero_output_passes_only_near_zero() -> None:
    zero = np.zeros(8)
    assert metrics("y", zero, zero, POLICIES["fp32"]).passed
    assert not metrics("y", zero, zero + 1e-3, POLICIES["fp32"]).passed


def test_kinds_are_guessed_by_shape_values_and_name() -> None:
    rng = np.random.default_rng(0)
    scores = rng.standard_normal((4, 1, 10))
    probs = np.exp(scores) / np.exp(scores).sum(axis=-1, keepdims=True)
    unit = scores / np.linalg.norm(scores, axis=-1, keepdims=True)
    assert guess_kind("out", rng.standard_normal((1, 1, 3, 8, 8)))[0] is OutputKind.REGRESSION
    assert guess_kind("out", probs)[0] is OutputKind.CLASSIFIER
    assert guess_kind("sentence_embedding", scores)[0] is OutputKind.EMBEDDING
    assert guess_kind("out", unit)[0] is OutputKind.EMBEDDING
    assert guess_kind("logits", unit)[0] is OutputKind.CLASSIFIER
    kind, why = guess_kind("output_0", scores)
    assert kind is OutputKind.CLASSIFIER and why == "one score vector per sample"


def test_an_embedding_is_not_judged_by_top_1() -> None:
    """A quantized sentence embedding: near-ties swap its argmax, its direction holds."""
    rng = np.random.default_rng(0)
    ref = rng.standard_normal((32, 1, 384))
    got = ref + 0.08 * rng.standard_normal(ref.shape)  # cosine ~0.997
    as_scores = metrics("output_0", list(ref), list(got), POLICIES["dynamic"])
    assert not as_scores.passed and "top-1" in as_scores.failed
    told = dataclasses.replace(POLICIES["dynamic"], kind=OutputKind.EMBEDDING)
    row = metrics("output_0", list(ref), list(got), told)
    assert row.passed and row.top1 is None and row.kind == "embedding"
    assert row.kind_why == "set by the user"


def test_the_hidden_width_is_the_size_weight_matrices_share_most() -> None:
    # A 6-layer encoder's projections (384 wide), its vocabulary (30522) and a 2-label head.
    shapes = [(30522, 384)] + [(384, 384)] * 24 + [(1536, 384), (384, 1536)] * 6 + [(2, 384),
                                                                                   (384,)]
    assert hidden_width(shapes) == 384
    assert hidden_width([(7,), (3,)]) is None


def test_a_pooled_vector_of_the_hidden_width_from_token_ids_is_an_embedding() -> None:
    # A sentence encoder's [1, 384] output, not unit-norm: was "one score vector per sample".
    ref = np.random.default_rng(0).standard_normal((32, 1, 384)) * 3
    tokens = KindHints(tokens=True, hidden=384)
    kind, why = guess_kind("output_0", ref, tokens)
    assert kind is OutputKind.EMBEDDING and "hidden width (384)" in why
    assert guess_kind("output_0", ref)[0] is OutputKind.CLASSIFIER  # no hints: as before
    assert guess_kind("logits", ref, tokens)[0] is OutputKind.CLASSIFIER  # its name says so
    # A 2-label head on the same encoder stays a classifier.
    assert guess_kind("output_0", ref[..., :2], tokens)[0] is OutputKind.CLASSIFIER


def test_logits_per_position_from_token_ids_are_a_classifier_judged_per_token() -> None:
    rng = np.random.default_rng(0)
    ref = rng.standard_normal((2, 1, 32, 500))  # 2 samples of [1, 32, vocab]
    tokens = KindHints(tokens=True, hidden=64)
    kind, why = guess_kind("output_0", ref, tokens)
    assert kind is OutputKind.CLASSIFIER and "per position over 500 classes" in why
    assert guess_kind("output_0", ref)[0] is OutputKind.REGRESSION  # no hints: as before
    # Hidden states [1, 32, hidden] are not logits.
    assert guess_kind("output_0", ref[..., :64], tokens)[0] is OutputKind.REGRESSION
    got = ref.copy()
    got[0, 0, 0, ref[0, 0, 0].argmin()] = 100.0  # one position of 64 changes its top-1
    row = metrics("output_0", list(ref), list(got), POLICIES["dynamic"], hints=tokens)
    assert row.kind == "classifier" and row.top1 == 63 / 64


def test_without_a_hidden_width_no_sequence_output_is_taken_for_logits() -> None:
    # A source whose weights portkit can't read (hidden None): hidden states stay regression.
    ref = np.random.default_rng(0).standard_normal((2, 1, 16, 768))
    assert guess_kind("output_0", ref, KindHints(tokens=True))[0] is OutputKind.REGRESSION


def test_only_int_inputs_of_rank_2_are_token_ids() -> None:
    from portkit.runtimes.tasks import kind_hints
    from portkit.specs import TensorSpec

    class Weights:
        def weight_shapes(self) -> list[tuple[int, ...]]:
            return [(100, 16), (16, 16), (16, 16)]

    image = TensorSpec("image", (1, 224, 224, 3), "uint8")
    ids = TensorSpec("ids", (1, 16), "int64")
    assert kind_hints(Weights(), [image]) == KindHints()  # type: ignore[arg-type]
    assert kind_hints(Weights(), [ids]) == KindHints(True, 16)  # type: ignore[arg-type]
