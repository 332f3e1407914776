"""What every API call runs in: a context on the caller's warm workers, or on its own.

A process that runs many commands (a test session driving the CLI in-process, a notebook) can
lend every call that names no workers of its own one warm pool (``warm_workers``), so each
framework is imported once, not once per command.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

from portkit.runtimes import worker
from portkit.runtimes.context import Progress, RunContext

_LENT: list[worker.Pool] = []  # the pool ``warm_workers`` lends, innermost last


@contextlib.contextmanager
def warm_workers(pool: worker.Pool) -> Iterator[worker.Pool]:
    """Run the API calls made inside on ``pool`` unless they name workers of their own."""
    _LENT.append(pool)
    try:
        yield pool
    finally:
        _LENT.remove(pool)


@contextlib.contextmanager
def run_context(workers: worker.Pool | None, timeout: float,
                progress: Progress) -> Iterator[RunContext]:
    """A run context on ``workers``, on the pool ``warm_workers`` lends, or on a pool of its
    own that is closed on exit."""
    with contextlib.ExitStack() as stack:
        pool = workers if workers is not None else (
            _LENT[-1] if _LENT else stack.enter_context(worker.Pool()))
        yield RunContext(pool, timeout, progress)
