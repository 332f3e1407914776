"""``portkit.api.bench``: each model's latency on each runtime that loads it."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from portkit.api.context import run_context
from portkit.options import BenchJob, Budget, exporting
from portkit.results import BenchReport, versions
from portkit.runtimes import worker
from portkit.runtimes.context import Progress, no_progress
from portkit.shapes import size_sets
from portkit.specs import TensorSpec, parse_inputs
from portkit.validators.generation_latency import bench_generation
from portkit.validators.latency import bench_models


def bench(
    models: Sequence[str | Path],
    *,
    runtimes: Sequence[str] = (),
    inputs: Sequence[str | TensorSpec] = (),
    threads: int | None = None,
    batch: int | None = None,
    budget: Budget = Budget(),
    timeout: float = worker.DEFAULT_TIMEOUT,
    progress: Progress = no_progress,
    shapes: Sequence[str | TensorSpec] = (),
    profile: bool = False,
    generate: int | None = None,
    prefill: str | Sequence[int] | None = None,
    max_seq: int | None = None,
    trust_model: bool = False,
) -> BenchReport:
    """Latency of each model on each runtime that loads it (one fresh worker per measurement).

    Args:
        models: Model files (e.g. several artifacts of one model).
        runtimes: Restrict to these runtime names.
        inputs: Input specs for shapes a model doesn't store.
        threads: CPU threads per runtime (default: the runtime's own; TFLite one per core).
        batch: Batch size to feed (replaces the first dimension).
        budget: Warm-up runs, minimum timed runs and seconds.
        shapes: Sizes to time a model with dynamic dimensions at: the k-th spec of each input
            named is size k (``["ids:1x16", "ids:1x128"]``); inputs sharing a dimension follow.
        profile: Also time each op with the runtime's own profiler (TFLite: LiteRT's, XNNPACK
            ops and builtin fallbacks apart; ONNX Runtime: session profiling), into each row's
            ``latency.profile``, worst first.
        generate: Time language models generating this many tokens instead (a Hugging Face
            causal-LM directory and its ONNX, TFLite and ``.pte`` artifacts): prefill tokens/s
            at each ``prefill`` length, time to first token and decode tokens/s, in turns
            (``report.generation``).
        prefill: With ``generate``: prompt lengths, ``"32,128"`` (default 32).
        max_seq: With ``generate``: the cache length the source runs with (default 256).
        trust_model: With ``generate``: the source directory's own code may run.
        timeout: Seconds each measurement may take.
        progress: ``progress(message)`` context managers around each step.

    Returns:
        Rows per model and runtime, with p50 ratios against the first model's.

    Raises:
        PortkitError: A model can't be read, or no runtime loads it.
    """
    if generate is not None:
        export = exporting(max_seq, prefill, trust_model)
        with run_context(None, timeout, progress) as ctx:
            timed = bench_generation([Path(m) for m in models], generate, export, ctx)
        return BenchReport((), budget, versions(), generation=timed)
    job = BenchJob(models=tuple(Path(m) for m in models), runtimes=tuple(runtimes),
                   inputs=tuple(parse_inputs(inputs)), threads=threads, batch=batch,
                   budget=budget, sizes=tuple(size_sets(parse_inputs(shapes))), profile=profile)
    with run_context(None, timeout, progress) as ctx:
        return bench_models(job, ctx)


