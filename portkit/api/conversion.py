"""``portkit.convert``: convert a model and prove the artifact matches its source."""

from __future__ import annotations

import contextlib
import dataclasses
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from portkit import options
from portkit.api.context import run_context
from portkit.convert import pipeline, sources
from portkit.debug import locate
from portkit.errors import PortkitError
from portkit.formats import Format, sniff
from portkit.options import ConvertJob, Scalar
from portkit.results import ConvertReport
from portkit.runtimes import worker
from portkit.runtimes.context import Progress, no_progress
from portkit.specs import Dim, TensorSpec
from portkit.validators import slowness


def convert(
    source: str | Path | Any,
    to: str,
    output: str | Path | None = None,
    *,
    inputs: Sequence[str | TensorSpec] = (),
    inputs_file: str | Path | None = None,
    route: str | None = None,
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
    seq_buckets: str | Sequence[int] | None = None,
    no_flex: bool = False,
    opset: int | None = None,
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
    find_divergence: bool = True,
    generate: int | None = None,
    prompt: str | None = None,
    max_seq: int | None = None,
    prefill: str | Sequence[int] | None = None,
    task: str | None = None,
    **numbers: float | None,
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
        output_kinds: What some outputs hold, ``NAME=classifier|embedding|regression`` (or a
            mapping): top-k agreement judges classifiers only (default: guessed, see
            ``validators.parity.guess_kind``).
        validate: Run and compare the artifact (the default); False only converts.
        seed: Seed for generated inputs.
        timeout: Seconds each worker step (load, convert, run) may take, and the export of a
            ``torch.nn.Module`` source (in a child process of its own).
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
        seq_buckets: Where no route keeps a sequence dimension dynamic in TFLite, one
            signature per length, each validated: ``"16,64,128"`` (or a list), or ``"auto"``
            (the top of the sequence's range and its halvings, at most 4). Off by default:
            the sequence is fixed at its example size.
        no_flex: Fail rather than write a TFLite model that needs the Flex runtime.
        opset: ONNX opset for the converters that take one (default: their newest).
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
        find_divergence: After a parity failure, look for where the artifact first goes wrong
            (``report.where``: ``portkit debug``'s first divergence on the first input, when
            both models are small, float and called once per sample; else the command that
            looks).
        generate: A language model (a Hugging Face causal-LM directory): greedy tokens each
            side generates after the prompt, the artifact fed its own cache (default 16).
        prompt: Its prompt as text, through the directory's tokenizer (default:
            ``inputs_file``'s ``input_ids``, else 8 ids seeded by ``seed``).
        max_seq: Positions the artifact's cache holds (default 256).
        prefill: Prompt lengths to export prefill signatures for, ``"32,128"`` (default 32).
        task: ``text-generation`` when the directory's config doesn't say ``*ForCausalLM``.
        **numbers: The parity policy's numbers over the precision's default
            (``policies.POLICIES``), by the keywords ``policies.Numbers`` declares:
            ``scale_tol=1e-3``, ``samples=64``, ``min_cosine=0.99``... (``atol`` or ``rtol``
            alone: ``numpy.allclose``, no scale term).

    Returns:
        The report; ``report.exit_code`` says whether it converted and matched. Only an
        artifact that passed (or, with ``validate=False``, converted) is written to ``output``;
        one that converted but failed parity is kept beside it as ``NAME.failed.EXT``
        (``report.artifact`` says where, ``report.artifact_failed`` is True).

    Raises:
        PortkitError: Bad arguments or input file, or no route converted (exit code on it).
    """
    target = options.target(to)
    # A language model's --quantize is its exporter's (weights only, Export), not the
    # float-model quantizers' that --quantize checks for other sources.
    decoder = _language_model(source)
    feed = options.feed(inputs=inputs, inputs_file=inputs_file, seed=seed, consts=consts,
                        steps=steps, state=state, dims=dims, static=static, signature=signature,
                        trust_model=trust_model, allow_nonfinite=allow_nonfinite)
    convert_options = options.convert_options(
        target, signature=signature, trust_model=trust_model,
        quantize=None if decoder else quantize, calibration=calibration, int8_io=int8_io,
        no_flex=no_flex, opset=opset, allow_nonfinite=allow_nonfinite, keep_float=keep_float,
        seq_buckets=seq_buckets)
    goal = options.optimize_goal(optimize, route, validate)
    timed = slowness.wanted(speed_check, goal, target, validate)
    judgement = options.judgement(
        convert_options.quantize, output_kinds=output_kinds, eval_data=eval_data,
        eval_output=eval_output, max_accuracy_drop=max_accuracy_drop, validate=validate,
        steps=steps, allow_nonfinite=allow_nonfinite, **numbers)
    with contextlib.ExitStack() as stack:
        if not isinstance(source, (str, os.PathLike)):
            source, shapes = sources.save_module(source, list(feed.inputs), feed.shapes, stack,
                                                 timeout)
            # The .pt2 holds the shapes, under forward's own argument names.
            feed = dataclasses.replace(feed, inputs=(), shapes=shapes)
        job = ConvertJob(
            source=Path(source), target=target,
            output=Path(output) if output is not None else None, route=route,
            validate=validate, options=convert_options, optimize=goal,
            report=Path(report) if report is not None else None, speed_check=timed,
            feed=feed, judgement=judgement,
            generation=options.generating(generate, prompt, task),
            export=options.exporting(max_seq, prefill, trust_model,
                                     quantize if decoder else None))
        ctx = stack.enter_context(run_context(workers, timeout, progress))
        done = pipeline.convert(job, ctx)
        if find_divergence and done.artifact is not None and locate.diverged(done):
            done = dataclasses.replace(done, where=locate.locate(
                Path(done.artifact.path), job.source, feed, ctx,
                quantized=convert_options.quantize is not None))
    if job.report is not None:
        done.write_json(job.report)
    return done


def _language_model(source: Any) -> bool:
    """Whether ``source`` is a Hugging Face model directory (``Format.HUGGINGFACE``)."""
    if not isinstance(source, (str, os.PathLike)) or not Path(source).is_dir():
        return False
    with contextlib.suppress(PortkitError):
        return sniff(Path(source)) is Format.HUGGINGFACE
    return False
