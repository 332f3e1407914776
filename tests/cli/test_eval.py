"""``--eval`` and ``--max-accuracy-drop`` through the real CLI: refusals are exit 2 with one line,
before any work; the accuracy line sits under the parity table."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest

from tests.conftest import run_cli

Saved = Callable[[str, str], Path]


def _eval_file(path: Path, labels: np.ndarray | None, n: int = 4) -> Path:
    x = np.random.default_rng(0).standard_normal((n, 1, 3, 32, 32)).astype(np.float32)
    np.savez(path, x=x, **({} if labels is None else {"labels": labels}))
    return path


@pytest.mark.parametrize(("labels", "flags", "message"), [
    (np.array([0.0, 1.0, 2.0, 3.0]), [], "'labels' is float64, not integers"),
    (None, [], "no 'labels' array"),
    (np.array([0, 1, -2, 3]), [], "'labels' holds 1 negative value(s)"),
    (np.arange(4), ["--no-validate"], "--eval runs the artifact on labelled samples"),
    (np.arange(4), ["--steps", "2"], "--eval scores one call per sample"),
])
def test_bad_eval_files_and_flags_exit_2_in_one_line_before_any_work(
        saved_models: Saved, tmp_path: Path, labels: np.ndarray | None, flags: list[str],
        message: str) -> None:
    data = _eval_file(tmp_path / "eval.npz", labels)
    out = tmp_path / "cnn.tflite"
    done = run_cli("convert", saved_models("cnn", "pt2"), "--to", "tflite", "-o", out,
                   "--eval", data, *flags)
    assert done.returncode == 2, done.stderr
    [line] = [ln for ln in done.stderr.splitlines() if ln.startswith("portkit:")]
    assert message in line and "Traceback" not in done.stderr
    assert "Converting" not in done.stderr and not out.exists()


def test_max_accuracy_drop_needs_eval(saved_models: Saved, tmp_path: Path) -> None:
    done = run_cli("convert", saved_models("cnn", "pt2"), "--to", "tflite", "-o",
                   tmp_path / "cnn.tflite", "--max-accuracy-drop", "0.01")
    assert done.returncode == 2, done.stderr
    [line] = [ln for ln in done.stderr.splitlines() if ln.startswith("portkit:")]
    assert "--max-accuracy-drop is for --eval data.npz" in line


def test_validate_reports_both_accuracies_under_the_parity_table(converted, saved_models: Saved,
                                                                 tmp_path: Path) -> None:
    artifact, source = converted("cnn", "pt2", "tflite"), saved_models("cnn", "pt2")
    data = _eval_file(tmp_path / "eval.npz", np.zeros(16, np.int64), n=16)
    done = run_cli("validate", artifact, "--reference", source, "--eval", data,
                   "--max-accuracy-drop", "0", "--json")
    assert done.returncode == 0, done.stderr
    acc = json.loads(done.stdout)["accuracy"]
    assert acc["samples"] == 16 and acc["drop"] == 0.0 and acc["passed"] is True
    assert acc["source_top1"] == acc["artifact_top1"] and acc["file"] == str(data)
    done = run_cli("validate", artifact, "--reference", source, "--eval", data)
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    at = next(i for i, ln in enumerate(lines) if ln.startswith("Accuracy on eval.npz"))
    assert lines[at - 1].startswith("└")  # right under the parity table
    assert "(16 labelled samples, output" in lines[at] and "(0.0 points)" in lines[at]
    # Wrong labels count is exit 2 in one line, once the source says how many samples it has.
    short = _eval_file(tmp_path / "short.npz", np.zeros(3, np.int64))
    done = run_cli("validate", artifact, "--reference", source, "--eval", short)
    assert done.returncode == 2, done.stderr
    [line] = [ln for ln in done.stderr.splitlines() if ln.startswith("portkit:")]
    assert f"--eval {short}: 3 labels for 4 samples" in line
