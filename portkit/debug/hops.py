"""``portkit debug --hops``: rerun the route that made the artifact, keep each hop's artifact,
and debug each hop against the one before it (PyTorch -> ONNX, then ONNX -> TFLite), so the
user learns which converter broke it.
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

from portkit.convert import planner
from portkit.convert.conversion import run_hop
from portkit.debug.report import DebugReport
from portkit.errors import ConversionError
from portkit.formats import Format
from portkit.io import atomic_replace, staging_dir
from portkit.options import ConvertJob, ConvertOptions
from portkit.results import FileInfo
from portkit.runtimes.context import RunContext
from portkit.runtimes.tasks import Reference

if TYPE_CHECKING:
    from portkit.debug.run import DebugJob


def hops_folder(artifact: Path) -> Path:
    """Where ``--hops`` keeps each hop's artifact: ``NAME.hops/`` beside the artifact (checked
    before any work as ``Folder.HOPS``: replaced whole, so only a folder holding nothing but
    hop artifacts, ``hopN-TOOL.EXT``, may already be there)."""
    return artifact.with_name(artifact.name + ".hops")


def debug_hops(job: DebugJob, src: Path, src_fmt: Format, art_fmt: Format, ref: Reference,
               ctx: RunContext, compare: Callable[..., DebugReport]) -> list[DebugReport]:
    """Rerun the route (``job.route``, else the first ``portkit convert`` tries: planned as
    convert plans it, the preparations the source needs first) and debug each hop's artifact
    against the previous hop's (the first against the source).

    Args:
        job: The debug job.
        src, src_fmt: The source model.
        art_fmt: The artifact's format (the route's target).
        ref: The reference run.
        ctx: Workers, timeout and progress.
        compare: ``run.compare`` (traces and walks one pair of models).

    Returns:
        One report per hop.

    Raises:
        UsageError: ``job.route`` is not a route from the source's format to the artifact's.
        ConversionError: No route, or a hop's converter failed (exit 3).
    """
    planned = ConvertJob(source=src, target=art_fmt, route=job.route, feed=job.check.feed)
    routes = planner.plan(src_fmt, planned, planner.preparations(src, src_fmt, planned, ctx))
    if not routes:
        raise ConversionError(f"--hops: no route converts {src_fmt.value} to {art_fmt.value}")
    route = routes[0]
    target = hops_folder(job.check.artifact.absolute())
    reports = []
    with staging_dir(target, "--hops") as stage:
        folder = stage / target.name
        folder.mkdir()
        prev, prev_fmt = src, src_fmt
        for i, edge in enumerate(route.edges, 1):
            dst = folder / f"hop{i}-{edge.tool}{edge.target.suffix}"
            started = time.perf_counter()
            options = planned.options if i == 1 else ConvertOptions()  # as convert runs them
            if i == len(route.edges) and route.variant is not None:
                options = dataclasses.replace(options, variant=route.variant.name)
            run_hop(edge, prev, prev_fmt, dst, ctx, inputs=list(ref.inputs), options=options,
                    feed=planned.feed, what=prev.name, note=f", hop {i}")
            reports.append(compare(job, prev, prev_fmt, dst, edge.target, ref, ctx, started))
            prev, prev_fmt = dst, edge.target
        atomic_replace(folder, target, "--hops")
    return [_moved(r, folder, target) for r in reports]


def _moved(report: DebugReport, staged: Path, target: Path) -> DebugReport:
    """A hop's report with the paths of the hops' artifacts where they now are."""
    def where(info: FileInfo) -> FileInfo:
        path = Path(info.path)
        if path.parent == staged:
            return dataclasses.replace(info, path=str(target / path.name))
        return info
    return dataclasses.replace(report, source=where(report.source),
                               artifact=where(report.artifact))
