"""What every API call runs in: a context on the caller's warm workers, on the pool lent to the
process (``runtimes.worker.lend``), or on its own."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

from portkit.runtimes import worker
from portkit.runtimes.context import Progress, RunContext


@contextlib.contextmanager
def run_context(workers: worker.Pool | None, timeout: float,
                progress: Progress) -> Iterator[RunContext]:
    """A run context on ``workers``, on the pool ``worker.lend`` lends, or on a pool of its
    own that is closed on exit."""
    with contextlib.ExitStack() as stack:
        pool = workers or worker.lent() or stack.enter_context(worker.Pool())
        yield RunContext(pool, timeout, progress)
