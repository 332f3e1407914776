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


def test_turns_are_sized_in_time_so_a_fast_model_does_not_multiply_the_slow_ones_runs() -> None:
    calls = {"slow": 0}

    def slow_load():
        def run():
            calls["slow"] += 1
            time.sleep(0.01)
        return run

    budget = Budget(warmup=1, min_runs=4, min_seconds=0.1)
    fast, slow = measure_interleaved([lambda: (lambda: None), slow_load], budget,
                                     runtime="test", device="cpu", threads=None, rounds=4)
    assert fast.runs >= 4 and slow.runs >= 4
    # a turn of runs counted alike would give the no-op 1-run turns: ~10^5 turns of the sleeper
    assert calls["slow"] < 60


def test_each_turn_starts_with_an_untimed_run_so_no_model_is_timed_on_cold_caches() -> None:
    last = {"model": None}

    def load(name):
        def loaded():
            def run():  # slow on the first run after the other model ran, as evicted weights are
                time.sleep(0.05 if last["model"] not in (None, name) else 0.0005)
                last["model"] = name
            return run
        return loaded

    budget = Budget(warmup=1, min_runs=8, min_seconds=0.02)
    a, b = measure_interleaved([load("a"), load("b")], budget, runtime="test", device="cpu",
                               threads=None, rounds=4)
    assert a.p90_ms < 25 and b.p90_ms < 25  # every timed run was a warm one (0.5 ms sleeps)
