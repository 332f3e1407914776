"""A CLI stopped by SIGTERM or SIGHUP cleans up and exits 128 + the signal; one killed outright
takes its workers with it, and the folders it left are swept by the next run."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from portkit.errors import InternalError
from portkit.io import KINDS, owned_dir, staging_dir, sweep
from tests.reliability import models


def _workers(tmp: Path) -> list[int]:
    """Live worker processes whose scratch folder is under ``tmp``."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            cmdline = (entry / "cmdline").read_bytes().split(b"\0")
            state = (entry / "stat").read_text().rsplit(")", 1)[1].split()[0]
        except OSError:
            continue
        if (b"portkit.runtimes.worker" in cmdline and state != "Z"
                and any(arg.startswith(str(tmp).encode()) for arg in cmdline)):
            found.append(int(entry.name))
    return found


def _leftovers(tmp: Path, out: Path) -> list[str]:
    beside = [p.name for p in out.parent.iterdir() if ".portkit-" in p.name]
    return beside + [p.name for p in tmp.iterdir() if p.name.startswith("portkit-")]


def _start(tmp_path: Path) -> tuple[subprocess.Popen[str], Path, Path]:
    """``portkit convert relu.onnx --to tflite`` with its temp folder in ``tmp_path/tmp``,
    returned once its workers are running."""
    tmp, work = tmp_path / "tmp", tmp_path / "work"
    tmp.mkdir()
    work.mkdir()
    src = models.relu(work)
    out = work / "relu.tflite"
    proc = subprocess.Popen([sys.executable, "-m", "portkit", "convert", str(src), "--to",
                             "tflite", "-o", str(out)], env={**os.environ, "TMPDIR": str(tmp)},
                            stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 60
    while len(_workers(tmp)) < 2:  # the reference and the conversion
        assert proc.poll() is None, proc.communicate()[1]
        assert time.monotonic() < deadline, "no worker started within 60 s"
        time.sleep(0.1)
    assert _leftovers(tmp, out), "expected a staging folder and worker scratch while it runs"
    return proc, tmp, out


@pytest.mark.parametrize(("sig", "code"), [(signal.SIGTERM, 143), (signal.SIGHUP, 129)])
def test_a_terminated_convert_cleans_up_and_says_so(tmp_path: Path, sig: signal.Signals,
                                                    code: int) -> None:
    proc, tmp, out = _start(tmp_path)
    proc.send_signal(sig)
    # A hang detector, not a timing bound: a loaded CI machine took over 2 s to reap workers.
    _, stderr = proc.communicate(timeout=60)
    assert proc.returncode == code, stderr
    assert f"portkit: interrupted ({sig.name})" in stderr
    assert _leftovers(tmp, out) == []
    assert _workers(tmp) == []
    assert not out.exists()


def test_a_killed_convert_takes_its_workers_and_the_next_run_sweeps_its_folders(
        tmp_path: Path) -> None:
    proc, tmp, out = _start(tmp_path)
    proc.kill()
    proc.wait()
    deadline = time.monotonic() + 30  # the watchdog kills them at once; a loaded machine is slow
    while _workers(tmp) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert _workers(tmp) == []
    left = _leftovers(tmp, out)
    assert any(name.startswith("portkit-worker-") for name in left)
    assert any(name.startswith(".relu.tflite.portkit-stage-") for name in left)
    # The next run sweeps them once they are a few seconds old (their owner is gone): the
    # worker scratch at start, the staging folder when it stages beside the same target.
    old = time.time() - 60
    for folder in [*tmp.iterdir(), *out.parent.iterdir()]:
        os.utime(folder, (old, old))
    bad = out.parent / "bad.onnx"
    bad.write_bytes(b"")
    subprocess.run([sys.executable, "-m", "portkit", "convert", str(bad), "--to", "tflite",
                    "-o", str(out)], env={**os.environ, "TMPDIR": str(tmp)}, timeout=60,
                   check=False, capture_output=True)
    assert [p.name for p in tmp.iterdir()] == []
    with staging_dir(out):
        pass
    assert _leftovers(tmp, out) == []


def test_only_folders_of_dead_owners_are_swept(tmp_path: Path) -> None:
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"],
                          capture_output=True, text=True, check=True).stdout.strip()
    names = {
        "dead": f".m.tflite.portkit-stage-{dead}-abc",
        "dead_old": f".m.tflite.portkit-old-{dead}",
        "alive": f"portkit-worker-{os.getppid()}-abc",
        "mine": f"portkit-worker-{os.getpid()}-abc",
        "fresh": f"portkit-module-{dead}-xyz",
        "other": f"portkit-notes-{dead}-abc",
    }
    old = time.time() - 60
    for key, name in names.items():
        (tmp_path / name).mkdir()
        if key != "fresh":
            os.utime(tmp_path / name, (old, old))
    removed = sweep(tmp_path)
    assert sorted(p.name for p in removed) == sorted([names["dead"], names["dead_old"]])
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(
        names[k] for k in ("alive", "mine", "fresh", "other"))


def test_every_kind_of_owned_folder_is_one_sweep_removes(tmp_path: Path) -> None:
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"],
                          capture_output=True, text=True, check=True).stdout.strip()
    made = [owned_dir(kind, tmp_path) for kind in KINDS]  # debug's trace folders among them
    old = time.time() - 60
    for folder in made:  # as if a killed run (the pid of a process now gone) had left them
        left = folder.with_name(folder.name.replace(f"-{os.getpid()}-", f"-{dead}-"))
        folder.rename(left)
        os.utime(left, (old, old))
    assert len(sweep(tmp_path)) == len(KINDS) and list(tmp_path.iterdir()) == []
    with pytest.raises(InternalError, match="sweep knows"):
        owned_dir("notes", tmp_path)
