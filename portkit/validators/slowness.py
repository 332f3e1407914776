"""``convert --speed-check``: the shipped artifact's median latency against the source's own
runtime on the same CPU, both timed in turns in one worker; beyond ``SLOW_RATIO`` times the
report warns and names the artifact's slowest ops from its runtime's profiler.

The baseline is the source on the runtime that ran it as the reference (ONNX Runtime for an
ONNX source, TensorFlow for Keras and SavedModel, torch eager for TorchScript and ``.pt2``),
except that a torch source converted to TFLite is timed against ONNX Runtime on its ONNX (the one
a route made, else one made for the check: ``portkit.convert.baseline``), as torch eager can be
as slow as the artifact on the op that makes it slow.
"""

from __future__ import annotations

import dataclasses
import functools
import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from portkit.errors import InternalError, PortkitError, UsageError
from portkit.formats import Format
from portkit.options import Budget, LoadOptions, Optimize
from portkit.profiles import OpTime
from portkit.results import Latency
from portkit.runtimes import registry, worker
from portkit.runtimes.base import Session
from portkit.runtimes.binding import bound_feeds
from portkit.runtimes.context import RunContext
from portkit.runtimes.tasks import Reference
from portkit.specs import TensorSpec
from portkit.speed import MIN_GAP_MS, SLOW_RATIO, SpeedCheck, is_slow, timed
from portkit.validators.latency import measure_interleaved
from portkit.validators.reference import reference_worker

# Short on purpose (convert must not get much slower): 10 runs each, in turns, no minimum time,
# so a 500 ms artifact against a 5 ms baseline costs seconds, not minutes.
BUDGET = Budget(warmup=3, min_runs=10, min_seconds=0.0)
TARGETS = (Format.TFLITE, Format.ONNX)  # the artifacts it times
WORST_OPS = 5  # ops named in the report
PROFILE_RUNS = 3  # profiled runs of a slow artifact (each op's median over them)
# Runtimes a source can be timed on; ``onnx-reference`` (old opsets) is no yardstick.
BASELINE_RUNTIMES = ("onnxruntime", "tensorflow", "torch", "tflite")


def wanted(speed_check: bool | None, optimize: Optimize | None, target: Format,
           validate: bool = True) -> bool:
    """Whether ``convert`` runs the speed check: ``--speed-check``/``--no-speed-check`` when
    given, else with ``--optimize latency`` on a target it times.

    Raises:
        UsageError: ``--speed-check`` with a target it does not time, or with
            ``--no-validate`` (it times only an artifact that matched its source).
    """
    if speed_check and target not in TARGETS:
        raise UsageError(f"--speed-check times TFLite and ONNX artifacts; --to {target.value} "
                         "writes neither: drop --speed-check, or time it with portkit bench")
    if speed_check and not validate:
        raise UsageError("--speed-check times only an artifact that matched its source: drop "
                         "--no-validate or --speed-check")
    if speed_check is None:
        return optimize is not None and target in TARGETS
    return speed_check


@dataclass(frozen=True)
class Timed:
    """A model to time: its file, format and runtime, how it loads, and how it is fed: an
    artifact (``bind``) takes the reference's inputs mapped onto its own names and layout,
    the source takes the reference's sample as it is."""

    path: str
    fmt: Format
    runtime: str
    options: LoadOptions
    bind: bool = True
    channels_last: bool = False


def baseline(source: tuple[Path, Format], target: Format, reference_runtime: str,
             onnx: Path | None, load: LoadOptions) -> tuple[Timed, str] | str:
    """What the artifact is timed against, and that in words; or why nothing.

    Args:
        source: The source file (the one the reference ran) and its format.
        target: The artifact's format.
        reference_runtime: What ran the source as the reference.
        onnx: A torch source's ONNX, if one was made (``portkit.convert.baseline``).
        load: How the source loads (``--signature``, ``--trust-model``).
    """
    src, fmt = source
    threads = _threads(reference_runtime)
    if fmt.framework == "torch" and target is Format.TFLITE and onnx is not None:
        return (Timed(str(onnx), Format.ONNX, "onnxruntime", LoadOptions(threads=threads)),
                "onnxruntime on the source's ONNX")
    if reference_runtime not in BASELINE_RUNTIMES:
        return (f"the source ran on {reference_runtime}, which is no yardstick for speed; "
                "time the artifact with portkit bench")
    how = " (tf.function)" if reference_runtime == "tensorflow" else ""
    return (Timed(str(src), fmt, reference_runtime, dataclasses.replace(load, threads=threads),
                  bind=False), f"{reference_runtime} on the source{how}")


def _threads(runtime: str) -> int | None:
    """Threads each side runs with: one per core (TFLite's default in portkit); TensorFlow
    keeps its own (about one per core: its thread pools are fixed once it has run)."""
    return None if runtime == "tensorflow" else os.cpu_count() or 1


def check_speed(artifact: Path, target: Format, channels_last: bool,
                source: tuple[Path, Format], reference: Reference, onnx: Path | None,
                load: LoadOptions, ctx: RunContext) -> SpeedCheck:
    """Time a passed artifact against its baseline (``baseline``) on the reference's first
    sample, in turns in the source's reference worker (its framework is loaded there); profile
    the artifact when it is slow (``portkit.speed.is_slow``). Never raises for the model: what
    went wrong is the check's ``error``.

    Args:
        artifact: The artifact (of ``target``).
        target: Its format.
        channels_last: Whether its route made channels-first inputs channels-last.
        source: The source file the reference ran, and its format.
        reference: The reference: its runtime, inputs and first sample.
        onnx: A torch source's ONNX, if one was made (``portkit.convert.baseline``).
        load: How the source loads.
        ctx: The workers (the reference's is used), the timeout, progress.

    Returns:
        The check: both medians, their ratio, the verdict and the worst ops.
    """
    rt = registry.for_format(target)[0].name
    base = baseline(source, target, reference.runtime or "", onnx, load)
    if isinstance(base, str):
        return SpeedCheck(runtime=rt, baseline="none", baseline_runtime="", error=base)
    side, described = base
    mine = Timed(str(artifact), target, rt, LoadOptions(threads=_threads(rt)),
                 channels_last=channels_last)
    try:
        with ctx.progress(f"Timing the artifact on {rt} against {described}"):
            art, ref, ops, note = ctx.pool.call(
                reference_worker(source[1]), time_against, timeout=ctx.timeout,
                what=f"timing {artifact.name} against {described}", artifact=mine,
                baseline=side, sample=reference.feeds[0], specs=list(reference.inputs),
                budget=BUDGET, profile_runs=PROFILE_RUNS)
    except (PortkitError, InternalError) as e:  # advisory: it never fails the conversion
        return SpeedCheck(runtime=rt, baseline=described, baseline_runtime=side.runtime,
                          error=str(e).strip().splitlines()[0] if str(e) else type(e).__name__)
    return timed(rt, described, side.runtime, p50_ms=art.p50_ms, baseline_p50_ms=ref.p50_ms,
                 threads=mine.options.threads, runs=art.runs, worst_ops=ops[:WORST_OPS],
                 note=note)


@worker.task
def time_against(artifact: Timed, baseline: Timed, sample: dict[str, np.ndarray],
                 specs: list[TensorSpec], budget: Budget, profile_runs: int,
                 threshold: float = SLOW_RATIO, min_gap_ms: float = MIN_GAP_MS
                 ) -> tuple[Latency, Latency, tuple[OpTime, ...], str]:
    """Time ``artifact`` and ``baseline`` in turns (``measure_interleaved``) on ``sample``;
    when the artifact is slow (``is_slow`` at ``threshold`` and ``min_gap_ms``), profile it
    over ``profile_runs`` runs.

    Returns:
        Their latencies, the artifact's ops worst first (empty unless slow) and why they could
        not be profiled (empty when they were, or were not needed).
    """
    loaded = [_load(t, sample, specs) for t in (artifact, baseline)]
    art, ref = measure_interleaved([functools.partial(lambda r: r, run) for _s, _f, run in loaded],
                                   budget, runtime=artifact.runtime, device="cpu",
                                   threads=artifact.options.threads)
    ref = dataclasses.replace(ref, runtime=baseline.runtime, threads=baseline.options.threads)
    if not is_slow(art.p50_ms, ref.p50_ms, threshold, min_gap_ms):
        return art, ref, (), ""
    session, feeds, _run = loaded[0]
    try:
        return art, ref, session.profile(feeds, profile_runs), ""
    except PortkitError as e:  # no profiler here: the verdict stands without the ops
        return art, ref, (), str(e).strip().splitlines()[0]


def _load(model: Timed, sample: dict[str, np.ndarray], specs: list[TensorSpec]
          ) -> tuple[Session, dict[str, np.ndarray], Callable[[], object]]:
    """Load ``model`` and its feeds; returns the session, the feeds, and one run."""
    session = registry.get(model.runtime).load(Path(model.path), model.fmt, "cpu", model.options)
    if model.bind:
        feeds = bound_feeds(session, specs, sample, model.channels_last)
    else:
        feeds = {s.name: sample[s.name] for s in session.inputs}
    return session, feeds, functools.partial(session.run, feeds)
