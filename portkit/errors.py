"""Two roots: PortkitError is the user's problem (bad input, failed parity), InternalError is ours.

Every user-facing error carries the exit code the CLI returns for it, so the mapping from
failure class to exit code lives in one place. An error raised in a worker process comes back
as the same class, through ``rebuild`` and its table of the classes that may cross.
"""

from __future__ import annotations

import enum
import errno
import os
import resource
import traceback
from pathlib import Path


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


class PathError(PortkitError):
    """A path that can't be used as given: missing, too long, not permitted, read-only."""


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


class ResourceError(PortkitError):
    """The machine or a ulimit ran out of something: disk space, file size, open files, memory."""

    exit_code = ExitCode.RUNTIME_CRASHED


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
    PortkitError, UsageError, InvalidModelError, PathError, UnsafeModelError, ConversionError,
    DimensionsFixedError, WorkerCrashedError, OutOfMemoryError, ResourceError,
    WorkerTimeoutError)}


def rebuild(name: str, message: str, traceback: str) -> PortkitError:
    """The error a worker raised, as the parent raises it: a PortkitError keeps its class;
    anything else becomes a ``WorkerError`` naming the worker's class."""
    cls = _CROSSING.get(name)
    if cls is None:
        return WorkerError(message, name, traceback)
    return cls(message, traceback)


# What ran out, and how to get more of it (exit 5).
_RESOURCES = {
    errno.ENOSPC: "no space left on the device; free some or write elsewhere",
    errno.EDQUOT: "disk quota exceeded; free some or write elsewhere",
    errno.EFBIG: "file too large for the file size limit; raise it (ulimit -f) or write less",
    errno.EMFILE: "too many open files; raise the limit (ulimit -n, e.g. 1024)",
    errno.ENFILE: "too many open files on the machine; close some and retry",
    errno.ENOMEM: "out of memory; raise the memory limit (ulimit -v) or free memory",
}
# What is wrong with a path, and how to fix it (exit 2).
_PATHS = {
    errno.ENAMETOOLONG: "the name is too long; choose a shorter path",
    errno.EACCES: "permission denied; choose a path you may read or write",
    errno.EPERM: "operation not permitted; choose a path you may read or write",
    errno.ENOENT: "no such file or folder; check the path",
    errno.ENOTDIR: "a part of the path is a file, not a folder; check the path",
    errno.EISDIR: "it is a folder, not a file; name a file",
    errno.EROFS: "the file system is read-only; write elsewhere",
    errno.ELOOP: "too many levels of symbolic links (a link loop?); check the path",
    errno.EEXIST: "it already exists; choose another path",
}


def maps_os_error(error: BaseException) -> bool:
    """Whether ``from_os_error`` knows ``error``: a MemoryError, or an OSError of an errno in
    its tables. Others (io.UnsupportedOperation, an errno it does not know) stay bugs until
    someone maps them."""
    return isinstance(error, MemoryError) or (
        isinstance(error, OSError) and (error.errno in _RESOURCES or error.errno in _PATHS))


def from_os_error(error: OSError | MemoryError, what: str) -> PortkitError:
    """The PortkitError an operating-system error stands for: exit 5 (``ResourceError``) for a
    resource that ran out (disk space, file size limit, open files, memory), exit 2 for a bad
    path (too long, not permitted, missing, a file where a folder should be, read-only). A
    broken pipe (EPIPE) is not mapped here: the CLI handles it (its reader went away).

    Args:
        error: The OSError (or MemoryError) caught.
        what: What was being done, naming the file or flag, e.g. ``"writing --report r.json"``.

    Returns:
        A ResourceError (exit 5) or PathError (exit 2) with a one-line message saying what,
        where and how to fix it; a PathError quoting the system's words for other errnos.
    """
    if isinstance(error, MemoryError):
        return ResourceError(f"{what}: {_RESOURCES[errno.ENOMEM]}")
    code = error.errno
    where = ""
    if error.filename is not None and str(error.filename) not in what:
        where = f" ({error.filename})"
    if code in _RESOURCES:
        return ResourceError(f"{what}{where}: {_RESOURCES[code]}")
    reason = _PATHS.get(code) if code is not None else None
    if reason is None:
        reason = error.strerror or " ".join(str(error).split()) or type(error).__name__
    return PathError(f"{what}{where}: {reason}")


def exhausted(error: BaseException, said: str) -> ResourceError | None:
    """The ResourceError (exit 5) for a worker's error, when the worker ran out of open files,
    disk or file size (``from_os_error``), or could not map a shared library into memory (under
    ``ulimit -v``, e.g. libtorch's "failed to map segment"); None otherwise.

    Args:
        error: What the worker raised.
        said: Its class and first line, as the message quotes it.
    """
    if isinstance(error, OSError) and error.errno in _RESOURCES:
        return ResourceError(f"a worker ran out of a resource ({said}): {_RESOURCES[error.errno]}")
    if isinstance(error, (ImportError, OSError)) and "failed to map segment" in said:
        soft = resource.getrlimit(resource.RLIMIT_AS)[0]
        now = "unlimited" if soft == resource.RLIM_INFINITY else f"{soft // 1024:,} kB"
        return ResourceError(f"a worker ran out of memory loading a library ({said}); raise the "
                             f"memory limit (ulimit -v, now {now}) or free memory")
    return None


def unsaid(error: BaseException) -> str:
    """What to say of an error raised without a message (a framework's bare ``RuntimeError()``):
    the error it came from, if that one says something, and where it was raised (the innermost
    frame, the path from its package on)."""
    frames = traceback.extract_tb(error.__traceback__)
    where = ""
    if frames:
        frame = frames[-1]
        path = frame.filename.replace(os.sep, "/")
        path = path.rsplit("-packages/", 1)[-1] if "-packages/" in path else Path(path).name
        where = f"raised at {path}:{frame.lineno} in {frame.name}"
    cause = error.__cause__ or error.__context__
    said = (str(cause).strip().splitlines() or [""])[0] if cause is not None else ""
    because = f"from {type(cause).__name__}: {said}" if said else ""
    return f"(no message; {'; '.join(x for x in (where, because) if x) or 'no traceback'})"
