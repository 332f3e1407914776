"""Latency statistics over a fake session (pure logic: the clock is real, the model a no-op)."""

from __future__ import annotations

import pytest

from portkit.errors import UsageError
from portkit.options import Budget
from portkit.validators.latency import measure


def test_measure_runs_until_both_minimums_and_orders_percentiles() -> None:
    calls = []
    result = measure(lambda: (lambda: calls.append(1)), Budget(warmup=2, min_runs=50,
                                                               min_seconds=0.01),
                     runtime="fake", device="cpu", threads=None, batch=4)
    assert result.runs >= 50 and len(calls) == 1 + 2 + result.runs  # first run, warm-up, timed
    assert 0 <= result.p50_ms <= result.p90_ms <= result.p99_ms
    assert result.throughput > 0 and result.cv >= 0 and result.peak_rss_mb > 0


def test_the_smallest_budget_times_one_run_and_none_is_refused() -> None:
    result = measure(lambda: (lambda: None), Budget(warmup=0, min_runs=1, min_seconds=0.0),
                     runtime="fake", device="cpu", threads=None, batch=1)
    assert result.runs == 1
    with pytest.raises(UsageError, match="--min-runs 0: must be an integer in"):
        Budget(warmup=0, min_runs=0, min_seconds=0.0)
