"""What every step that runs a model needs, as one object: the warm workers, the time limit of
each worker step, and how progress is shown."""

from __future__ import annotations

import contextlib
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from portkit.bounds import TIMEOUT
from portkit.runtimes.worker import DEFAULT_TIMEOUT, Pool

Progress = Callable[[str], contextlib.AbstractContextManager[Any]]


def no_progress(_message: str) -> contextlib.AbstractContextManager[Any]:
    """A ``Progress`` that shows nothing."""
    return contextlib.nullcontext()


@dataclass(frozen=True)
class RunContext:
    """Where and how long steps run, and how they are shown.

    Attributes:
        pool: Warm workers by name (one per runtime, say), reused by the steps given this
            context.
        timeout: Seconds each worker step (load, convert, run) may take.
        progress: ``progress(message)`` returns a context manager around each long step.
    """

    pool: Pool
    timeout: float = DEFAULT_TIMEOUT
    progress: Progress = no_progress

    def __post_init__(self) -> None:
        """Refuse a timeout ``--timeout`` refuses (0, negative, NaN, infinite)."""
        TIMEOUT.check(self.timeout)
