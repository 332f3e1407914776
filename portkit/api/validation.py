"""``portkit.api.validate`` and ``replay``: an artifact checked against its source, or against a
saved bundle of the source's outputs."""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence
from pathlib import Path

from portkit import options
from portkit.api.context import run_context
from portkit.debug import locate
from portkit.options import Scalar, ValidateJob
from portkit.policies import Tolerance
from portkit.results import ValidateReport
from portkit.runtimes import worker
from portkit.runtimes.context import Progress, no_progress
from portkit.specs import Dim, TensorSpec
from portkit.validators import checks
from portkit.validators.latency import profile_artifact


def validate(
    artifact: str | Path,
    reference: str | Path,
    *,
    runtimes: Sequence[str] = (),
    inputs: Sequence[str | TensorSpec] = (),
    inputs_file: str | Path | None = None,
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
    find_divergence: bool = True,
    generate: int | None = None,
    prompt: str | None = None,
    max_seq: int | None = None,
    task: str | None = None,
    **numbers: float | None,
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
        find_divergence: After a parity failure, look for where the artifact first goes wrong
            (``report.where``; see ``convert``).
        generate, prompt, max_seq, task: A language model (``reference`` a Hugging Face
            causal-LM directory): both generate ``generate`` tokens (default 16) after the
            prompt, the artifact fed its own cache, and are compared step by step
            (``report.generation``; see ``convert``).
        **numbers: The parity policy's numbers over the fp32 default, by the keywords
            ``policies.Numbers`` declares (see ``convert``).

    Returns:
        The report; ``report.exit_code`` is 0 when every run matched.

    Raises:
        PortkitError: Bad arguments or model files.
    """
    judgement = options.judgement(
        output_kinds=output_kinds, per_output=per_output, eval_data=eval_data,
        eval_output=eval_output, max_accuracy_drop=max_accuracy_drop, steps=steps,
        allow_nonfinite=allow_nonfinite, **numbers)
    job = ValidateJob(
        artifact=Path(artifact), reference=Path(reference), runtimes=tuple(runtimes),
        save_bundle=Path(save_bundle) if save_bundle is not None else None,
        feed=options.feed(inputs=inputs, inputs_file=inputs_file, seed=seed, consts=consts,
                          steps=steps, state=state, dims=dims, static=static,
                          signature=signature, trust_model=trust_model,
                          allow_nonfinite=allow_nonfinite),
        judgement=judgement, generation=options.generating(generate, prompt, task),
        export=options.exporting(max_seq, None, trust_model))
    with run_context(workers, timeout, progress) as ctx:
        report = checks.validate(job, ctx)
        if profile:
            report = dataclasses.replace(report, profile=profile_artifact(
                job.artifact, job.feed.inputs, job.runtimes, ctx))
        if find_divergence and locate.diverged(report):
            report = dataclasses.replace(report, where=locate.locate(
                job.artifact, job.reference, job.feed, ctx))
        return report


def replay(bundle_dir: str | Path, *, runtimes: Sequence[str] = (),
           timeout: float = worker.DEFAULT_TIMEOUT,
           progress: Progress = no_progress) -> ValidateReport:
    """Rerun a bundle's artifact on its stored inputs and compare with the stored reference
    outputs, under the stored tolerances (the reference model is not needed).

    Raises:
        PortkitError: Not a bundle, or its artifact can't be loaded.
    """
    with run_context(None, timeout, progress) as ctx:
        return checks.replay(Path(bundle_dir), tuple(runtimes), ctx)


