"""Latency measured the way engineers trust: cold start, warm-up, then timed runs until both a
minimum count and a minimum time are reached; percentiles, spread and the worker's peak memory.
"""

from __future__ import annotations

import resource
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class Budget:
    """How long to measure.

    Attributes:
        warmup: Untimed runs after the first.
        min_runs: Timed runs at least.
        min_seconds: Timed seconds at least.
        max_runs: Timed runs at most (a guard for very fast models).
    """

    warmup: int = 5
    min_runs: int = 30
    min_seconds: float = 1.0
    max_runs: int = 100_000


@dataclass(frozen=True)
class Latency:
    """Timings of one model on one runtime and device (milliseconds unless stated).

    Attributes:
        runtime: The runtime's name.
        device: The device.
        threads: CPU threads asked for (None: the runtime's default).
        batch: The batch size fed.
        cold_start_ms: Load plus the first run.
        runs: Timed runs.
        p50_ms, p90_ms, p99_ms, mean_ms: Percentiles and mean of the timed runs.
        cv: Coefficient of variation (std / mean) of the timed runs.
        throughput: Samples per second (batch / mean).
        peak_rss_mb: The worker's peak resident memory.
    """

    runtime: str
    device: str
    threads: int | None
    batch: int
    cold_start_ms: float
    runs: int
    p50_ms: float
    p90_ms: float
    p99_ms: float
    mean_ms: float
    cv: float
    throughput: float
    peak_rss_mb: float


def measure(load: Callable[[], Callable[[], object]], budget: Budget, *, runtime: str,
            device: str, threads: int | None, batch: int) -> Latency:
    """Time ``load()`` plus one run (cold start), then warm-up and timed runs of the session.

    Args:
        load: Loads the model and returns a zero-argument function that runs it once.
        budget: How long to measure.
        runtime: Name recorded in the result.
        device: Device recorded in the result.
        threads: Threads recorded in the result.
        batch: Batch size (for throughput).

    Returns:
        The timings.
    """
    start = time.perf_counter()
    run = load()
    run()
    cold = time.perf_counter() - start
    for _ in range(budget.warmup):
        run()
    times: list[float] = []
    began = time.perf_counter()
    while not times or len(times) < budget.max_runs and (
            len(times) < budget.min_runs or time.perf_counter() - began < budget.min_seconds):
        t = time.perf_counter()
        run()
        times.append(time.perf_counter() - t)
    return summarize(times, cold, runtime=runtime, device=device, threads=threads, batch=batch)


def measure_interleaved(loads: list[Callable[[], Callable[[], object]]], budget: Budget, *,
                        runtime: str, device: str, threads: int | None,
                        rounds: int = 10) -> list[Latency]:
    """Time several models against each other: after loading and warming up each, run them in
    turns (a block of runs each, ``rounds`` turns at least), so a slow spell of the machine
    slows them all alike rather than whichever was being measured. Each model gets at least
    ``budget.min_runs`` runs and ``budget.min_seconds`` seconds.

    Returns:
        One ``Latency`` per model, in order.
    """
    runs, colds = [], []
    for load in loads:
        start = time.perf_counter()
        run = load()
        run()
        colds.append(time.perf_counter() - start)
        for _ in range(budget.warmup):
            run()
        runs.append(run)
    times: list[list[float]] = [[] for _ in runs]
    block = max(1, -(-budget.min_runs // rounds))
    spent = [0.0] * len(runs)
    turns = 0
    while turns < rounds or any(
            len(t) < budget.max_runs and (len(t) < budget.min_runs or s < budget.min_seconds)
            for t, s in zip(times, spent, strict=True)):
        for i, run in enumerate(runs):
            for _ in range(block):
                t = time.perf_counter()
                run()
                times[i].append(time.perf_counter() - t)
                spent[i] += times[i][-1]
        turns += 1
    return [summarize(t, c, runtime=runtime, device=device, threads=threads, batch=1)
            for t, c in zip(times, colds, strict=True)]


def summarize(times: list[float], cold: float, *, runtime: str, device: str,
              threads: int | None, batch: int) -> Latency:
    """Percentiles, mean, spread and throughput of timed runs (seconds) as a ``Latency``."""
    ms = np.array(times) * 1000.0
    mean = float(ms.mean())
    return Latency(
        runtime=runtime, device=device, threads=threads, batch=batch,
        cold_start_ms=cold * 1000.0, runs=len(ms),
        p50_ms=float(np.percentile(ms, 50)), p90_ms=float(np.percentile(ms, 90)),
        p99_ms=float(np.percentile(ms, 99)), mean_ms=mean,
        cv=float(ms.std() / mean) if mean else 0.0,
        throughput=batch / (mean / 1000.0) if mean else 0.0,
        peak_rss_mb=_peak_rss_mb(),
    )


def _peak_rss_mb() -> float:
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak / (1024 * 1024) if sys.platform == "darwin" else peak / 1024  # bytes vs KiB
