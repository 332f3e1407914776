"""Run functions in worker processes, so a crash or hang in a framework is an error, not a
dead CLI.

A worker is ``python -m portkit.runtimes.worker DIR`` started in a new process group, with a
private scratch directory as its working directory and temp folder and a scrubbed environment.
The parent writes each call (a ``@task`` function's name and plain keyword arguments) into the
scratch directory, announces it on the worker's stdin, and reads the result back when the worker
acknowledges it on a pipe. On timeout the whole process group is killed; a death by signal is
reported by the signal's name. A worker also holds the read end of a watchdog pipe whose write
end only its parent holds: when the parent dies, even by SIGKILL, the worker kills its group.

Only functions marked ``@task`` run in a worker: the mark checks, when their module is
imported, that the worker can import them by name, and callers pass the function itself.

``call`` uses a fresh worker once. A ``Worker`` (or a ``Pool`` of them by name) stays warm across
calls, so a run that validates several artifacts on one runtime imports that runtime once.
"""

from __future__ import annotations

import contextlib
import importlib
import os
import pickle
import re
import resource
import select
import shutil
import signal
import subprocess
import sys
import threading
import time
import traceback
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from portkit import errors
from portkit.bounds import MEMORY_ENV, memory_limit_mb
from portkit.io import owned_dir

DEFAULT_TIMEOUT = 900.0
_KEEP_ENV = (
    "PATH", "HOME", "LANG", "LC_ALL", "TMPDIR", "PYTHONPATH", "VIRTUAL_ENV", "LD_LIBRARY_PATH",
    "CUDA_VISIBLE_DEVICES", "OPENBLAS_CORETYPE", "OPENBLAS_L2_SIZE", "OMP_NUM_THREADS",
)
_QUIET_ENV = {
    "TF_CPP_MIN_LOG_LEVEL": "3",
    "TF_ENABLE_ONEDNN_OPTS": "0",
    "GRPC_VERBOSITY": "ERROR",
    "PYTHONHASHSEED": "0",
    "PYTHONWARNINGS": "ignore",
    "TOKENIZERS_PARALLELISM": "false",
    "HF_HUB_OFFLINE": "1",
    "NVIDIA_TF32_OVERRIDE": "0",
}
_LOG_TAIL = 4000


Task = Callable[..., Any]
_TARGET = "__portkit_task__"


def task(fn: Task) -> Task:
    """Decorator: let ``fn`` run in a worker, which imports it by module and name.

    Raises:
        InternalError: ``fn`` is not a module-level function of an importable module.
    """
    if fn.__module__ == "__main__" or "." in fn.__qualname__ or "<" in fn.__qualname__:
        raise errors.InternalError(f"{fn.__module__}.{fn.__qualname__}: a worker task must be a "
                                   "module-level function of an importable module")
    setattr(fn, _TARGET, f"{fn.__module__}:{fn.__name__}")
    return fn


def _target(fn: Task) -> str:
    target = getattr(fn, _TARGET, None)
    if target is None:
        raise errors.InternalError(f"{getattr(fn, '__qualname__', fn)!r} is not a worker task "
                                   "(mark it with @task)")
    return target


def call(func: Task, /, *, timeout: float = DEFAULT_TIMEOUT, what: str = "", **kwargs: Any) -> Any:
    """Call ``func`` (a ``@task``) with ``kwargs`` in a fresh worker.

    Args:
        func: The function to run.
        timeout: Wall-clock seconds before the worker's process group is killed.
        what: A short description of the job for error messages (e.g. the model file).
        **kwargs: Picklable keyword arguments (paths, specs, numpy arrays).

    Returns:
        What the function returned.

    Raises:
        WorkerTimeoutError: The worker ran past ``timeout``.
        WorkerCrashedError: The worker died by a signal or exited without a result.
        PortkitError: The function raised a PortkitError (re-raised with its class).
        WorkerError: The function raised anything else.
        InternalError: ``func`` is not a ``@task``.
    """
    with Worker() as w:
        return w.call(func, timeout=timeout, what=what, **kwargs)


class Worker:
    """One worker process that serves calls one after another, so the frameworks it imported
    stay warm between them. It starts on the first call; a timeout or a crash ends it, and the
    next call starts a fresh one. ``call`` above is a worker used once.
    """

    def __init__(self) -> None:
        self._proc: subprocess.Popen[bytes] | None = None
        self._scratch: Path | None = None
        self._acks: int = -1
        self._watch: int = -1  # the watchdog pipe's write end: closing it ends the worker
        self._calls = 0
        self._stopped = False
        self._lock = threading.Lock()  # close may run in two threads (a call, and a stop)

    def __enter__(self) -> Worker:
        return self

    def __exit__(self, *_exc: object) -> None:
        self.close()

    def call(self, func: Task, /, *, timeout: float = DEFAULT_TIMEOUT, what: str = "",
             **kwargs: Any) -> Any:
        """Like the module's ``call``, in this worker (see there)."""
        target = _target(func)
        what = what or target
        if self._stopped:
            raise errors.WorkerCrashedError(f"{what}: not run: its worker was stopped")
        if self._proc is None:
            self._start()
        proc, scratch = self._proc, self._scratch
        assert proc is not None and scratch is not None and proc.stdin
        self._calls += 1
        n = self._calls
        (scratch / f"request-{n}.pkl").write_bytes(
            pickle.dumps({"func": target, "kwargs": kwargs}))
        try:
            proc.stdin.write(f"{n}\n".encode())
            proc.stdin.flush()
            answered = self._wait_ack(timeout)
        except (OSError, ValueError):  # the worker died, or another thread stopped it
            answered = False
        except subprocess.TimeoutExpired:
            self.close()
            raise errors.WorkerTimeoutError(
                f"{what}: ran past its {timeout:g} s limit and was stopped; "
                "raise it with --timeout"
            ) from None
        if self._stopped:  # another thread (the run ending) stopped it mid-call
            raise errors.WorkerCrashedError(f"{what}: stopped before it answered")
        if not answered:  # the process died: reap it and report how
            returncode = proc.wait()
            log_tail = self._log_tail()
            self.close()
            cause = _signal_name(returncode) if returncode < 0 else f"exit status {returncode}"
            raise errors.WorkerCrashedError(f"{what}: the worker process crashed ({cause})",
                                            log_tail)
        response_path = self._scratch / f"response-{n}.pkl"
        response = pickle.loads(response_path.read_bytes())
        response_path.unlink()
        return _unwrap(response, what, self._log_tail)

    def close(self) -> None:
        """Stop the process (and anything it started) and remove its scratch folder; the next
        call starts a fresh one."""
        with self._lock:
            proc, self._proc = self._proc, None
            fds, self._acks, self._watch = (self._acks, self._watch), -1, -1
            scratch, self._scratch = self._scratch, None
        if proc is not None:
            _kill_group(proc)
            if proc.stdin:
                with contextlib.suppress(OSError):
                    proc.stdin.close()
        for fd in fds:
            if fd >= 0:
                with contextlib.suppress(OSError):
                    os.close(fd)
        if scratch is not None:
            shutil.rmtree(scratch, ignore_errors=True)

    def stop(self) -> None:
        """``close`` for good: a call in progress (in another thread) ends at once with
        WorkerCrashedError, and later calls are refused rather than starting a worker."""
        self._stopped = True
        self.close()

    def _start(self) -> None:
        scratch = self._scratch = owned_dir("worker")
        read_end, write_end = os.pipe()
        watch_read, watch_write = os.pipe()  # non-inheritable: only this worker gets an end
        try:
            with (scratch / "worker.log").open("wb") as log:
                proc = subprocess.Popen(
                    [sys.executable, "-m", "portkit.runtimes.worker", str(scratch),
                     str(write_end), str(memory_limit_mb()), str(watch_read)],
                    cwd=scratch,
                    env=_worker_env(scratch),
                    stdin=subprocess.PIPE,
                    stdout=log,
                    stderr=subprocess.STDOUT,
                    start_new_session=True,
                    pass_fds=(write_end, watch_read),
                )
        except BaseException:
            os.close(read_end)
            os.close(watch_write)
            raise
        finally:
            os.close(write_end)
            os.close(watch_read)
        with self._lock:
            self._proc, self._scratch, self._acks, self._watch = (proc, scratch, read_end,
                                                                  watch_write)
        if self._stopped:  # stopped by another thread while starting
            self.close()
            raise errors.WorkerCrashedError("not run: its worker was stopped")

    def _wait_ack(self, timeout: float) -> bool:
        """Wait for the worker to say it answered; False if it died first.

        Raises:
            subprocess.TimeoutExpired: No answer within ``timeout`` seconds.
        """
        deadline = time.monotonic() + timeout
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                raise subprocess.TimeoutExpired("worker", timeout)
            ready, _, _ = select.select([self._acks], [], [], left)
            if ready:
                return bool(os.read(self._acks, 64))  # b"" (end of file): the worker is gone

    def _log_tail(self) -> str:
        assert self._scratch is not None
        return (self._scratch / "worker.log").read_bytes()[-_LOG_TAIL:].decode(errors="replace")


class Pool:
    """Warm workers by name (one per runtime, say), each reused across the calls given its
    name; all are stopped when the pool closes."""

    def __init__(self) -> None:
        self._workers: dict[str, Worker] = {}

    def __enter__(self) -> Pool:
        return self

    def __exit__(self, *_exc: object) -> None:
        self.close()

    def call(self, name: str, func: Task, /, *, timeout: float = DEFAULT_TIMEOUT, what: str = "",
             **kwargs: Any) -> Any:
        """``Worker.call`` in the warm worker called ``name`` (started if needed)."""
        return self._workers.setdefault(name, Worker()).call(func, timeout=timeout, what=what,
                                                            **kwargs)

    def discard(self, name: str) -> None:
        """Stop the worker called ``name`` (a call it is serving in another thread ends at
        once); the next call by that name starts a fresh one."""
        w = self._workers.pop(name, None)
        if w is not None:
            w.stop()

    def close(self) -> None:
        """Stop every worker (calls in progress in other threads end at once)."""
        while self._workers:
            self._workers.popitem()[1].stop()


_LENT: list[Pool] = []  # pools lent by ``lend``, innermost last


@contextlib.contextmanager
def lend(pool: Pool) -> Iterator[Pool]:
    """Lend ``pool`` to the work done inside that brings no workers of its own (an API call
    without ``workers=``, ``portkit check`` on one thread): a process that runs many commands
    (a test session driving the CLI in-process, a notebook) imports each framework once."""
    _LENT.append(pool)
    try:
        yield pool
    finally:
        _LENT.remove(pool)


def lent() -> Pool | None:
    """The pool ``lend`` lends now, if any."""
    return _LENT[-1] if _LENT else None


def _worker_env(scratch: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k in _KEEP_ENV or k.startswith("PORTKIT_")}
    env.update(_QUIET_ENV)
    # Frameworks write to the temp folder (onnxruntime leaves a .ses file there): keep it private.
    (scratch / "tmp").mkdir()
    env["TMPDIR"] = str(scratch / "tmp")
    # The worker must import this very portkit, and find console scripts of this environment.
    package_root = str(Path(__file__).resolve().parents[2])
    env["PYTHONPATH"] = os.pathsep.join(p for p in (package_root, env.get("PYTHONPATH")) if p)
    env["PATH"] = os.pathsep.join(p for p in (str(Path(sys.executable).parent), env.get("PATH")) if p)
    return env


def _kill_group(proc: subprocess.Popen[bytes]) -> None:
    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        pass
    proc.wait()


def _unwrap(response: dict[str, Any], what: str, log_tail: Callable[[], str]) -> Any:
    """The value of a worker's response, or its error raised as the parent's (``errors.rebuild``)."""
    if response["ok"]:
        return response["value"]
    traceback_ = response["traceback"] + log_tail()
    if response["error"] == _OUT_OF_MEMORY:
        asked = response.get("asked")
        size = f"asked for {asked / 2**30:.1f} GB; " if asked else ""
        raise errors.OutOfMemoryError(
            f"{what}: ran out of memory ({size}the worker's limit is {memory_limit_mb():,} MB); "
            f"raise it with {MEMORY_ENV}=MB if the machine has the memory", traceback_)
    raise errors.rebuild(response["error"], response["message"], traceback_)


_OUT_OF_MEMORY = "out of memory"
# How frameworks say an allocation failed, and where the message says how much was asked for.
_ALLOCATION_FAILED = re.compile(
    r"Failed to allocate memory|bad_alloc|ResourceExhausted|OOM when allocating|"
    r"can't allocate memory|Unable to allocate|Cannot allocate memory|out of memory", re.IGNORECASE)
_BYTES_ASKED = (
    re.compile(r"buffer of size (\d+)"),  # onnxruntime
    re.compile(r"you tried to allocate (\d+) bytes"),  # torch
    re.compile(r"Unable to allocate ([\d.]+) ([KMGTP]?i?B)"),  # numpy
)
_UNITS = {"B": 1, "KiB": 2**10, "MiB": 2**20, "GiB": 2**30, "TiB": 2**40, "PiB": 2**50}
_TF_OOM = re.compile(r"OOM when allocating tensor with shape\s*\[([\d, ]*)\] and type (\w+)")
_TF_SIZES = {"float": 4, "double": 8, "half": 2, "bfloat16": 2, "int64": 8, "int32": 4,
             "int16": 2, "int8": 1, "uint8": 1, "bool": 1, "complex64": 8}


def out_of_memory(error: BaseException) -> tuple[bool, int | None]:
    """Whether ``error`` (or an error it was raised from) is a failed allocation, and how many
    bytes were asked for when its message says.

    Covers MemoryError (numpy's too), std::bad_alloc, onnxruntime's "Failed to allocate
    memory", TensorFlow's ResourceExhaustedError ("OOM when allocating") and torch's
    "DefaultCPUAllocator: can't allocate memory".
    """
    seen: set[int] = set()
    current: BaseException | None = error
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        text = f"{type(current).__name__}: {current}"
        if isinstance(current, MemoryError) or _ALLOCATION_FAILED.search(text):
            return True, bytes_asked(text)
        current = current.__cause__ or current.__context__
    return False, None


def bytes_asked(message: str) -> int | None:
    """The size of the failed allocation a framework's message names, if it does."""
    for pattern in _BYTES_ASKED:
        match = pattern.search(message)
        if match:
            unit = _UNITS.get(match.group(2), 0) if pattern.groups == 2 else 1
            return int(float(match.group(1)) * unit) or None
    match = _TF_OOM.search(message)
    if match and match.group(2) in _TF_SIZES:
        count = 1
        for dim in match.group(1).replace(" ", "").split(","):
            count *= int(dim) if dim else 1
        return count * _TF_SIZES[match.group(2)]
    return None


def _signal_name(returncode: int) -> str:
    try:
        return signal.Signals(-returncode).name
    except ValueError:
        return f"signal {-returncode}"


def _serve(scratch: Path, acks: int, memory_mb: int, watch: int) -> None:
    """Answer the calls the parent announces on stdin (``N`` for ``request-N.pkl``) until it
    closes stdin; each answer is ``response-N.pkl``, then ``N`` on the ``acks`` pipe. When the
    ``watch`` pipe closes (the parent died), kill this process group at once."""
    threading.Thread(target=_watch_parent, args=(watch,), daemon=True).start()
    # Data (heap and private mappings), not address space: frameworks reserve huge virtual
    # ranges they never touch (CUDA reserves more address space than the machine has memory).
    limit = memory_mb * 2**20
    resource.setrlimit(resource.RLIMIT_DATA, (limit, limit))
    for line in sys.stdin:
        n = int(line)
        request = pickle.loads((scratch / f"request-{n}.pkl").read_bytes())
        (scratch / f"request-{n}.pkl").unlink()
        response = _answer(request["func"], request["kwargs"])
        staged = scratch / f"response-{n}.pkl.tmp"
        staged.write_bytes(pickle.dumps(response))
        os.replace(staged, scratch / f"response-{n}.pkl")
        sys.stdout.flush()
        sys.stderr.flush()
        os.write(acks, f"{n}\n".encode())


def _watch_parent(watch: int) -> None:
    """Block until the parent's end of the watchdog pipe closes, then kill this process group:
    a worker never outlives the CLI that started it."""
    with contextlib.suppress(OSError):
        while os.read(watch, 64):
            pass
    os.killpg(0, signal.SIGKILL)


def _answer(func: str, kwargs: dict[str, Any]) -> dict[str, Any]:
    module_name, func_name = func.split(":")
    try:
        fn = getattr(importlib.import_module(module_name), func_name)
        if getattr(fn, _TARGET, None) != func:
            raise errors.InternalError(f"{func} is not a worker task")
        return {"ok": True, "value": fn(**kwargs)}
    except errors.PortkitError as e:
        return {"ok": False, "error": type(e).__name__, "message": str(e),
                "traceback": traceback.format_exc()}
    except BaseException as e:  # noqa: BLE001 - everything goes back to the parent
        first = (str(e).strip().splitlines() or [""])[0] or errors.unsaid(e)
        failed, asked = out_of_memory(e)
        limit = None if failed else errors.exhausted(e, f"{type(e).__name__}: {first}")
        if limit is not None:
            return {"ok": False, "error": type(limit).__name__, "message": str(limit),
                    "traceback": traceback.format_exc()}
        return {"ok": False, "error": _OUT_OF_MEMORY if failed else type(e).__name__,
                "message": f"{type(e).__name__}: {first}", "asked": asked,
                "traceback": traceback.format_exc()}


if __name__ == "__main__":
    _serve(Path(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4]))
    # Skip interpreter teardown: some frameworks crash or hang in their atexit handlers.
    os._exit(0)
