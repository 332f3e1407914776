"""Non-finite outputs never pass: NaN/inf on either side fails, unless ``--allow-nonfinite``,
where they must match exactly and the finite rest is judged as usual."""

from __future__ import annotations

import math

import numpy as np
import pytest

from portkit.policies import Tolerance
from portkit.results import Check
from portkit.validators.checks import why_failed
from portkit.validators.parity import metrics

ALLOW = Tolerance(allow_nonfinite=True)


def test_nan_on_both_sides_fails_and_says_how_many() -> None:
    ref = np.full((1, 12), np.nan)
    row = metrics("output_0", ref, ref.copy(), Tolerance())
    assert not row.passed and row.failed == ("non-finite",)
    assert row.nonfinite == "12 NaN in the reference, 12 NaN in the artifact"
    [line] = why_failed(Check(runtime="onnxruntime", device="cpu", passed=False,
                              outputs=(row,)))
    assert line == ("onnxruntime/cpu: output output_0: 12 NaN in the reference, 12 NaN in the "
                    "artifact (pass --allow-nonfinite to require them to match exactly)")


def test_inf_only_in_the_reference_fails() -> None:
    row = metrics("y", np.array([1.0, np.inf]), np.array([1.0, 3.0]), Tolerance())
    assert not row.passed and row.nonfinite == "1 inf in the reference, 0 NaN/inf in the artifact"


@pytest.mark.parametrize("ref, got", [
    ([np.nan, np.inf, -np.inf, 1.0], [np.nan, np.inf, -np.inf, 1.0]),
    ([np.nan, np.nan], [np.nan, np.nan]),
])
def test_allowed_non_finite_values_that_match_exactly_pass(ref, got) -> None:
    row = metrics("y", np.array(ref), np.array(got), ALLOW)
    assert row.passed and row.nonfinite is None and row.max_abs_err == 0


@pytest.mark.parametrize("got, differ", [([np.nan, 2.0, 3.0], 2), ([1.0, -np.inf, 3.0], 1),
                                         ([1.0, np.nan, 3.0], 1)])
def test_allowed_non_finite_values_in_other_places_or_signs_fail(got, differ) -> None:
    row = metrics("y", np.array([1.0, np.inf, 3.0]), np.array(got), ALLOW)
    assert not row.passed and "non-finite" in row.failed
    assert row.nonfinite is not None
    assert row.nonfinite.startswith(f"{differ} non-finite values differ (1 inf in the reference")


def test_the_finite_rest_is_judged_as_usual_when_non_finite_values_match() -> None:
    ref = np.array([np.nan, 1.0, 2.0])
    assert metrics("y", ref, np.array([np.nan, 1.0, 2.0 + 1e-9]), ALLOW).passed
    far = metrics("y", ref, np.array([np.nan, 1.0, 2.5]), ALLOW)
    assert not far.passed and far.failed == ("max abs err",) and math.isclose(far.max_abs_err,
                                                                              0.5)
