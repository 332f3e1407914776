"""The worker process: results come back, errors keep their class, crashes and hangs are contained."""

from __future__ import annotations

import tempfile
import time

import pytest

from portkit import errors
from portkit.runtimes import worker
from tests.runtimes import workload


def test_returns_the_value() -> None:
    assert worker.call(workload.echo, value=[1, 2]) == [1, 2]


def test_portkit_errors_keep_their_class() -> None:
    with pytest.raises(errors.UsageError, match="bad flag"):
        worker.call(workload.raise_usage, message="bad flag")


def test_other_errors_become_worker_errors_with_traceback() -> None:
    with pytest.raises(errors.WorkerError, match="ZeroDivisionError") as info:
        worker.call(workload.divide, a=1, b=0)
    assert "Traceback" in info.value.traceback


def test_a_segfault_is_reported_by_signal_name() -> None:
    with pytest.raises(errors.WorkerCrashedError, match="SIGSEGV") as info:
        worker.call(workload.segfault, what="crash.model")
    assert "crash.model" in str(info.value)
    assert info.value.exit_code == errors.ExitCode.RUNTIME_CRASHED


def test_a_hang_is_killed_with_its_children(tmp_path) -> None:
    pid_file = tmp_path / "child.pid"
    start = time.monotonic()
    with pytest.raises(errors.WorkerTimeoutError, match="--timeout"):
        worker.call(workload.hang_with_child, timeout=3, pid_file=str(pid_file))
    assert time.monotonic() - start < 30
    child = int(pid_file.read_text())
    time.sleep(0.2)
    assert _gone(child)


def _gone(pid: int) -> bool:
    """Dead: no such process, or a zombie waiting for init to reap it."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] == "Z"
    except FileNotFoundError:
        return True


def test_worker_env_is_scrubbed(monkeypatch) -> None:
    monkeypatch.setenv("SECRET_TOKEN", "x")
    env = worker.call(workload.environment)
    assert "SECRET_TOKEN" not in env
    assert env["TF_CPP_MIN_LOG_LEVEL"] == "3"
    # The temp folder is the worker's own (removed with it), not the user's.
    assert env["TMPDIR"].startswith(tempfile.gettempdir()) and "portkit-worker-" in env["TMPDIR"]


def test_memory_limit_stops_a_worker_that_allocates_too_much(monkeypatch) -> None:
    monkeypatch.setenv(worker.MEMORY_ENV, "400")
    assert worker.call(workload.allocate, megabytes=50) == 50 * 2**20
    with pytest.raises(errors.OutOfMemoryError,
                       match=r"hungry: ran out of memory \(asked for 2.0 GB; the worker's limit is "
                             r"400 MB\); raise it with PORTKIT_MEMORY_LIMIT_MB") as info:
        worker.call(workload.allocate, megabytes=2048, what="hungry")
    assert info.value.exit_code == errors.ExitCode.RUNTIME_CRASHED


@pytest.mark.parametrize(("error", "asked"), [
    (RuntimeError("[ONNXRuntimeError] : 1 : FAIL : Non-zero status code returned while running "
                  "Expand node. Status Message: bfc_arena.cc:360 Failed to allocate memory for "
                  "requested buffer of size 40000000000"), 40_000_000_000),
    (RuntimeError("[enforce fail at alloc_cpu.cpp:117] data. DefaultCPUAllocator: can't allocate "
                  "memory: you tried to allocate 40000000000 bytes. Error code 12"), 40_000_000_000),
    (type("ResourceExhaustedError", (Exception,), {})(
        "OOM when allocating tensor with shape[100000,100000] and type float on /cpu:0"),
     40_000_000_000),
    (MemoryError("Unable to allocate 37.3 GiB for an array with shape (100000, 100000)"),
     int(37.3 * 2**30)),
    (MemoryError("std::bad_alloc"), None),
])
def test_allocation_failures_of_each_framework_are_recognised(error: BaseException,
                                                              asked: int | None) -> None:
    assert worker.out_of_memory(error) == (True, asked)
    wrapped = ValueError("conversion failed")
    wrapped.__cause__ = error
    assert worker.out_of_memory(wrapped) == (True, asked)


def test_other_errors_are_not_taken_for_memory() -> None:
    assert worker.out_of_memory(ValueError("shape mismatch: [3, 4] vs [4, 3]")) == (False, None)


def test_a_warm_worker_serves_calls_in_one_process_and_restarts_after_a_crash() -> None:
    with worker.Pool() as pool:
        first = pool.call("tflite", workload.pid)
        assert pool.call("tflite", workload.pid) == first
        assert pool.call("onnxruntime", workload.pid) != first
        with pytest.raises(errors.UsageError):  # an error answered is not a dead worker
            pool.call("tflite", workload.raise_usage, message="x")
        assert pool.call("tflite", workload.pid) == first
        with pytest.raises(errors.WorkerCrashedError, match="SIGSEGV"):
            pool.call("tflite", workload.segfault)
        assert pool.call("tflite", workload.pid) not in (first, None)
        with pytest.raises(errors.WorkerTimeoutError):
            pool.call("tflite", workload.sleep, seconds=60, timeout=1)
        assert pool.call("tflite", workload.echo, value=3) == 3


def test_a_stopped_worker_ends_the_call_another_thread_is_waiting_on() -> None:
    import threading

    w = worker.Worker()
    w.call(workload.echo, value=1)
    outcome: list[BaseException] = []

    def waiting() -> None:
        try:
            w.call(workload.sleep, seconds=60)
        except BaseException as e:  # noqa: BLE001 - the test reads it
            outcome.append(e)

    thread = threading.Thread(target=waiting)
    thread.start()
    time.sleep(0.5)
    start = time.monotonic()
    w.stop()
    thread.join(10)
    assert time.monotonic() - start < 5 and not thread.is_alive()
    assert isinstance(outcome[0], errors.WorkerCrashedError)
    with pytest.raises(errors.WorkerCrashedError, match="stopped"):  # and no new worker starts
        w.call(workload.echo, value=1)


def _not_a_task() -> None:
    """A module-level function never marked @task."""


def test_only_marked_module_level_functions_run_in_a_worker() -> None:
    with pytest.raises(errors.InternalError, match="not a worker task"):
        worker.call(_not_a_task)

    def nested() -> None:
        """Defined in a function: a worker could not import it by name."""

    with pytest.raises(errors.InternalError, match="module-level function"):
        worker.task(nested)


def test_a_worker_refuses_a_request_naming_an_unmarked_function() -> None:
    # The parent never sends one; the worker checks anyway, so a request file names only tasks.
    answer = worker._answer("tests.runtimes.test_worker:_not_a_task", {})
    assert not answer["ok"] and "is not a worker task" in answer["message"]
    assert worker._answer("tests.runtimes.workload:echo", {"value": 1}) == {"ok": True, "value": 1}


def test_an_error_without_a_message_says_where_it_was_raised_and_from_what() -> None:
    answer = worker._answer("tests.runtimes.workload:raise_bare", {})
    assert answer["error"] == "RuntimeError"
    message = answer["message"]  # not "RuntimeError: " (litert-torch's, in issue 30)
    assert message.startswith("RuntimeError: (no message; raised at workload.py:")
    assert "in raise_bare; from KeyError: 'missing key'" in message
