"""``portkit.convert``: convert a model and prove the artifact matches its source."""

from __future__ import annotations

import contextlib
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from portkit import options, policies
from portkit.api.context import run_context
from portkit.convert import pipeline, sources
from portkit.options import ConvertJob, Scalar
from portkit.results import ConvertReport
from portkit.runtimes import worker
from portkit.runtimes.context import Progress, no_progress
from portkit.runtimes.steps import parse_state
from portkit.specs import Dim, TensorSpec, parse_inputs
from portkit.validators import slowness


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
        return pipeline.convert(job, stack.enter_context(run_context(workers, timeout, progress)))


