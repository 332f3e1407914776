"""Timing several models in turns: one result each, in order, every budget met."""

from __future__ import annotations

import time

from portkit.options import Budget
from portkit.validators.latency import measure_interleaved


def _sleeper(seconds: float):
    def load():
        return lambda: time.sleep(seconds)
    return load


def test_interleaved_timing_gives_each_model_its_own_percentiles() -> None:
    budget = Budget(warmup=1, min_runs=12, min_seconds=0.05)
    fast, slow = measure_interleaved([_sleeper(0.0005), _sleeper(0.004)], budget,
                                     runtime="test", device="cpu", threads=None, rounds=4)
    for t in (fast, slow):
        assert t.runs >= 12 and t.p50_ms <= t.p90_ms <= t.p99_ms
    assert slow.p50_ms > fast.p50_ms  # sleeps of 4 ms vs 0.5 ms, in whichever order they ran
