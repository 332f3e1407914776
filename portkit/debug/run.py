"""``portkit debug`` composed: run the reference, trace the source and the artifact in their
workers, match their tensors, walk to the first divergence, and report (with ``--hops``, each
hop of the route that made the artifact, against the previous one).
"""

from __future__ import annotations

import resource
import time
from dataclasses import dataclass
from pathlib import Path

from portkit.debug import hops as hops_
from portkit.debug.divergence import walk
from portkit.debug.match import match
from portkit.debug.report import DebugReport
from portkit.errors import UsageError
from portkit.formats import Format, sniff
from portkit.io import Folder, Output, check_outputs, owned_tempdir
from portkit.options import ValidateJob
from portkit.results import FileInfo
from portkit.runtimes import tasks
from portkit.runtimes.context import RunContext
from portkit.runtimes.tasks import Reference
from portkit.runtimes.worker import task
from portkit.safety import refuse_unloadable
from portkit.traces import Trace
from portkit.validators.checks import layout_changed
from portkit.validators.reference import reference_worker, run_reference


@dataclass(frozen=True)
class DebugJob:
    """One ``portkit debug``.

    Attributes:
        check: The artifact, its source, the inputs, the policy and how the source loads (a
            validate job: the reference runs as ``validate`` runs it, on one sample).
        overlay: Write per-node errors as Model Explorer node data here.
        side: The graph the overlay colours: ``artifact`` or ``source``.
        hops: Also debug each hop of the route that made the artifact.
        route: With ``hops``: the route's name (default: the first ``portkit convert`` tries).
    """

    check: ValidateJob
    overlay: Path | None = None
    side: str = "artifact"
    hops: bool = False
    route: str | None = None


@task
def peak_rss_mb() -> float:
    """The calling worker's peak resident memory so far (MB; Linux reports KiB)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def debug(job: DebugJob, ctx: RunContext) -> DebugReport:
    """Find where the artifact first goes wrong against its source.

    Raises:
        UsageError: Bad flags, or a runtime that can't expose intermediates.
        PortkitError: Bad model or input files (exit code on it).
    """
    started = time.perf_counter()
    art, src = job.check.artifact.absolute(), job.check.reference.absolute()
    art_fmt, src_fmt = sniff(art), sniff(src)
    for path, fmt in ((art, art_fmt), (src, src_fmt)):
        refuse_unloadable(path, fmt)
    if job.side not in ("artifact", "source"):
        raise UsageError(f"--overlay-side {job.side}: one of artifact, source")
    check_outputs([Output("--overlay", job.overlay),
                   Output("--hops", hops_.hops_folder(art) if job.hops else None, Folder.HOPS)],
                  [job.check.artifact, job.check.reference, job.check.feed.file])
    with ctx.progress(f"Running {src.name} as the reference"):
        ref = run_reference(src, src_fmt, job.check.feed, ctx)
    hop_reports: tuple[DebugReport, ...] = ()
    if job.hops:
        hop_reports = tuple(hops_.debug_hops(job, src, src_fmt, art_fmt, ref, ctx, compare))
    report = compare(job, src, src_fmt, art, art_fmt, ref, ctx, started, hop_reports)
    if job.overlay is not None:
        from portkit.debug.overlay import write_overlay

        write_overlay(report, job.side, job.overlay)  # type: ignore[arg-type]
    return report


def compare(job: DebugJob, src: Path, src_fmt: Format, art: Path, art_fmt: Format,
            ref: Reference, ctx: RunContext, started: float,
            hops: tuple[DebugReport, ...] = ()) -> DebugReport:
    """Trace ``src`` and ``art`` on the reference's first sample, match and walk.

    Args:
        job: The job (policy, load options).
        src, src_fmt: The model run as the source.
        art, art_fmt: The model debugged against it.
        ref: The reference run (its inputs, by the source's names and layout).
        ctx: Workers, timeout and progress.
        started: When the whole command started (``time.perf_counter``).
        hops: Reports of the route's hops, with ``--hops``.
    """
    with owned_tempdir("debug") as folder:
        with ctx.progress(f"Tracing {src.name} ({src_fmt.value})"):
            source = _trace(src, src_fmt, reference_worker(src_fmt), ref, folder / "source",
                            job, ctx)
        with ctx.progress(f"Tracing {art.name} ({art_fmt.value})"):
            artifact = _trace(art, art_fmt, f"trace-{art_fmt.value}", ref, folder / "artifact",
                              job, ctx, layout_changed(ref, art_fmt))
        with ctx.progress(f"Matching {len(source.tensors)} source tensors with "
                          f"{len(artifact.tensors)} artifact tensors"):
            pairs = match(source, artifact)
            nodes, first = walk(source, artifact, pairs, job.check.judgement.tolerance)
    peak = sum(ctx.pool.call(name, peak_rss_mb, timeout=ctx.timeout, what="peak memory")
               for name in {reference_worker(src_fmt), f"trace-{art_fmt.value}"})
    used = {p.artifact for p in pairs.values()}
    return DebugReport(
        source=FileInfo.of(src, src_fmt.value), artifact=FileInfo.of(art, art_fmt.value),
        tolerance=job.check.judgement.tolerance, first_divergence=first, matched=len(pairs),
        unmatched_source=len(source.tensors) - len(pairs),
        unmatched_artifact=sum(t.name not in used for t in artifact.tensors),
        nodes=tuple(nodes), seconds=time.perf_counter() - started, peak_rss_mb=peak, hops=hops)


def _trace(path: Path, fmt: Format, worker: str, ref: Reference, folder: Path, job: DebugJob,
           ctx: RunContext, channels_last: bool = False) -> Trace:
    """One model traced in the worker called ``worker``, on the reference's first sample."""
    folder.mkdir(parents=True, exist_ok=True)
    return ctx.pool.call(
        worker, tasks.trace, timeout=ctx.timeout, what=f"tracing {path.name}", path=str(path),
        fmt=fmt, feeds=ref.feeds[0], folder=str(folder), prefer_channels_last=channels_last,
        options=job.check.feed.load, constants=list(ref.constants))
