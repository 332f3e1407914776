"""A conversion, composed: the source checked and made ready (``sources``), the routes planned
(``planner``) and run cheapest first, or all when optimizing (``conversion``), again with the
dimensions no route kept dynamic fixed (``dynamic.fallback``), the artifact to ship chosen,
judged on ``--eval`` and timed on ``--speed-check``, and moved into place (``job.report`` is
written by the caller: ``portkit.api.convert``, which may add where a failed artifact
diverges).

Every step that touches a model runs in one of the context's workers, each named for what it
runs, so a caller that keeps them warm across conversions (``portkit check``, a test session)
imports each framework once. The artifact is staged beside its target (``outputs``) and moved
into place only after the route that made it has finished, so an existing file is never
half-overwritten.
"""

from __future__ import annotations

import contextlib
import dataclasses
import time
from concurrent.futures import ThreadPoolExecutor

from portkit.convert import (
    constants,
    decoders,
    dynamic,
    outputs,
    planner,
    registry,
    representative,
    sources,
)
from portkit.convert.baseline import source_onnx
from portkit.convert.conversion import Tries
from portkit.errors import ConversionError, UsageError
from portkit.formats import Format, sniff
from portkit.io import atomic_replace, failed_path, staging_dir
from portkit.options import ConvertJob
from portkit.results import Attempt, ConvertReport, FileInfo, versions
from portkit.runtimes.context import RunContext
from portkit.safety import refuse_unloadable
from portkit.validators.accuracy import judge
from portkit.validators.slowness import check_speed


def convert(job: ConvertJob, ctx: RunContext) -> ConvertReport:
    """Convert ``job.source`` and prove the artifact matches it (see ``portkit.api.convert``).

    Args:
        job: What to convert, where to, and how to judge it.
        ctx: The workers everything runs in (the caller may keep them warm across calls), the
            timeout of each step, and progress.

    Returns:
        The report; ``report.exit_code`` says whether it converted and matched.

    Raises:
        PortkitError: Bad arguments or input file, or no route converted (exit code on it).
    """
    started = time.perf_counter()
    with contextlib.ExitStack() as stack:
        src = job.source.absolute()  # workers run in their own directories
        fmt = sniff(src)
        if fmt is Format.HUGGINGFACE:  # a language model: exported with its cache, generated
            return decoders.convert(job, ctx)
        if fmt is job.target:  # said before -o's default (the source itself) is refused
            raise UsageError(f"{src}: already {fmt.value}; pick another --to")
        trusted_pickle = fmt is Format.TORCH_PICKLE and job.feed.load.trust_model
        if not trusted_pickle:  # the input's own error outranks the outputs'
            refuse_unloadable(src, fmt)
        out = outputs.check_paths(job)  # before any worker runs
        job = representative.judged_on(job)
        shown = FileInfo(str(src), fmt.value)  # the user's file, even if exported first
        if trusted_pickle:
            src, fmt, left = sources.export_trusted_pickle(src, job, stack, ctx)
            # The .pt2 holds the shapes, under forward's own argument names.
            job = dataclasses.replace(job, feed=dataclasses.replace(job.feed, inputs=(),
                                                                    shapes=left))
            refuse_unloadable(src, fmt)
        if job.feed.constants:
            constants.check_format(src, fmt)
        if fmt is job.target:
            raise UsageError(f"{src}: already {fmt.value}; pick another --to")
        # An --opset no route writes is refused before any worker starts; routes that can't
        # write it are dropped, with the reason, once the preparations are known.
        registry.by_opset(registry.plan(fmt, job.target, quantize=job.options.quantize),
                          job.options.opset)
        preparations = planner.preparations(src, fmt, job, ctx)
        routes, dropped = registry.by_opset(planner.plan(fmt, job, preparations), job.options.opset)
        if not routes:
            what = f"{job.options.quantize.value}-quantized " if job.options.quantize else ""
            raise ConversionError(
                f"{src}: no converter goes from {fmt.value} to {what}{job.target.value} yet")
        stage = stack.enter_context(staging_dir(out.absolute()))
        tries = Tries(src, fmt, routes, stage, ctx, stack,
                       stack.enter_context(ThreadPoolExecutor(max_workers=1)))
        ref = tries.reference(job)
        prepared, preparation = src, None
        if job.feed.constants:  # the routes convert the source with its constants bound
            prepared, preparation = sources.bound_source(src, fmt, job, stack, ctx)
        conversion, attempts, produced = tries.run(job, prepared, ref, "route")
        reference = ref.get()  # its error (a bad input, an unsafe model) outranks the routes'
        converter_seconds = conversion.converter_seconds
        fixed = None  # dynamic dimensions no route kept, which the user did not ask for
        if (shapes := dynamic.fallback(job.feed.shapes, job.feed.inputs, reference.inputs,
                                       attempts, job.validate,
                                       job.options.seq_buckets)) is not None:
            fixed = dynamic.fixed_dims(reference.inputs, shapes.fixed, attempts, shapes.buckets)
            job = dataclasses.replace(job, feed=dataclasses.replace(job.feed, shapes=shapes))
            ref = tries.reference(job)
            conversion, more, made = tries.run(job, prepared, ref, "fixed")
            reference = ref.get()
            converter_seconds += conversion.converter_seconds
            attempts += [dataclasses.replace(a, fixed=shapes.fixed) for a in more]
            produced += made
        if job.optimize:
            attempts = planner.time_routes(attempts, produced, job.target, reference, ctx)
        chosen = planner.choose(attempts)
        accuracy = None  # --eval: the chosen artifact's task accuracy, which may fail it
        degenerate = None  # held-back --calibration samples without variation: judged again
        if chosen is not None:
            attempts[chosen], accuracy = judge(job, (src, fmt), reference, attempts[chosen],
                                               produced[chosen], ctx)
            attempts[chosen], degenerate = representative.judged_on_seeded(
                job, (src, fmt), reference, attempts[chosen], produced[chosen], stage, ctx)
        speed = None  # --speed-check: a passed artifact timed against the source's runtime
        if chosen is not None and job.speed_check and attempts[chosen].passed:
            speed = check_speed(produced[chosen], job.target, attempts[chosen].channels_last,
                                (src, fmt), reference,
                                source_onnx(conversion, fmt, job.target, stage / "baseline"),
                                job.feed.load, ctx)
        artifact, failed = None, False
        if chosen is not None:  # -o only ever receives an artifact that passed
            failed = job.validate and not attempts[chosen].passed
            shipped = failed_path(out) if failed else out
            atomic_replace(produced[chosen], shipped)
            artifact = FileInfo.of(shipped, job.target.value)
        best = attempts[chosen] if chosen is not None else None
        report = ConvertReport(
            passed=bool(best and best.passed),
            validated=job.validate,
            source=shown,
            target=job.target.value,
            artifact=artifact,
            route=best.hops if best else (),
            routes_tried=tuple(attempts) + tuple(
                Attempt(route=name, converted=False, passed=False, error=why)
                for name, why in dropped.items()),
            checks=best.checks if best else (),
            inputs=reference.inputs,
            tolerance=job.judgement.tolerance,
            seed=job.feed.seed,
            seconds=time.perf_counter() - started,
            versions=versions(),
            quantize=job.options.quantize,
            mobile=best.mobile if best else None,
            optimize=job.optimize,
            converter_seconds=converter_seconds + (preparation.seconds if preparation else 0.0),
            route_name=best.route if best else None,
            reference_runtime=reference.runtime,
            constants=dict(job.feed.constants),
            steps=reference.steps,
            state=dict(reference.state),
            preparation=preparation,
            artifact_failed=failed,
            inputs_from=representative.described(job, reference),
            accuracy=accuracy,
            speed=speed,
            fixed=fixed if best is not None and best.fixed else None,
            notes=reference.notes,
            degenerate=degenerate,
        )
    return report
