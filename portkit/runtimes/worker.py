"""Run one function in a fresh worker process, so a crash or hang in a framework is an error, not a
dead CLI.

The parent writes the call (a function's dotted name and plain keyword arguments) into a private
scratch directory, starts ``python -m portkit.runtimes.worker DIR`` in a new process group with
that directory as its working directory and a scrubbed environment, and reads the result back.
On timeout the whole process group is killed; a death by signal is reported by the signal's name.
"""

from __future__ import annotations

import importlib
import os
import pickle
import resource
import shutil
import signal
import subprocess
import sys
import tempfile
import traceback
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


class WorkerError(errors.PortkitError):
    """Code in a worker raised something that is not a PortkitError.

    Attributes:
        error_type: The exception's class name in the worker.
        traceback: The worker's traceback and the tail of its log.
    """

    exit_code = errors.ExitCode.INTERNAL

    def __init__(self, message: str, error_type: str = "", traceback: str = "") -> None:
        super().__init__(message)
        self.error_type = error_type
        self.traceback = traceback


def call(func: str, /, *, timeout: float = DEFAULT_TIMEOUT, what: str = "", **kwargs: Any) -> Any:
    """Call ``func`` (``"package.module:function"``) with ``kwargs`` in a fresh worker.

    Args:
        func: Dotted module path and function name, separated by a colon.
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
    """
    what = what or func
    scratch = Path(tempfile.mkdtemp(prefix="portkit-worker-"))
    try:
        (scratch / "request.pkl").write_bytes(pickle.dumps({"func": func, "kwargs": kwargs,
                                                              "memory_mb": memory_limit_mb()}))
        log_path = scratch / "worker.log"
        with log_path.open("wb") as log:
            proc = subprocess.Popen(
                [sys.executable, "-m", "portkit.runtimes.worker", str(scratch)],
                cwd=scratch,
                env=_worker_env(scratch),
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
            try:
                proc.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                raise errors.WorkerTimeoutError(
                    f"{what}: ran past its {timeout:g} s limit and was stopped; "
                    "raise it with --timeout"
                ) from None
            finally:
                _kill_group(proc)  # on timeout, and to reap anything a finished worker left behind
        return _read_response(scratch, proc.returncode, what)
    finally:
        shutil.rmtree(scratch, ignore_errors=True)


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


def _read_response(scratch: Path, returncode: int, what: str) -> Any:
    log_tail = (scratch / "worker.log").read_bytes()[-_LOG_TAIL:].decode(errors="replace")
    response_path = scratch / "response.pkl"
    if returncode < 0 or not response_path.exists():
        cause = _signal_name(returncode) if returncode < 0 else f"exit status {returncode}"
        err = errors.WorkerCrashedError(f"{what}: the worker process crashed ({cause})")
        err.traceback = log_tail  # type: ignore[attr-defined]
        raise err
    response = pickle.loads(response_path.read_bytes())
    if response["ok"]:
        return response["value"]
    if response["error"] == "MemoryError":
        err = errors.WorkerCrashedError(
            f"{what}: ran out of the worker's {memory_limit_mb():,} MB memory limit; raise it "
            f"with {MEMORY_ENV}=MB")
        err.traceback = response["traceback"] + log_tail  # type: ignore[attr-defined]
        raise err
    cls = getattr(errors, response["error"], None)
    if isinstance(cls, type) and issubclass(cls, errors.PortkitError):
        err = cls(response["message"])
        err.traceback = response["traceback"] + log_tail  # type: ignore[attr-defined]
        raise err
    raise WorkerError(response["message"], response["error"], response["traceback"] + log_tail)


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


def _serve(scratch: Path) -> None:
    request = pickle.loads((scratch / "request.pkl").read_bytes())
    # Data (heap and private mappings), not address space: frameworks reserve huge virtual
    # ranges they never touch.
    limit = request["memory_mb"] * 2**20
    resource.setrlimit(resource.RLIMIT_DATA, (limit, limit))
    module_name, func_name = request["func"].split(":")
    try:
        func = getattr(importlib.import_module(module_name), func_name)
        response = {"ok": True, "value": func(**request["kwargs"])}
    except errors.PortkitError as e:
        response = {"ok": False, "error": type(e).__name__, "message": str(e),
                    "traceback": traceback.format_exc()}
    except BaseException as e:  # noqa: BLE001 - everything goes back to the parent
        first = (str(e).strip().splitlines() or [""])[0]
        response = {"ok": False, "error": type(e).__name__, "message": f"{type(e).__name__}: {first}",
                    "traceback": traceback.format_exc()}
    staged = scratch / "response.pkl.tmp"
    staged.write_bytes(pickle.dumps(response))
    os.replace(staged, scratch / "response.pkl")


if __name__ == "__main__":
    _serve(Path(sys.argv[1]))
    sys.stdout.flush()
    sys.stderr.flush()
    # Skip interpreter teardown: some frameworks crash or hang in their atexit handlers.
    os._exit(0)
