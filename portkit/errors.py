"""Two roots: PortkitError is the user's problem (bad input, failed parity), InternalError is ours.

Every user-facing error carries the exit code the CLI returns for it, so the mapping from
failure class to exit code lives in one place.
"""

from __future__ import annotations

import enum


class ExitCode(enum.IntEnum):
    """Exit codes of the ``portkit`` CLI (documented in the README)."""

    OK = 0
    PARITY_FAILED = 1
    INVALID_INPUT = 2
    CONVERSION_FAILED = 3
    UNSAFE_INPUT = 4
    RUNTIME_CRASHED = 5
    TIMEOUT = 6
    INTERNAL = 70


class PortkitError(Exception):
    """An error the user can fix; its message says what, where and how."""

    exit_code: ExitCode = ExitCode.INVALID_INPUT


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


class WorkerCrashedError(PortkitError):
    """A runtime or converter crashed its worker process (e.g. a segfault)."""

    exit_code = ExitCode.RUNTIME_CRASHED


class WorkerTimeoutError(PortkitError):
    """A worker ran past its time limit and was killed."""

    exit_code = ExitCode.TIMEOUT


class InternalError(Exception):
    """A bug in portkit; the CLI asks for a report."""

    exit_code: ExitCode = ExitCode.INTERNAL
