"""Checks: an artifact run on every device of each runtime that loads it, each run compared with
the reference; ``validate`` and ``replay`` built on them; and ``why_failed``, the one place a
failed check is put in words (convert's routes, the terminal, Markdown and JUnit all use it).
"""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from portkit.errors import InvalidModelError, PortkitError, UsageError
from portkit.formats import Format, sniff
from portkit.formats.hf import check_trust, read_hf
from portkit.formats.tflite import bucket_axes, signatures
from portkit.io import Folder, Output, check_outputs
from portkit.options import Feed, ValidateJob, feeding
from portkit.policies import Tolerance, generation_policy
from portkit.results import Check, FileInfo, OutputParity, ValidateReport, versions
from portkit.runtimes import registry, tasks
from portkit.runtimes.base import Runtime
from portkit.runtimes.binding import pair_by_name
from portkit.runtimes.context import RunContext
from portkit.runtimes.tasks import Reference
from portkit.safety import refuse_unloadable
from portkit.shapes import resolve_inputs
from portkit.validators import accuracy as eval_
from portkit.validators import bundle
from portkit.validators.generation import generation_check, quantization
from portkit.validators.parity import compare_outputs
from portkit.validators.reference import reference_worker, run_reference

# Each runtime/device's raw outputs, by ``runtime-device`` (what a bundle keeps).
Outputs = dict[str, tuple[dict[str, np.ndarray], ...]]


@dataclass(frozen=True)
class Expected:
    """What an artifact is held to: the reference's outputs and the parity policy.

    Attributes:
        reference: The source's inputs and outputs.
        tolerance: The policy for every output.
        per_output: Policies for some outputs, by reference output name.
    """

    reference: Reference
    tolerance: Tolerance
    per_output: Mapping[str, Tolerance] = field(default_factory=dict)


def check_runtime(artifact: Path, fmt: Format, runtime: Runtime, expected: Expected,
                  ctx: RunContext, *, channels_last: bool = False,
                  refuse_feed: bool = False) -> tuple[list[Check], Outputs]:
    """Run the artifact on every device of one runtime (in its warm worker) and compare each run.

    Args:
        artifact: The artifact.
        fmt: Its format.
        runtime: The runtime to run it on.
        expected: The reference and policy.
        ctx: Workers, timeout and progress.
        channels_last: Map channels-first reference inputs to channels-last where both fit.
        refuse_feed: Raise the ``UsageError`` of an artifact that refuses the feed (a size past
            an ExecuTorch program's bound) rather than fail the check: the user chose the feed
            (validate, replay), where convert was trying a route.

    Returns:
        One check per device, and each device's raw outputs.

    Raises:
        UsageError: With ``refuse_feed``, the artifact refused the feed.
    """
    ref = expected.reference
    try:
        with ctx.progress(f"Running the artifact on {runtime.name}"):
            runs = ctx.pool.call(
                runtime.name, tasks.run_artifact_everywhere, timeout=ctx.timeout,
                what=f"{artifact.name} on {runtime.name}", path=str(artifact),
                fmt=fmt, runtime=runtime.name, feeds=ref.feeds, specs=list(ref.inputs),
                prefer_channels_last=channels_last, steps=ref.steps, state=dict(ref.state),
                output_names=list(ref.outputs[0]),
            )
    except PortkitError as e:
        if refuse_feed and isinstance(e, UsageError):
            raise
        return [Check(runtime=runtime.name, device="cpu", passed=False, error=str(e))], {}
    checks, outputs = [], {}
    for device, run in runs:
        if isinstance(run, str):
            checks.append(Check(runtime=runtime.name, device=device, passed=False, error=run))
            continue
        outputs[f"{runtime.name}-{device}"] = run.outputs
        notes = tuple(f"{b.source}: {b.layout_note}" for b in run.bindings if b.layout_note)
        for size, part in ref.by_size():  # a dynamic model: each size judged on its own
            rows = tuple(compare_outputs(ref.outputs[part], run.outputs[part],
                                         expected.tolerance, expected.per_output, ref.hints))
            checks.append(Check(runtime=runtime.name, device=device,
                                passed=all(r.passed for r in rows), outputs=rows,
                                input_layouts=notes, seconds=run.seconds, size=size))
    return checks, outputs


def check_everywhere(artifact: Path, fmt: Format, runtimes: Sequence[Runtime],
                     expected: Expected, ctx: RunContext) -> tuple[list[Check], Outputs]:
    """``check_runtime`` on each runtime; devices a runtime has elsewhere but not here (CUDA, a
    GPU) are skipped rows that say why."""
    checks: list[Check] = []
    outputs: Outputs = {}
    channels_last = layout_changed(expected.reference, fmt)
    for rt in runtimes:
        found, raw = check_runtime(artifact, fmt, rt, expected, ctx, channels_last=channels_last,
                                   refuse_feed=True)
        here = {c.device for c in found}
        checks += found + [Check(runtime=rt.name, device=d, passed=False,
                                 skipped=rt.unavailable(d))
                           for d in rt.all_devices if d not in here]
        outputs.update(raw)
    return checks, outputs


def layout_changed(ref: Reference, fmt: Format) -> bool:
    """Whether an artifact of this format likely went channels-last (TFLite/SavedModel)."""
    return fmt in (Format.TFLITE, Format.SAVEDMODEL) and any(
        len(s.shape or ()) == 4 and (s.shape or (0, 0))[1] in (1, 3, 4) for s in ref.inputs)


def validate(job: ValidateJob, ctx: RunContext) -> ValidateReport:
    """Run the reference, then the artifact on every runtime and device that loads it, and
    compare; write a bundle if asked.

    Raises:
        PortkitError: Bad arguments or model files.
    """
    started = time.perf_counter()
    art, src = job.artifact.absolute(), job.reference.absolute()
    art_fmt, src_fmt = sniff(art), sniff(src)
    if src_fmt is Format.HUGGINGFACE:
        return validate_generation(job, art, art_fmt, src, started, ctx)
    for path, fmt in ((art, art_fmt), (src, src_fmt)):
        refuse_unloadable(path, fmt)
    feed, judged = job.feed, job.judgement
    check_outputs([Output("--save-bundle", job.save_bundle, Folder.REPLACED)],
                  [job.artifact, job.reference, feed.file,
                   judged.evaluation.file if judged.evaluation else None])
    feed = at_buckets(feed, (art, art_fmt), (src, src_fmt), ctx)
    chosen = registry.named(art_fmt, job.runtimes)
    with ctx.progress(f"Running {src.name} as the reference"):
        ref = run_reference(src, src_fmt, feed, ctx)
    checks, outputs = check_everywhere(art, art_fmt, chosen,
                                       Expected(ref, judged.tolerance, judged.per_output), ctx)
    refuse_unloaded(art, art_fmt, checks, chosen, ctx)
    accuracy = None
    if judged.evaluation is not None and eval_.ran(checks, chosen[0]):
        # On the first runtime, as convert does, if it ran there.
        accuracy = eval_.measure(feed, judged.evaluation, (src, src_fmt), (art, art_fmt), ref,
                                 ctx, runtime=chosen[0],
                                 channels_last=layout_changed(ref, art_fmt))
    report = ValidateReport(
        passed=all_passed(checks) and (accuracy is None or accuracy.passed),
        reference=FileInfo.of(src, src_fmt.value), artifact=FileInfo.of(art, art_fmt.value),
        checks=tuple(checks), inputs=ref.inputs, tolerance=judged.tolerance,
        per_output=dict(judged.per_output), seed=feed.seed,
        seconds=time.perf_counter() - started, versions=versions(),
        reference_runtime=ref.runtime, constants=dict(feed.constants), steps=ref.steps,
        state=dict(ref.state), accuracy=accuracy, notes=ref.notes,
    )
    if job.save_bundle is not None:
        bundle.save(job.save_bundle, report, ref, outputs, art)
    return report


def at_buckets(feed: Feed, artifact: tuple[Path, Format], source: tuple[Path, Format],
               ctx: RunContext) -> Feed:
    """``feed`` for an artifact of one signature per length (``--seq-buckets``): each bucket
    validated at its length, whatever sizes the source's range gives (``feeding.bucketed``).
    The bucketed dimension is the source's at the input and axis whose size differs between
    the signatures (``formats.tflite.bucket_axes``; the source's inputs as its reference
    worker describes them). ``feed`` unchanged for any other artifact, with ``--static``, or where
    the signatures differ along more than one of the source's dimensions.

    Raises:
        UsageError: ``--input`` or ``--inputs`` forces a length that no bucket holds.
    """
    (art, art_fmt), (src, src_fmt) = artifact, source
    if art_fmt is not Format.TFLITE or feed.shapes.static or feed.shapes.buckets:
        return feed
    try:
        found = signatures(art)
    except InvalidModelError:  # the artifact's run says what is wrong with it
        return feed
    axes = bucket_axes(found)
    if not axes:
        return feed
    info = ctx.pool.call(reference_worker(src_fmt), tasks.describe, timeout=ctx.timeout,
                         what=str(src), path=str(src), fmt=src_fmt, options=feed.load)
    specs = {s.name: s for s in resolve_inputs(
        src.name, [s for s in info.inputs if s.name not in feed.constants], list(feed.inputs),
        shapes=feed.shapes)}
    names = dict((a, s) for s, a in pair_by_name(list(specs), [t.name for t in found[0].inputs]))
    dims = {(specs[names[name]].dims or (None,) * (axis + 1))[axis]: (names[name], axis, sizes)
            for name, axis, sizes in axes}
    if len(dims) != 1 or None in dims:
        return feed
    ((dim, (_name, _axis, sizes)),) = dims.items()
    return feeding.bucketed(feed, list(specs.values()), dim.name, sizes, art.name)


def replay(folder: Path, runtimes: Sequence[str], ctx: RunContext) -> ValidateReport:
    """Rerun a bundle's artifact on its stored inputs and compare with the stored reference
    outputs, under the stored tolerances (the reference model is not needed).

    Raises:
        PortkitError: Not a bundle, or its artifact can't be loaded.
    """
    started = time.perf_counter()
    art, fmt, ref, tol, per_output, manifest = bundle.load(folder)
    found = sniff(art)
    if found is not fmt:
        raise InvalidModelError(
            f"{folder / bundle.MANIFEST}: says the artifact {art.name} is {fmt.value}, but it "
            f"is {found.value}; set \"format\" to \"{found.value}\", or save the bundle again "
            "with --save-bundle")
    chosen = registry.named(fmt, runtimes)
    checks, _ = check_everywhere(art, fmt, chosen, Expected(ref, tol, per_output), ctx)
    refuse_unloaded(art, fmt, checks, chosen, ctx)
    return ValidateReport(
        passed=all_passed(checks),
        reference=FileInfo(**manifest["reference"]), artifact=FileInfo.of(art, fmt.value),
        checks=tuple(checks), inputs=ref.inputs, tolerance=tol, per_output=per_output,
        seed=int(manifest["seed"]), seconds=time.perf_counter() - started, versions=versions(),
        reference_runtime=ref.runtime,
        constants=dict(manifest.get("constants", {})), steps=ref.steps, state=dict(ref.state),
    )


def refuse_unloaded(artifact: Path, fmt: Format, checks: Sequence[Check],
                    runtimes: Sequence[Runtime], ctx: RunContext) -> None:
    """When the artifact ran nowhere, read it as ``inspect`` does: a file that no runtime
    loads is bad input (exit 2, the load's own error), not a parity verdict. One that loads
    but failed every run (crashed, a fixed shape refusing its inputs) keeps its failed checks;
    a feed past an ExecuTorch program's bound was refused before (``check_runtime``).

    Raises:
        InvalidModelError: The artifact can't be loaded or parsed.
    """
    ran = [c for c in checks if not c.skipped]
    if not runtimes or not ran or any(c.outputs or not c.error for c in ran):
        return
    ctx.pool.call(runtimes[0].name, tasks.describe, timeout=ctx.timeout, what=str(artifact),
                  path=str(artifact), fmt=fmt)


def all_passed(checks: Sequence[Check]) -> bool:
    """Whether something ran and every check that ran passed."""
    ran = [c for c in checks if not c.skipped]
    return bool(ran) and all(c.passed for c in ran)


def why_failed(check: Check, *, every_output: bool = False, quote: str = "") -> list[str]:
    """Why a check failed, a line per failing output (only the worst unless ``every_output``):
    the error, and the tolerance that would have passed.

    Args:
        check: A check that did not pass (a skipped one gives no line).
        every_output: A line for every failing output, not only the one with the largest error.
        quote: Put around output names (a backtick for Markdown).
    """
    where = check.where
    if check.skipped:
        return []
    if check.error:
        return [f"{where}: {check.error}"]
    failed = sorted((o for o in check.outputs if not o.passed), key=lambda o: -o.max_abs_err)
    lines = []
    for o in failed if every_output else failed[:1]:
        name = f"{quote}{o.name}{quote}"
        if o.error:
            lines.append(f"{where}: output {name}: {o.error}")
            continue
        if o.nonfinite:
            hint = "" if "differ" in o.nonfinite else (
                " (pass --allow-nonfinite to require them to match exactly)")
            lines.append(f"{where}: output {name}: {o.nonfinite}{hint}")
            continue
        err = f"max abs err {o.max_abs_err:.3g}"
        judged = "max abs err" in o.failed  # else the policy doesn't judge elements (quantized)
        if o.scale > 0:
            err += f" = {o.scaled_err:.2g} of its scale {o.scale:.3g}" + (
                f" (would pass with --scale-tol {o.min_scale_tol_to_pass:.2g} or --atol "
                f"{o.min_atol_to_pass:.3g})" if judged else "")
        elif judged:
            err += f" (would pass with --atol {o.min_atol_to_pass:.3g})"
        found = [err]
        if "cosine" in o.failed:
            found.append(f"cosine {o.cosine:.4f}")
        topk = [f"{k} agreement {share:.0%}" for k, share in (("top-1", o.top1), ("top-5", o.top5))
                if k in o.failed]
        if topk:
            close = f", though its cosine {o.cosine:.4f} passes" if _ranking_only(o) else ""
            hint = (f" (judged as a classifier: {o.kind_why}{close}; if it holds no class "
                    f"scores, --output-kind {o.name}=embedding)")
            found += [*topk[:-1], topk[-1] + hint]
        lines.append(f"{where}: output {name} " + ", ".join(found))
    return lines


def ranking_only(checks: Sequence[Check]) -> bool:
    """Whether the checks failed only on the class ranking of outputs whose kind was guessed
    (top-1/top-5 below the policy, every other criterion met, cosine included): the values
    match, and another route would be judged the same way (``convert`` stops there)."""
    failed = [c for c in checks if not c.passed and not c.skipped]
    return bool(failed) and all(
        not c.error and all(o.passed or _ranking_only(o) for o in c.outputs) for c in failed)


def _ranking_only(o: OutputParity) -> bool:
    """Whether an output failed on top-1/top-5 alone, and its kind was guessed."""
    return bool(o.failed) and set(o.failed) <= {"top-1", "top-5"} and not o.error \
        and o.kind_why != "set by the user"


def validate_generation(job: ValidateJob, art: Path, art_fmt: Format, src: Path, started: float,
                        ctx: RunContext) -> ValidateReport:
    """A language model's artifact against its source directory: each generates from the same
    prompt, the artifact fed its own cache (``validators.generation``).

    Raises:
        PortkitError: Bad arguments, directory or artifact.
    """
    unused = [flag for flag, given in (("--save-bundle", job.save_bundle),
                                       ("--eval", job.judgement.evaluation)) if given]
    if unused:
        verb = "doesn't" if len(unused) == 1 else "don't"
        raise UsageError(f"{src}: {' and '.join(unused)} {verb} apply to a language model, "
                         "which is validated by generating (prefill and greedy steps, each side "
                         "on its own cache); drop them")
    model = read_hf(src, task=job.generation.task)
    check_trust(model, job.export.trust_model)
    refuse_unloadable(art, art_fmt)
    # validate has no --quantize: the artifact's precision is read from the file
    policy = generation_policy(job.judgement.tolerance, quantization(art, art_fmt))
    check = generation_check(src, model, art, art_fmt, job.generation, job.export, policy,
                             job.feed, ctx)
    return ValidateReport(
        passed=check.passed, reference=FileInfo(str(src), Format.HUGGINGFACE.value),
        artifact=FileInfo.of(art, art_fmt.value), checks=(), inputs=(),
        tolerance=policy, per_output={}, seed=job.feed.seed,
        seconds=time.perf_counter() - started, versions=versions(),
        reference_runtime="transformers", generation=check)
