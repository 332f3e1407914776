"""Exit 70 means a bug in portkit, and only that: an error nobody mapped, raised in a worker
or in the CLI process, says so; a user's error never does."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from portkit import errors
from portkit.cli import app
from portkit.runtimes import worker
from portkit.runtimes.worker import task
from tests.conftest import run_cli


@task
def buggy(value: int) -> int:
    """A worker task with a bug in it."""
    raise RuntimeError(f"unexpected value {value}")


def _exit_code(argv: list[str]) -> int:
    with pytest.raises(SystemExit) as info:
        app.main(argv)
    return int(info.value.code)


def test_a_bug_in_a_worker_task_crosses_back_as_a_worker_error_with_exit_70() -> None:
    with pytest.raises(errors.WorkerError, match="RuntimeError: unexpected value 3") as info:
        worker.call(buggy, value=3)
    assert info.value.exit_code == errors.ExitCode.INTERNAL == 70
    assert info.value.error_type == "RuntimeError" and "Traceback" in info.value.traceback


def test_a_bug_in_a_command_exits_70_and_asks_for_a_report(monkeypatch, capsys) -> None:
    command = app.cli.commands["inspect"]

    def broken(*_args: object, **_kwargs: object) -> None:
        raise KeyError("missing")

    monkeypatch.setattr(command, "callback", broken)
    assert _exit_code(["inspect", "model.onnx"]) == 70
    err = capsys.readouterr().err
    assert "portkit: internal error (KeyError: 'missing'); this is a bug" in err


def test_a_bug_in_a_worker_reaches_the_cli_as_exit_70(monkeypatch, capsys) -> None:
    command = app.cli.commands["inspect"]
    monkeypatch.setattr(command, "callback", lambda *_a, **_k: worker.call(buggy, value=1))
    assert _exit_code(["inspect", "model.onnx"]) == 70
    assert ("portkit: internal error in a worker (RuntimeError: unexpected value 1); this is a "
            "bug") in capsys.readouterr().err


def test_a_users_error_is_not_taken_for_a_bug(monkeypatch, capsys) -> None:
    command = app.cli.commands["inspect"]

    def refused(*_args: object, **_kwargs: object) -> None:
        raise errors.UsageError("--input x: bad shape")

    monkeypatch.setattr(command, "callback", refused)
    assert _exit_code(["inspect", "model.onnx"]) == 2
    assert "this is a bug" not in capsys.readouterr().err


class _Raises(torch.nn.Module):
    """A model whose own code raises on every input (an assert a model makes of its input)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.shape[0] > 0:
            raise RuntimeError("this model refuses every input")
        return x


def test_a_source_model_that_raises_is_the_users_error_not_a_bug(tmp_path: Path) -> None:
    source = tmp_path / "raises.pt"
    torch.jit.save(torch.jit.script(_Raises()), str(source))
    done = run_cli("convert", source, "--to", "onnx", "--input", "x:1x4")
    assert done.returncode == 2, done.stderr
    [line] = [ln for ln in done.stderr.splitlines() if ln.startswith("portkit:")]
    assert "raises.pt: the model itself raised" in line and "x:1x4:float32" in line
    assert "this is a bug" not in line
