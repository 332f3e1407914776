"""Which routes a conversion tries, and which artifact it ships: the routes planned over the
registry with the preparations the source needs first, the passing artifacts timed against
each other when optimizing, and the choice among the attempts."""

from __future__ import annotations

import dataclasses
from pathlib import Path

from portkit.convert import registry
from portkit.errors import WorkerError
from portkit.formats import Format
from portkit.options import ConvertJob
from portkit.results import Attempt, Latency
from portkit.runtimes import registry as runtimes
from portkit.runtimes import tasks
from portkit.runtimes.context import RunContext
from portkit.runtimes.tasks import Reference
from portkit.validators.latency import time_together


def plan(fmt: Format, job: ConvertJob, prepared: tuple[str, ...] = ()) -> list[registry.Route]:
    """The routes to try: the one named, every route and variant (optimizing), or every route
    with its edges' defaults; each starts with the preparations the source needs (``prepared``:
    ``onnx-upgrade``), which ``--route`` may name or leave out.

    Raises:
        UsageError: ``job.route`` names no planned route.
    """
    planned = registry.plan(fmt, job.target, quantize=job.options.quantize, variants=True)
    if job.route is not None or job.optimize:
        name = job.route
        for tool in prepared:
            name = name.removeprefix(f"{tool}+") if name else name
        chosen = registry.pick(planned, name)
    else:
        chosen = [r for r in planned if r.variant is None]
    return registry.prepare(chosen, list(prepared), fmt)


def preparations(src: Path, fmt: Format, job: ConvertJob, ctx: RunContext) -> tuple[str, ...]:
    """The preparations ``src`` needs (read in the worker its first hop will use; a test may
    resolve the inputs as that hop does, from ``--input`` and ``--dim``).

    Raises:
        InvalidModelError: A test failed on a file that can't be loaded (a zip member missing,
            a truncated file): the load's own error, as ``inspect`` gives it, not a bug.
    """
    if not registry.preparations(fmt):
        return ()
    worker = f"convert-from-{fmt.value}"
    try:
        return tuple(ctx.pool.call(worker, registry.needed, timeout=ctx.timeout, what=str(src),
                                   src=str(src), fmt=fmt, given=list(job.feed.inputs),
                                   shapes=job.feed.shapes, load=job.feed.load))
    except WorkerError:  # the tests open the file first: read it as every command does
        ctx.pool.call(worker, tasks.describe, timeout=ctx.timeout, what=str(src),
                      path=str(src), fmt=fmt, options=job.feed.load)
        raise


def choose(attempts: list[Attempt]) -> int | None:
    """The attempt to ship: the fastest that matched (when timed), else the first that matched,
    else the first that converted (its report says why it failed), else none."""
    passed = [i for i, a in enumerate(attempts) if a.passed]
    timed = [i for i in passed if attempts[i].latency is not None]
    if timed:
        return min(timed, key=lambda i: attempts[i].latency.p50_ms)  # type: ignore[union-attr]
    converted = [i for i, a in enumerate(attempts) if a.converted]
    return (passed or converted or [None])[0]


def time_routes(attempts: list[Attempt], produced: list[Path], target: Format, ref: Reference,
                 ctx: RunContext) -> list[Attempt]:
    """Time the artifacts that matched against each other on the target's first runtime (TFLite:
    one thread per core); each attempt gets its latency."""
    passed = [i for i, a in enumerate(attempts) if a.passed]
    if not passed:
        return attempts
    rt = runtimes.for_format(target)[0]
    with ctx.progress(f"Timing {len(passed)} matching artifact(s) on {rt.name}"):
        timings = time_together([produced[i] for i in passed], target, rt.name, ref,
                                channels_last=any(attempts[i].channels_last for i in passed),
                                timeout=ctx.timeout, pool=ctx.pool)
    timed = list(attempts)
    for i, latency in zip(passed, timings, strict=True):
        if isinstance(latency, Latency):
            timed[i] = dataclasses.replace(attempts[i], latency=latency)
    return timed


