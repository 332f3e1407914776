"""The library API: ``convert``, ``validate``, ``replay``, ``debug``, ``bench`` and ``inspect``. The CLI is a
thin shell over these; each is a short composition: flags become typed options
(``portkit.options``), then the layer that does the work runs them in worker processes
(``convert.pipeline``, ``validators.checks``, ``validators.latency``, ``runtimes.tasks``).
"""

from __future__ import annotations

import contextlib
import dataclasses
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

from portkit import options, policies
from portkit.bounds import TIMEOUT
from portkit.convert import pipeline, sources
from portkit.debug import run as debug_run
from portkit.debug.report import DebugReport
from portkit.formats import sniff
from portkit.options import (
    BenchJob,
    Budget,
    ConvertJob,
    LoadOptions,
    Scalar,
    ValidateJob,
)
from portkit.policies import Tolerance
from portkit.results import (
    BenchReport,
    ConvertReport,
    FileInfo,
    Inspection,
    ModelInfo,
    ValidateReport,
)
from portkit.runtimes import tasks, worker
from portkit.runtimes.context import Progress, RunContext, no_progress
from portkit.runtimes.steps import parse_state
from portkit.safety import refuse_unloadable
from portkit.shapes import size_sets
from portkit.specs import Dim, TensorSpec, parse_inputs
from portkit.validators import checks, slowness
from portkit.validators.latency import bench_models, profile_artifact


def convert(
    source: str | Path | Any,
    to: str,
    output: str | Path | None = None,
    *,
    inputs: Sequence[str | TensorSpec] = (),
    inputs_file: str | Path | None = None,
    route: str | None = None,
    atol: float | None = None,
    rtol: float | None = None,
    scale_tol: float | None = None,
    output_kinds: Mapping[str, str] | Sequence[str] = (),
    validate: bool = True,
    seed: int = 0,
    timeout: float = worker.DEFAULT_TIMEOUT,
    progress: Progress = no_progress,
    signature: str | None = None,
    trust_model: bool = False,
    quantize: str | None = None,
    calibration: str | Path | None = None,
    int8_io: bool = False,
    keep_float: str | Sequence[str] | None = None,
    no_flex: bool = False,
    opset: int | None = None,
    samples: int | None = None,
    min_cosine: float | None = None,
    min_top1: float | None = None,
    min_top5: float | None = None,
    optimize: str | None = None,
    consts: Mapping[str, Scalar] | Sequence[str] = (),
    steps: int = 1,
    state: Mapping[str, str] | Sequence[str] = (),
    dims: Sequence[str | Dim] = (),
    static: bool = False,
    allow_nonfinite: bool = False,
    eval_data: str | Path | None = None,
    eval_output: str | None = None,
    max_accuracy_drop: float | None = None,
    workers: worker.Pool | None = None,
    report: str | Path | None = None,
    speed_check: bool | None = None,
) -> ConvertReport:
    """Convert a model to another format and prove the artifact matches its source.

    Routes are tried cheapest first until one produces an artifact that runs and matches the
    source on every runtime that loads it; every route tried is in the report. With
    ``optimize="latency"`` every route is tried, the artifacts that match are timed against
    each other, and the fastest is kept.

    Args:
        source: A model file, a SavedModel directory, or a ``torch.nn.Module``.
        to: Target format: ``onnx``, ``tflite``, ``savedmodel``, ``torchscript`` or ``pt2``.
        output: Where to write the artifact (default: beside the source, new suffix).
        inputs: Input specs ``NAME:1x3x224x224[:dtype]`` for shapes the model doesn't store.
        inputs_file: An ``.npz`` of input arrays to use instead of seeded random ones.
        route: Force one route by name (e.g. ``torch.onnx+onnx2tf``).
        atol: Absolute tolerance per element (default: by precision, see ``POLICIES``); with
            ``atol`` or ``rtol`` alone the rule is ``numpy.allclose`` (no scale term).
        rtol: Relative tolerance per element (default: by precision).
        scale_tol: Tolerance per element as a fraction of the output's largest reference
            magnitude (default: by precision).
        output_kinds: What some outputs hold, ``NAME=classifier|embedding|regression`` (or a
            mapping): top-k agreement judges classifiers only (default: guessed, see
            ``validators.parity.guess_kind``).
        validate: Run and compare the artifact (the default); False only converts.
        seed: Seed for generated inputs.
        timeout: Seconds each worker step (load, convert, run) may take.
        progress: ``progress(message)`` returns a context manager around each long step.
        signature: SavedModel signature of the source (default ``serving_default``).
        trust_model: Load Keras Lambda layers and custom objects (they run code).
        quantize: TFLite quantization: ``fp16``, ``dynamic``, ``int8`` or ``int16x8``.
        calibration: Representative inputs for ``int8``/``int16x8`` (``.npz`` or ``.npy`` folder).
            Without ``inputs_file`` its last ``samples`` (32) are held back from calibration and
            the artifact is judged on them.
        int8_io: With ``int8``, make the model's inputs and outputs int8 too.
        keep_float: Ops to leave in float when quantizing (``dynamic``/``int8``/``int16x8``):
            ``"auto"`` keeps the fewest that make the artifact meet the policy, or names (as
            the report's per-op error table gives them). Off by default: NPUs need every op
            quantized.
        no_flex: Fail rather than write a TFLite model that needs the Flex runtime.
        opset: ONNX opset for the converters that take one (default: their newest).
        samples: How many inputs to compare on (default: by precision; 32 when quantized).
        min_cosine: Lowest cosine similarity that passes (default: by precision).
        min_top1: Lowest top-1 agreement (0-1) for classifier-like outputs.
        min_top5: Lowest top-5 agreement (0-1) for classifier-like outputs.
        optimize: ``latency``: try every route, ship the fastest artifact that matches.
        consts: Inputs to bind to a constant in the artifact, ``["sr=16000"]`` or
            ``{"sr": 16000}`` (TorchScript int/float/bool arguments, ONNX inputs): the artifact
            no longer takes them, and the source runs with the same values as the reference.
        steps: Consecutive calls per sample for a stateful model: each call after the first
            is fed the state the previous returned (the artifact its own).
        state: ``["IN=OUT"]`` or ``{IN: OUT}``: output OUT is fed back as input IN (default:
            guessed by name and shape when ``steps`` > 1).
        dims: ``["N=1..32"]``: the sizes a dynamic dimension takes (named by an input spec
            like ``x:Nx3x224x224`` or by the model); default: the source's range, else 1..64.
        static: Fix every dimension at its example size (a fixed-shape artifact).
        allow_nonfinite: Let NaN/inf through in ``inputs_file`` and ``calibration`` (else
            refused), and compare non-finite outputs exactly (else an output holding any fails).
        eval_data: An ``.npz`` of inputs and ``labels`` (each sample's class index): the top-1
            accuracy of the source and of the shipped artifact on it are reported
            (``report.accuracy``).
        eval_output: The classifier output scored (default: the model's only output).
        max_accuracy_drop: With ``eval_data``: the largest drop in top-1 (source minus
            artifact, 0-1) that passes; a larger one fails the artifact (exit 1).
        workers: Warm workers to run in, kept by the caller across calls: the reference (one
            per source framework), the converters (one per source format) and the artifacts
            (one per runtime). Default: workers of this call's own, stopped when it returns.
        report: Also write the JSON report to this file (checked with ``output`` before any
            work: see ``portkit.io.check_outputs``).
        speed_check: Time the shipped artifact (TFLite or ONNX) against the source's own
            runtime on this CPU; beyond 3x slower the report warns and names its slowest ops
            (``report.speed``). Default: only with ``optimize``.

    Returns:
        The report; ``report.exit_code`` says whether it converted and matched. Only an
        artifact that passed (or, with ``validate=False``, converted) is written to ``output``;
        one that converted but failed parity is kept beside it as ``NAME.failed.EXT``
        (``report.artifact`` says where, ``report.artifact_failed`` is True).

    Raises:
        PortkitError: Bad arguments or input file, or no route converted (exit code on it).
    """
    target = options.target(to)
    given = parse_inputs(inputs)
    convert_options = options.convert_options(
        target, signature=signature, trust_model=trust_model, quantize=quantize,
        calibration=calibration, int8_io=int8_io, no_flex=no_flex, opset=opset,
        allow_nonfinite=allow_nonfinite, keep_float=keep_float)
    goal = options.optimize_goal(optimize, route, validate)
    timed = slowness.wanted(speed_check, goal, target, validate)
    bound = options.constants(consts)
    tolerance = policies.policy(convert_options.quantize, atol=atol, rtol=rtol,
                               scale_tol=scale_tol, samples=samples, min_cosine=min_cosine,
                               min_top1=min_top1, min_top5=min_top5,
                               allow_nonfinite=allow_nonfinite)
    per_output = policies.output_kinds(tolerance, output_kinds)
    evaluation = options.evaluation(eval_data, eval_output, max_accuracy_drop,
                                    validate=validate, steps=steps,
                                    allow_nonfinite=allow_nonfinite)
    with contextlib.ExitStack() as stack:
        shapes = options.shapes(dims, static)
        if not isinstance(source, (str, Path)):
            source, shapes = sources.save_module(source, given, shapes, stack)
            given = []  # the .pt2 holds them, under forward's own argument names
        job = ConvertJob(
            source=Path(source), target=target,
            output=Path(output) if output is not None else None, inputs=tuple(given),
            inputs_file=Path(inputs_file) if inputs_file else None, route=route,
            validate=validate, seed=seed, tolerance=tolerance, per_output=per_output,
            options=convert_options, optimize=goal, constants=bound, steps=steps,
            state=parse_state(state), report=Path(report) if report is not None else None,
            evaluation=evaluation, shapes=shapes, speed_check=timed)
        return pipeline.convert(job, stack.enter_context(_context(workers, timeout, progress)))


def validate(
    artifact: str | Path,
    reference: str | Path,
    *,
    runtimes: Sequence[str] = (),
    inputs: Sequence[str | TensorSpec] = (),
    inputs_file: str | Path | None = None,
    atol: float | None = None,
    rtol: float | None = None,
    scale_tol: float | None = None,
    min_cosine: float | None = None,
    min_top1: float | None = None,
    min_top5: float | None = None,
    samples: int | None = None,
    per_output: Mapping[str, Tolerance] | None = None,
    output_kinds: Mapping[str, str] | Sequence[str] = (),
    seed: int = 0,
    timeout: float = worker.DEFAULT_TIMEOUT,
    signature: str | None = None,
    trust_model: bool = False,
    save_bundle: str | Path | None = None,
    consts: Mapping[str, Scalar] | Sequence[str] = (),
    steps: int = 1,
    state: Mapping[str, str] | Sequence[str] = (),
    dims: Sequence[str | Dim] = (),
    static: bool = False,
    allow_nonfinite: bool = False,
    eval_data: str | Path | None = None,
    eval_output: str | None = None,
    max_accuracy_drop: float | None = None,
    profile: bool = False,
    progress: Progress = no_progress,
    workers: worker.Pool | None = None,
) -> ValidateReport:
    """Run an artifact on every runtime and device that loads it and compare with a reference.

    Devices a runtime has elsewhere but not here (CUDA, a TensorFlow GPU) are reported as
    skipped, with the reason.

    Args:
        artifact: The converted model.
        reference: The model it was converted from (run as the reference).
        runtimes: Restrict to these runtime names (default: every runtime for the format).
        inputs: Input specs for shapes the reference doesn't store.
        inputs_file: An ``.npz`` of inputs (samples on an extra leading axis).
        atol, rtol, scale_tol, min_cosine, min_top1, min_top5, samples: Override the fp32
            policy's numbers (``atol`` or ``rtol`` alone: ``numpy.allclose``, no scale term).
        per_output: Tolerances for some outputs by reference output name.
        output_kinds: What some outputs hold, ``NAME=classifier|embedding|regression``.
        seed: Seed of generated inputs.
        timeout: Seconds each worker step may take.
        signature: SavedModel signature of the reference.
        trust_model: Let the reference run code on load (Keras Lambda layers).
        save_bundle: Also write a reproducibility bundle here (see ``replay``).
        consts: Inputs the artifact has bound to a constant (``["sr=16000"]``): the reference
            runs with these values, the artifact is fed the other inputs only.
        steps: Consecutive calls per sample for a stateful model: each call after the first
            is fed the state the previous returned (the artifact its own).
        state: ``["IN=OUT"]`` or ``{IN: OUT}``: output OUT is fed back as input IN (default:
            guessed by name and shape when ``steps`` > 1).
        dims: ``["N=1..32"]``: the sizes a dynamic dimension takes (named by an input spec
            like ``x:Nx3x224x224`` or by the model); default: the source's range, else 1..64.
        static: Fix every dimension at its example size (a fixed-shape artifact).
        allow_nonfinite: Let NaN/inf through in ``inputs_file`` (else refused), and compare
            non-finite outputs exactly (else an output holding any fails).
        eval_data, eval_output, max_accuracy_drop: Task accuracy on labelled samples, the
            reference's against the artifact's on its first runtime (see ``convert``).
        profile: Also time each op of the artifact on its first CPU runtime, with that
            runtime's profiler (``report.profile``, worst first; see ``bench``).
        progress: ``progress(message)`` context managers around each step.
        workers: Warm workers to run in, kept by the caller across calls (the reference's and
            one per runtime).

    Returns:
        The report; ``report.exit_code`` is 0 when every run matched.

    Raises:
        PortkitError: Bad arguments or model files.
    """
    tolerance = policies.policy(atol=atol, rtol=rtol, scale_tol=scale_tol, samples=samples,
                               min_cosine=min_cosine, min_top1=min_top1, min_top5=min_top5,
                               allow_nonfinite=allow_nonfinite)
    job = ValidateJob(
        artifact=Path(artifact), reference=Path(reference), inputs=tuple(parse_inputs(inputs)),
        inputs_file=Path(inputs_file) if inputs_file else None, tolerance=tolerance,
        per_output=policies.output_kinds(tolerance, output_kinds, per_output), seed=seed,
        load=LoadOptions(signature, trust_model),
        runtimes=tuple(runtimes),
        save_bundle=Path(save_bundle) if save_bundle is not None else None,
        constants=options.constants(consts), steps=steps, state=parse_state(state),
        shapes=options.shapes(dims, static),
        evaluation=options.evaluation(eval_data, eval_output, max_accuracy_drop, steps=steps,
                                      allow_nonfinite=allow_nonfinite))
    with _context(workers, timeout, progress) as ctx:
        report = checks.validate(job, ctx)
        if profile:
            report = dataclasses.replace(report, profile=profile_artifact(
                job.artifact, job.inputs, job.runtimes, ctx))
        return report


def replay(bundle_dir: str | Path, *, runtimes: Sequence[str] = (),
           timeout: float = worker.DEFAULT_TIMEOUT,
           progress: Progress = no_progress) -> ValidateReport:
    """Rerun a bundle's artifact on its stored inputs and compare with the stored reference
    outputs, under the stored tolerances (the reference model is not needed).

    Raises:
        PortkitError: Not a bundle, or its artifact can't be loaded.
    """
    with _context(None, timeout, progress) as ctx:
        return checks.replay(Path(bundle_dir), tuple(runtimes), ctx)


def debug(
    artifact: str | Path,
    reference: str | Path,
    *,
    inputs: Sequence[str | TensorSpec] = (),
    inputs_file: str | Path | None = None,
    overlay: str | Path | None = None,
    overlay_side: str = "artifact",
    hops: bool = False,
    route: str | None = None,
    atol: float | None = None,
    rtol: float | None = None,
    scale_tol: float | None = None,
    min_cosine: float | None = None,
    seed: int = 0,
    consts: Mapping[str, Scalar] | Sequence[str] = (),
    signature: str | None = None,
    trust_model: bool = False,
    timeout: float = worker.DEFAULT_TIMEOUT,
    progress: Progress = no_progress,
    workers: worker.Pool | None = None,
) -> DebugReport:
    """Find where an artifact first goes wrong against the model it was converted from.

    Both run once (the first seeded or given input) with every intermediate tensor exposed;
    the source's tensors are matched with the artifact's (names the converters kept, model
    outputs, then shape, layout and value) and walked in topological order: the first
    divergence is the first matched pair outside the policy whose matched inputs all agree.

    Args:
        artifact: The converted model.
        reference: The model it was converted from.
        inputs: Input specs for shapes the reference doesn't store.
        inputs_file: An ``.npz`` of inputs (its first sample is used).
        overlay: Also write per-node errors as Model Explorer node data to this file.
        overlay_side: The graph the overlay colours: ``artifact`` or ``source``.
        hops: Also rerun the route that made the artifact and debug each hop against the
            previous one (the hops' artifacts are kept in ``ARTIFACT.hops/``).
        route: With ``hops``: the route's name (default: the first ``convert`` tries).
        atol, rtol, scale_tol, min_cosine: Override the fp32 policy's numbers.
        seed: Seed of generated inputs.
        consts: Inputs the artifact has bound to a constant (``["sr=16000"]``).
        signature: SavedModel signature of the reference.
        trust_model: Let the reference run code on load (Keras Lambda layers).
        timeout: Seconds each worker step may take.
        progress: ``progress(message)`` context managers around each step.
        workers: Warm workers to run in, kept by the caller across calls.

    Returns:
        The report; ``report.exit_code`` is 0 when nothing diverges, 1 when something does.

    Raises:
        PortkitError: Bad arguments or model files, a runtime that can't expose intermediates
            (exit 2), or with ``hops`` a converter that failed (exit 3).
    """
    tolerance = policies.policy(atol=atol, rtol=rtol, scale_tol=scale_tol, samples=1,
                               min_cosine=min_cosine)
    check = ValidateJob(
        artifact=Path(artifact), reference=Path(reference), inputs=tuple(parse_inputs(inputs)),
        inputs_file=Path(inputs_file) if inputs_file else None, tolerance=tolerance, seed=seed,
        load=LoadOptions(signature, trust_model), constants=options.constants(consts))
    job = debug_run.DebugJob(check, Path(overlay) if overlay is not None else None,
                             overlay_side, hops, route)
    with _context(workers, timeout, progress) as ctx:
        return debug_run.debug(job, ctx)


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
        timeout: Seconds each measurement may take.
        progress: ``progress(message)`` context managers around each step.

    Returns:
        Rows per model and runtime, with p50 ratios against the first model's.

    Raises:
        PortkitError: A model can't be read, or no runtime loads it.
    """
    job = BenchJob(models=tuple(Path(m) for m in models), runtimes=tuple(runtimes),
                   inputs=tuple(parse_inputs(inputs)), threads=threads, batch=batch,
                   budget=budget, sizes=tuple(size_sets(parse_inputs(shapes))), profile=profile)
    with _context(None, timeout, progress) as ctx:
        return bench_models(job, ctx)


def inspect(path: str | Path, *, timeout: float = worker.DEFAULT_TIMEOUT,
            signature: str | None = None, trust_model: bool = False) -> Inspection:
    """Describe a model file: format, inputs, outputs and op counts (loaded in a worker); for a
    ``.tflite``, its mobile report (Flex ops, quantization, layout).

    Raises:
        UsageError: ``timeout`` is not a number of seconds above 0.
        PortkitError: The file is missing, unknown or cannot be loaded.
    """
    TIMEOUT.check(timeout)
    src = Path(path).absolute()
    fmt = sniff(src)
    refuse_unloadable(src, fmt)
    info: ModelInfo = worker.call(tasks.describe, timeout=timeout, what=str(src), path=str(src),
                                  fmt=fmt, options=LoadOptions(signature, trust_model))
    return Inspection(str(src), FileInfo.of(src, fmt.value).size_bytes, info)


@contextlib.contextmanager
def _context(workers: worker.Pool | None, timeout: float,
             progress: Progress) -> Iterator[RunContext]:
    """A run context on ``workers``, or on a pool of its own that is closed on exit."""
    with contextlib.ExitStack() as stack:
        pool = workers if workers is not None else stack.enter_context(worker.Pool())
        yield RunContext(pool, timeout, progress)
