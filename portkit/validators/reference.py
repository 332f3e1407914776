"""The source run as the reference an artifact is judged against: in one worker per framework
(``reference_worker``), fed as a ``Feed`` says (``run_reference``)."""

from __future__ import annotations

import dataclasses
from pathlib import Path

from portkit.formats import Format
from portkit.options import Feed
from portkit.runtimes import tasks
from portkit.runtimes.context import RunContext
from portkit.runtimes.tasks import Reference


def reference_worker(fmt: Format) -> str:
    """The worker a source of ``fmt`` runs in as the reference: one per framework."""
    return f"reference-{fmt.framework}"


def run_reference(src: Path, fmt: Format, feed: Feed, ctx: RunContext,
                  what: str | None = None) -> Reference:
    """Run the source as the reference in its framework's worker, fed as ``feed`` says
    (``tasks.reference``); ``what`` names the step in a timeout (default: the source)."""
    if feed.file is not None:  # workers run in their own directories
        feed = dataclasses.replace(feed, file=feed.file.absolute())
    return ctx.pool.call(reference_worker(fmt), tasks.reference, timeout=ctx.timeout,
                         what=what or str(src), path=str(src), fmt=fmt, feed=feed)
