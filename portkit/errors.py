"""Two roots: PortkitError is the user's problem (bad input, failed parity), InternalError is ours.

Every user-facing error carries the exit code the CLI returns for it, so the mapping from
failure class to exit code lives in one place. An error raised in a worker process comes back
as the same class, through ``rebuild`` and its table of the classes that may cross.
"""

from __future__ import annotations

import enum


class ExitCode(enum.IntEnum):
    """Exit codes of the ``portkit`` CLI (documented in the README and docs/safety.md)."""

    OK = 0
    PARITY_FAILED = 1
    INVALID_INPUT = 2
    CONVERSION_FAILED = 3
    UNSAFE_INPUT = 4
    RUNTIME_CRASHED = 5
    TIMEOUT = 6
    INTERNAL = 70


class PortkitError(Exception):
    """An error the user can fix; its message says what, where and how.

    Attributes:
        traceback: Where it was raised, when that was in a worker (its traceback and the tail
            of its log), for ``--debug``; empty otherwise.
    """

    exit_code: ExitCode = ExitCode.INVALID_INPUT

    def __init__(self, message: str = "", traceback: str = "") -> None:
        super().__init__(message)
        self.traceback = traceback


class UsageError(PortkitError):
    """Bad flags or arguments."""


class InvalidModelError(PortkitError):
    """A model file that is missing, empty, truncated or of an unknown format."""


class UnsafeModelError(PortkitError):
    """A model that would execute code on load; opt in with ``--trust-model``."""

    exit_code = ExitCode.UNSAFE_INPUT


class ConversionError(PortkitError):
    """No route produced an artifact."""

    exit_code = ExitCode.CONVERSION_FAILED


class DimensionsFixedError(ConversionError):
    """A converter could write the model only with the source's dynamic dimensions fixed."""


class WorkerCrashedError(PortkitError):
    """A runtime or converter crashed its worker process (e.g. a segfault)."""

    exit_code = ExitCode.RUNTIME_CRASHED


class OutOfMemoryError(WorkerCrashedError):
    """A runtime or converter could not allocate memory in its worker (past the worker's memory
    limit, or the machine's)."""


class WorkerTimeoutError(PortkitError):
    """A worker ran past its time limit and was killed."""

    exit_code = ExitCode.TIMEOUT


class WorkerError(PortkitError):
    """Code in a worker raised something that is not a PortkitError (a bug, or a framework's
    own error nobody mapped).

    Attributes:
        error_type: The exception's class name in the worker.
    """

    exit_code = ExitCode.INTERNAL

    def __init__(self, message: str, error_type: str = "", traceback: str = "") -> None:
        super().__init__(message, traceback)
        self.error_type = error_type


class InternalError(Exception):
    """A bug in portkit; the CLI asks for a report."""

    exit_code: ExitCode = ExitCode.INTERNAL


# The errors a worker may raise that come back to the parent as themselves.
_CROSSING: dict[str, type[PortkitError]] = {cls.__name__: cls for cls in (
    PortkitError, UsageError, InvalidModelError, UnsafeModelError, ConversionError,
    DimensionsFixedError, WorkerCrashedError, OutOfMemoryError, WorkerTimeoutError)}


def rebuild(name: str, message: str, traceback: str) -> PortkitError:
    """The error a worker raised, as the parent raises it: a PortkitError keeps its class;
    anything else becomes a ``WorkerError`` naming the worker's class."""
    cls = _CROSSING.get(name)
    if cls is None:
        return WorkerError(message, name, traceback)
    return cls(message, traceback)
