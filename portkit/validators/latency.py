"""Latency measured the way engineers trust: cold start, warm-up, then timed runs until both a
minimum count and a minimum time are reached; percentiles, spread and the worker's peak memory.

``bench`` and ``bench_candidates`` run in a worker that does nothing else; ``bench_models`` and
``time_together`` start them from the parent.
"""

from __future__ import annotations

import dataclasses
import functools
import resource
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np

from portkit.errors import UsageError
from portkit.formats import Format, sniff
from portkit.formats.tflite import bucket_axes, signatures
from portkit.options import BenchJob, Budget, LoadOptions
from portkit.profiles import OpTime
from portkit.results import BenchReport, BenchRow, Latency, versions
from portkit.runtimes import registry, worker
from portkit.runtimes.base import Session
from portkit.runtimes.binding import bound_feeds
from portkit.runtimes.context import RunContext
from portkit.runtimes.tasks import Reference
from portkit.safety import refuse_unloadable
from portkit.shapes import at_given, resolve_inputs, shown
from portkit.specs import TensorSpec, make_inputs


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
    turns (``rounds`` turns at least), so a slow spell of the machine slows them all alike
    rather than whichever was being measured. Each model gets at least ``budget.min_runs``
    runs and ``budget.min_seconds`` seconds.

    A turn is sized in time, not in runs: each model's turn lasts about
    ``budget.min_seconds / rounds`` (its warm-up, one run at least, tells how many runs that
    is), so a model a thousand times faster than its neighbour doesn't need a thousand times the
    turns. Each turn starts with one untimed run: the model before it evicted this one's
    weights from the caches, and a model that runs alone (as deployed) doesn't pay for that
    reload. Without it, an LSTM whose XNNPACK plan packs its recurrent weights once per unrolled
    step timed 2.2x ONNX Runtime in turns and 1.0x alone.

    Returns:
        One ``Latency`` per model, in order.
    """
    runs, colds, blocks = [], [], []
    turn_seconds = budget.min_seconds / rounds
    for load in loads:
        start = time.perf_counter()
        run = load()
        run()
        colds.append(time.perf_counter() - start)
        warm = []
        for _ in range(max(1, budget.warmup)):
            t = time.perf_counter()
            run()
            warm.append(time.perf_counter() - t)
        runs.append(run)
        by_time = int(turn_seconds / max(float(np.median(warm)), 1e-7))
        blocks.append(min(max(1, -(-budget.min_runs // rounds), by_time),
                          max(1, budget.max_runs // rounds)))
    times: list[list[float]] = [[] for _ in runs]
    spent = [0.0] * len(runs)
    turns = 0
    while turns < rounds or any(
            len(t) < budget.max_runs and (len(t) < budget.min_runs or s < budget.min_seconds)
            for t, s in zip(times, spent, strict=True)):
        for i, run in enumerate(runs):
            run()  # re-warm: the previous model's turn took the caches
            for _ in range(blocks[i]):
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


@worker.task
def bench(path: str, fmt: Format, runtime: str, device: str, given: list[TensorSpec],
          batch: int | None, budget: Budget, options: LoadOptions = LoadOptions(),
          size: Sequence[TensorSpec] = (), profile: bool = False) -> Latency:
    """Time a model on one runtime and device (this worker does nothing else), at ``size``
    (``--shape`` values, over ``given``) when given; with ``profile``, then time each op over
    ``budget.min_runs`` more runs with the runtime's profiler (``Session.profile``)."""
    rt = registry.get(runtime)
    specs: list[TensorSpec] = []
    loaded: list[tuple[Session, dict[str, np.ndarray]]] = []

    def load() -> Callable[[], object]:
        session = rt.load(Path(path), fmt, device, options)
        over = {s.name: s for s in [*given, *size]}
        resolved = resolve_inputs(Path(path).name, session.inputs, list(over.values()))
        specs.extend(_batched(at_given(resolved, size), batch))
        feeds = make_inputs(specs, seed=0)
        loaded.append((session, feeds))
        return lambda: session.run(feeds)

    first = measure(load, budget, runtime=runtime, device=device, threads=options.threads,
                    batch=1)
    n = int((specs[0].shape or (1,))[0]) if specs else 1
    ops = loaded[0][0].profile(loaded[0][1], budget.min_runs) if profile else ()
    return dataclasses.replace(first, batch=n, throughput=first.throughput * n, profile=ops)


@worker.task
def profile_ops(path: str, fmt: Format, runtime: str, given: list[TensorSpec], runs: int,
                options: LoadOptions = LoadOptions()) -> tuple[OpTime, ...]:
    """Time each op of a model on one runtime's CPU with its profiler (``Session.profile``),
    fed seeded inputs of the shapes it stores (or ``given``)."""
    session = registry.get(runtime).load(Path(path), fmt, "cpu", options)
    specs = resolve_inputs(Path(path).name, session.inputs, given)
    return session.profile(make_inputs(list(specs), seed=0), runs)


def profile_artifact(path: Path, given: Sequence[TensorSpec], runtimes: Sequence[str],
                     ctx: RunContext, runs: int = Budget().min_runs) -> tuple[OpTime, ...]:
    """``validate --profile``: the artifact's ops timed on the first CPU runtime that loads it
    (among ``runtimes`` when given), in a fresh worker.

    Raises:
        UsageError: A runtime among ``runtimes`` doesn't load the artifact's format.
    """
    fmt = sniff(path)
    chosen = registry.named(fmt, runtimes)
    with ctx.progress(f"Profiling {path.name} on {chosen[0].name}"):
        return worker.call(profile_ops, timeout=ctx.timeout, what=f"profiling {path.name}",
                           path=str(path.absolute()), fmt=fmt, runtime=chosen[0].name,
                           given=list(given), runs=runs)


@worker.task
def bench_candidates(paths: list[str], fmt: Format, runtime: str, device: str,
                     sample: dict[str, np.ndarray], specs: list[TensorSpec], budget: Budget,
                     prefer_channels_last: bool = False,
                     options: LoadOptions = LoadOptions()) -> list[Latency | str]:
    """Time several artifacts of one source against each other in turns, on one runtime and
    device, each fed the same reference ``sample`` in its own names and layout.

    An artifact that fails to load or run here gives its error instead of a latency: XNNPACK
    has been seen refusing a model ("failed to reshape") only after other models were prepared
    in the same process, so the caller can time it again alone.
    """
    rt = registry.get(runtime)
    runs: list[Callable[[], object] | str] = []
    colds: list[float] = []
    for path in paths:
        start = time.perf_counter()
        try:
            session = rt.load(Path(path), fmt, device, options)
            feeds = bound_feeds(session, specs, sample, prefer_channels_last)
            run = functools.partial(session.run, feeds)
            run()
        except Exception as e:  # noqa: BLE001 - one artifact failing must not hide the others
            runs.append(f"{type(e).__name__}: {str(e).strip().splitlines()[0] if str(e) else ''}")
            continue
        runs.append(run)
        colds.append(time.perf_counter() - start)
    ready = [r for r in runs if not isinstance(r, str)]
    timed = measure_interleaved([functools.partial(lambda r: r, r) for r in ready], budget,
                                runtime=runtime, device=device, threads=options.threads)
    results = iter(dataclasses.replace(t, cold_start_ms=c * 1000.0)
                   for t, c in zip(timed, colds, strict=True))
    return [r if isinstance(r, str) else next(results) for r in runs]


def bucket_signatures(path: Path) -> list[tuple[str, tuple[TensorSpec, ...]]]:
    """A ``.tflite`` of one signature per length (``--seq-buckets``): each signature's name and
    inputs at its length, smallest first, read from the flatbuffer (``formats.tflite``, no
    interpreter); empty for any other file."""
    found = signatures(path)
    if not bucket_axes(found):
        return []
    return [(s.name, tuple(TensorSpec(t.name, t.shape, t.dtype) for t in s.inputs))
            for s in sorted(found, key=lambda s: tuple(t.shape for t in s.inputs))]


def _batched(specs: list[TensorSpec], batch: int | None) -> list[TensorSpec]:
    if batch is None:
        return specs
    return [TensorSpec(s.name, (batch, *(s.shape or ())[1:]), s.dtype) for s in specs]


def bench_models(job: BenchJob, ctx: RunContext) -> BenchReport:
    """Latency of each model on each runtime that loads it, one fresh worker per measurement
    (``ctx.pool`` is not used: a warm worker would time its neighbours' leftovers); a TFLite
    file of one signature per length (``--seq-buckets``) is timed at each, a row per signature,
    unless ``--shape`` or ``--input`` says the sizes.

    Raises:
        PortkitError: A model can't be read, or no runtime loads it.
    """
    rows: list[BenchRow] = []
    for model in job.models:
        path = Path(model).absolute()
        fmt = sniff(path)
        refuse_unloadable(path, fmt)
        chosen = [rt for rt in registry.for_format(fmt)
                  if not job.runtimes or rt.name in job.runtimes]
        if not chosen:
            raise UsageError(f"{path}: no runtime among {', '.join(job.runtimes)} loads "
                             f"{fmt.value} models")
        labels: dict[tuple[TensorSpec, ...], str] = {}
        sizes = job.sizes or ((),)
        if fmt is Format.TFLITE and not job.sizes and not job.inputs:  # a row per signature
            labels = {size: f"{name} ({shown(size)})"
                      for name, size in bucket_signatures(path)}
            sizes = tuple(labels) or sizes
        for rt in chosen:
            for size in sizes:
                label = labels.get(size) or shown(size)
                at = f" at {label}" if label else ""
                with ctx.progress(f"Timing {path.name} on {rt.name}{at}"):
                    latency: Latency = worker.call(
                        bench, timeout=ctx.timeout, what=f"{path.name} on {rt.name}{at}",
                        path=str(path), fmt=fmt, runtime=rt.name, device="cpu",
                        given=list(job.inputs), batch=job.batch, budget=job.budget,
                        options=LoadOptions(threads=job.threads), size=list(size),
                        profile=job.profile,
                    )
                rows.append(BenchRow(str(path), fmt.value, latency, label))
    return BenchReport(tuple(rows), job.budget, versions())


def time_together(paths: Sequence[Path], fmt: Format, runtime: str, ref: Reference, *,
                  threads: int | None = None, channels_last: bool = False,
                  budget: Budget = Budget(), timeout: float = worker.DEFAULT_TIMEOUT,
                  pool: worker.Pool | None = None) -> list[Latency | str]:
    """Time artifacts of one source against each other, in turns in one worker, on the
    reference's first sample; one that fails there is timed again alone in a fresh worker.

    Args:
        paths: The artifacts (all of ``fmt``).
        fmt: Their format.
        runtime: The runtime to time them on (CPU).
        ref: The reference whose first sample they are fed, mapped to each one's inputs.
        threads: CPU threads (None: the runtime's default; TFLite one per core).
        channels_last: Map channels-first reference inputs to channels-last where both fit.
        budget: Warm-up, runs and seconds per artifact.
        timeout: Seconds the timing may take.
        pool: A warm worker pool to time in (its worker named after the runtime).

    Returns:
        Per artifact its latency, or why it could not be timed.
    """
    def timed(chosen: Sequence[Path], warm: worker.Pool | None) -> list[Latency | str]:
        kwargs = dict(timeout=timeout, what=f"timing on {runtime}", paths=[str(p) for p in chosen],
                      fmt=fmt, runtime=runtime, device="cpu", sample=ref.feeds[0],
                      specs=list(ref.inputs), budget=budget, prefer_channels_last=channels_last,
                      options=LoadOptions(threads=threads))
        if warm is not None:
            return warm.call(runtime, bench_candidates, **kwargs)
        return worker.call(bench_candidates, **kwargs)

    results = timed(paths, pool)
    for i, result in enumerate(results):
        if isinstance(result, str) and len(paths) > 1:
            results[i] = timed([paths[i]], None)[0]
    return results
