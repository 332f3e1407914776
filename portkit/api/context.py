"""What every API call runs in: a context on the caller's warm workers, or on its own."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

from portkit.runtimes import worker
from portkit.runtimes.context import Progress, RunContext


@contextlib.contextmanager
def run_context(workers: worker.Pool | None, timeout: float,
                progress: Progress) -> Iterator[RunContext]:
    """A run context on ``workers``, or on a pool of its own that is closed on exit."""
    with contextlib.ExitStack() as stack:
        pool = workers if workers is not None else stack.enter_context(worker.Pool())
        yield RunContext(pool, timeout, progress)


