"""Every way out of the CLI says what happened with an honest exit code: a reader that closed
the pipe is no parity failure, an OS resource limit is exit 5 (not a bug), a terminal that can't
print a file's name is no crash, and ``--json`` prints one JSON document on every exit path."""

from __future__ import annotations

import errno
import json
import os
import resource
import signal
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest

from portkit import errors
from portkit.cli import app
from portkit.runtimes import worker
from portkit.runtimes.worker import task
from tests.reliability import models


@pytest.fixture(scope="module")
def linear(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return models.linear_pt2(tmp_path_factory.mktemp("linear"))


def _limit(kind: int, value: int) -> Callable[[], None]:
    return lambda: resource.setrlimit(kind, (value, value))


def _portkit(*args: str | Path, cwd: Path, env: dict[str, str] | None = None,
             limit: Callable[[], None] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "portkit", *map(str, args)], cwd=cwd,
                          env={**os.environ, **(env or {})}, preexec_fn=limit,
                          capture_output=True, text=True, timeout=300)


def _exit_code(argv: list[str]) -> int:
    with pytest.raises(SystemExit) as info:
        app.main(argv)
    return int(info.value.code)


# Item 13: a broken pipe is never exit 1.

@pytest.mark.parametrize("as_json", [False, True])
def test_a_reader_that_closes_the_pipe_leaves_the_verdict(tmp_path: Path, as_json: bool) -> None:
    """``portkit validate … | head -1``: the parity verdict (passed, 0) stands; rich's
    SystemExit(1) on a broken pipe said "parity failed"."""
    model = models.relu(tmp_path)
    argv = ["validate", model, "--reference", model, *(["--json"] if as_json else [])]
    proc = subprocess.Popen([sys.executable, "-m", "portkit", *map(str, argv)], cwd=tmp_path,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    assert proc.stdout is not None and proc.stderr is not None
    proc.stdout.close()  # the reader went away before the report was printed
    stderr = proc.stderr.read()
    assert proc.wait(timeout=120) == 0, stderr
    assert "Traceback" not in stderr and "Exception ignored" not in stderr, stderr


@pytest.mark.parametrize("argv", [["--help"], ["convert", "--help"], ["--version"]])
def test_a_closed_pipe_under_help_exits_141(tmp_path: Path, argv: list[str]) -> None:
    """No verdict to keep: 128 + SIGPIPE (click's own handling exits 1)."""
    proc = subprocess.Popen([sys.executable, "-m", "portkit", *argv], cwd=tmp_path,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    assert proc.stdout is not None and proc.stderr is not None
    proc.stdout.close()
    stderr = proc.stderr.read()
    assert proc.wait(timeout=60) == 141 and stderr == "", stderr


def test_a_broken_pipe_before_any_verdict_exits_141(monkeypatch, capsys) -> None:
    """Where no verdict is known, a closed pipe exits 128 + SIGPIPE, as a shell reports it."""
    def closed(*_args: object, **_kwargs: object) -> None:
        raise BrokenPipeError(errno.EPIPE, "Broken pipe")

    monkeypatch.setattr(app.cli.commands["inspect"], "callback", closed)
    assert _exit_code(["inspect", "model.onnx"]) == 128 + signal.SIGPIPE == 141
    assert "Traceback" not in capsys.readouterr().err


# Item 14: OS resource limits exit 5 and say which ulimit to raise.

@pytest.mark.parametrize(("code", "exit_code", "words"), [
    (errno.ENOSPC, 5, "no space left"), (errno.EFBIG, 5, "ulimit -f"),
    (errno.EMFILE, 5, "ulimit -n"), (errno.ENFILE, 5, "too many open files"),
    (errno.ENOMEM, 5, "out of memory"), (errno.ENAMETOOLONG, 2, "too long"),
    (errno.EACCES, 2, "permission denied"), (errno.EPERM, 2, "not permitted"),
    (errno.ENOENT, 2, "no such file"), (errno.ENOTDIR, 2, "not a folder"),
    (errno.EISDIR, 2, "a folder, not a file"), (errno.EROFS, 2, "read-only"),
])
def test_os_errors_map_to_documented_exit_codes(code: int, exit_code: int, words: str) -> None:
    error = errors.from_os_error(OSError(code, os.strerror(code), "out/r.json"), "--report")
    assert error.exit_code == exit_code
    assert str(error).startswith("--report (out/r.json): ") and words in str(error)
    assert isinstance(error, errors.ResourceError if exit_code == 5 else errors.PathError)


def test_too_many_open_files_exits_5(tmp_path: Path, linear: Path) -> None:
    """``ulimit -n 16``: the CLI or its worker runs out of file descriptors."""
    result = _portkit("convert", linear, "--to", "onnx", "-o", tmp_path / "m.onnx", cwd=tmp_path,
                      limit=_limit(resource.RLIMIT_NOFILE, 16))
    assert result.returncode == 5, result.stderr
    assert "too many open files" in result.stderr and "ulimit -n" in result.stderr
    assert "this is a bug" not in result.stderr


def test_a_worker_that_cannot_map_libtorch_exits_5(tmp_path: Path, linear: Path) -> None:
    """``ulimit -v 300000``: the CLI starts, its worker can't map libtorch_cpu.so."""
    result = _portkit("inspect", linear, cwd=tmp_path,
                      limit=_limit(resource.RLIMIT_AS, 300_000 * 1024))
    assert result.returncode == 5, result.stderr
    assert "ulimit -v" in result.stderr and "this is a bug" not in result.stderr


@task
def fails_with(kind: str) -> None:
    """A worker task that meets an OS limit."""
    if kind == "emfile":
        raise OSError(errno.EMFILE, "Too many open files", "/some/file")
    if kind == "map":
        raise ImportError("libtorch_cpu.so: failed to map segment from shared object")
    raise OSError(errno.ENOMEM, "Cannot allocate memory")


@pytest.mark.parametrize(("kind", "words"), [
    ("emfile", "ulimit -n"), ("map", "ulimit -v"), ("enomem", "memory")])
def test_a_workers_resource_error_crosses_back_as_exit_5(kind: str, words: str) -> None:
    with pytest.raises((errors.WorkerCrashedError, errors.ResourceError)) as info:
        worker.call(fails_with, kind=kind, what="loading m.pt2")
    assert info.value.exit_code == 5 and words in str(info.value), str(info.value)


def test_a_memory_error_in_the_cli_exits_5(monkeypatch, capsys) -> None:
    def exhausted(*_args: object, **_kwargs: object) -> None:
        raise MemoryError()

    monkeypatch.setattr(app.cli.commands["inspect"], "callback", exhausted)
    assert _exit_code(["inspect", "model.onnx"]) == 5
    assert "out of memory" in capsys.readouterr().err


# Item 16: a name the terminal's encoding can't print is escaped, not a crash.

def test_a_unicode_name_on_an_ascii_terminal(tmp_path: Path) -> None:
    model = models.relu(tmp_path).rename(tmp_path / "modèle.onnx")
    result = _portkit("inspect", model, cwd=tmp_path, env={"PYTHONIOENCODING": "ascii"})
    assert result.returncode == 0, result.stderr
    assert "mod\\xe8le.onnx" in result.stdout


# Smaller: --json prints one JSON document on every exit path.

def _one_document(stdout: str) -> dict[str, object]:
    document = json.loads(stdout)  # one document, nothing around it
    assert isinstance(document, dict)
    return document


@pytest.mark.parametrize(("argv", "exit_code", "error_type"), [
    (["inspect", "missing.onnx", "--json"], 2, "InvalidModelError"),
    (["inspect", "--json", "--no-such-flag", "m.onnx"], 2, "NoSuchOption"),
    (["validate", "--json", "a.onnx"], 2, "UsageError"),
])
def test_json_errors_are_one_document(tmp_path: Path, argv: list[str], exit_code: int,
                                      error_type: str) -> None:
    result = _portkit(*argv, cwd=tmp_path)
    assert result.returncode == exit_code, result.stderr
    document = _one_document(result.stdout)
    assert document["exit_code"] == exit_code and document["error_type"] == error_type
    assert isinstance(document["error"], str) and "\n" not in document["error"]


def test_json_on_a_timeout_is_one_document(tmp_path: Path, linear: Path) -> None:
    result = _portkit("inspect", linear, "--json", "--timeout", "0.01", cwd=tmp_path)
    assert result.returncode == 6, result.stderr
    assert _one_document(result.stdout)["exit_code"] == 6


@pytest.mark.parametrize(("raised", "exit_code"), [
    (KeyboardInterrupt(), 130), (app.Interrupted(signal.SIGTERM), 143)])
def test_json_on_an_interrupt_is_one_document(monkeypatch, capsys, raised: BaseException,
                                              exit_code: int) -> None:
    def interrupted(*_args: object, **_kwargs: object) -> None:
        raise raised

    monkeypatch.setattr(app.cli.commands["inspect"], "callback", interrupted)
    assert _exit_code(["inspect", "model.onnx", "--json"]) == exit_code
    document = _one_document(capsys.readouterr().out)
    assert document["exit_code"] == exit_code and document["error_type"] == "Interrupted"


def test_json_with_a_report_is_the_report_alone(tmp_path: Path) -> None:
    model = models.relu(tmp_path)
    result = _portkit("validate", model, "--reference", model, "--json", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert "error_type" not in _one_document(result.stdout)  # the report, and nothing more


def test_check_json_is_a_file_not_stdout(tmp_path: Path) -> None:
    """``check --json PATH`` names a file: an error there prints no document on stdout."""
    result = _portkit("check", tmp_path / "missing.toml", "--json", tmp_path / "run.json",
                      cwd=tmp_path)
    assert result.returncode == 2 and result.stdout == "", result.stderr
