"""Run functions in worker processes, so a crash or hang in a framework is an error, not a
dead CLI.

A worker is ``python -m portkit.runtimes.worker DIR`` started in a new process group, with a
private scratch directory as its working directory and temp folder and a scrubbed environment.
The parent writes each call (a ``@task`` function's name and plain keyword arguments) into the
scratch directory, announces it on the worker's stdin, and reads the result back when the worker
acknowledges it on a pipe. On timeout the whole process group is killed; a death by signal is
reported by the signal's name.

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
import resource
import select
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import traceback
from collections.abc import Callable
from pathlib import Path
from typing import Any

from portkit import errors

DEFAULT_TIMEOUT = 900.0
MEMORY_ENV = "PORTKIT_MEMORY_LIMIT_MB"
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
        self._calls = 0

    def __enter__(self) -> Worker:
        return self

    def __exit__(self, *_exc: object) -> None:
        self.close()

    def call(self, func: Task, /, *, timeout: float = DEFAULT_TIMEOUT, what: str = "",
             **kwargs: Any) -> Any:
        """Like the module's ``call``, in this worker (see there)."""
        target = _target(func)
        what = what or target
        if self._proc is None:
            self._start()
        assert self._proc is not None and self._scratch is not None and self._proc.stdin
        self._calls += 1
        n = self._calls
        (self._scratch / f"request-{n}.pkl").write_bytes(
            pickle.dumps({"func": target, "kwargs": kwargs}))
        try:
            self._proc.stdin.write(f"{n}\n".encode())
            self._proc.stdin.flush()
            answered = self._wait_ack(timeout)
        except BrokenPipeError:
            answered = False
        except subprocess.TimeoutExpired:
            self.close()
            raise errors.WorkerTimeoutError(
                f"{what}: ran past its {timeout:g} s limit and was stopped; "
                "raise it with --timeout"
            ) from None
        if not answered:  # the process died: reap it and report how
            returncode = self._proc.wait()
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
        """Stop the process (and anything it started) and remove its scratch folder."""
        if self._proc is not None:
            _kill_group(self._proc)
            if self._proc.stdin:
                with contextlib.suppress(OSError):
                    self._proc.stdin.close()
            self._proc = None
        if self._acks >= 0:
            os.close(self._acks)
            self._acks = -1
        if self._scratch is not None:
            shutil.rmtree(self._scratch, ignore_errors=True)
            self._scratch = None

    def _start(self) -> None:
        self._scratch = Path(tempfile.mkdtemp(prefix="portkit-worker-"))
        read_end, write_end = os.pipe()
        try:
            with (self._scratch / "worker.log").open("wb") as log:
                self._proc = subprocess.Popen(
                    [sys.executable, "-m", "portkit.runtimes.worker", str(self._scratch),
                     str(write_end), str(memory_limit_mb())],
                    cwd=self._scratch,
                    env=_worker_env(self._scratch),
                    stdin=subprocess.PIPE,
                    stdout=log,
                    stderr=subprocess.STDOUT,
                    start_new_session=True,
                    pass_fds=(write_end,),
                )
        finally:
            os.close(write_end)
        self._acks = read_end

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
        """Stop the worker called ``name``; the next call by that name starts a fresh one."""
        if name in self._workers:
            self._workers.pop(name).close()

    def close(self) -> None:
        """Stop every worker."""
        for w in self._workers.values():
            w.close()
        self._workers.clear()


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
    if response["error"] == "MemoryError":
        raise errors.WorkerCrashedError(
            f"{what}: ran out of the worker's {memory_limit_mb():,} MB memory limit; raise it "
            f"with {MEMORY_ENV}=MB", traceback_)
    raise errors.rebuild(response["error"], response["message"], traceback_)


def _signal_name(returncode: int) -> str:
    try:
        return signal.Signals(-returncode).name
    except ValueError:
        return f"signal {-returncode}"


def memory_limit_mb() -> int:
    """The worker's memory limit: ``$PORTKIT_MEMORY_LIMIT_MB``, else 80% of physical memory."""
    if os.environ.get(MEMORY_ENV):
        return int(os.environ[MEMORY_ENV])
    total = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    return int(total * 0.8) // 2**20


def _serve(scratch: Path, acks: int, memory_mb: int) -> None:
    """Answer the calls the parent announces on stdin (``N`` for ``request-N.pkl``) until it
    closes stdin; each answer is ``response-N.pkl``, then ``N`` on the ``acks`` pipe."""
    # Data (heap and private mappings), not address space: frameworks reserve huge virtual
    # ranges they never touch.
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
        first = (str(e).strip().splitlines() or [""])[0]
        return {"ok": False, "error": type(e).__name__, "message": f"{type(e).__name__}: {first}",
                "traceback": traceback.format_exc()}


if __name__ == "__main__":
    _serve(Path(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3]))
    # Skip interpreter teardown: some frameworks crash or hang in their atexit handlers.
    os._exit(0)
