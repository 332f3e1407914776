"""Array files (``--inputs``, ``--calibration``, ``--eval``) are checked before any array is
loaded, in the CLI process as in the workers (issue 27, items 4 and 10): a zip bomb, a header
declaring more data than its member holds, more data than the memory bound, or a member that is
no ``.npy`` are exit 2 naming the flag, the file and the member; an error lists a few array
names, not 10,000; an ``--eval`` file's label count is checked before any conversion."""

from __future__ import annotations

import io
import os
import re
import resource
import subprocess
import sys
import threading
import time
import zipfile
from pathlib import Path

import numpy as np
import pytest
from numpy.lib import format as npy

from portkit.errors import ExitCode
from tests.conftest import run_cli
from tests.reliability import models

BOMB_SHAPE = (32_000_000, 8)  # float32: 1,024,000,000 bytes, the probe
BOMB_BYTES = "1,024,000,000 bytes"


@pytest.fixture(scope="module")
def pt2(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return models.linear_pt2(tmp_path_factory.mktemp("model"))


def _header(shape: tuple[int, ...], dtype: str = "float32") -> bytes:
    out = io.BytesIO()
    npy.write_array_header_1_0(out, {"descr": npy.dtype_to_descr(np.dtype(dtype)),
                                     "fortran_order": False, "shape": shape})
    return out.getvalue()


@pytest.fixture(scope="module")
def zip_bomb(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A ~1 MB ``.npz`` whose ``x.npy`` is 1 GB of zeros, deflated (as ``savez_compressed``
    writes it), beside 4 labels."""
    path = tmp_path_factory.mktemp("bomb") / "bomb.npz"
    zeros = bytes(2**22)
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED, compresslevel=1) as zf:
        with zf.open("x.npy", "w", force_zip64=True) as f:
            f.write(_header(BOMB_SHAPE))
            left = int(np.prod(BOMB_SHAPE)) * 4
            while left:
                f.write(zeros[:min(left, len(zeros))])
                left -= min(left, len(zeros))
        zf.writestr("labels.npy", _header((4,), "int64") + bytes(32))
    return path


def _measured(args: list[str | Path], cwd: Path, env: dict[str, str] | None = None,
              timeout: float = 120, data_mib: int = 0) -> tuple[int, str, float]:
    """Run ``portkit ARGS``: its exit code, stderr and seconds; killed after ``timeout``.
    ``data_mib``: the CLI process's soft ``RLIMIT_DATA`` (its workers set their own), so
    reading more than that in the CLI fails. (``wait4``'s peak RSS can't tell: a child forked
    from a large test process inherits its high-water mark through exec.)"""
    def limit() -> None:
        if data_mib:
            _, hard = resource.getrlimit(resource.RLIMIT_DATA)
            resource.setrlimit(resource.RLIMIT_DATA, (data_mib * 2**20, hard))

    err = cwd / "stderr.txt"
    start = time.monotonic()
    with open(err, "w") as stderr:
        proc = subprocess.Popen([sys.executable, "-m", "portkit", *map(str, args)], cwd=cwd,
                                stdout=subprocess.DEVNULL, stderr=stderr,
                                env={**os.environ, **(env or {})}, preexec_fn=limit)
        timer = threading.Timer(timeout, proc.kill)
        timer.start()
        try:
            _, status = os.waitpid(proc.pid, 0)
        finally:
            timer.cancel()
    proc.returncode = os.waitstatus_to_exitcode(status)
    return proc.returncode, err.read_text(), time.monotonic() - start


def _error(stderr: str) -> str:
    errors = [line for line in stderr.splitlines() if line.startswith("portkit: error:")]
    assert len(errors) == 1, stderr[-3000:]
    return errors[0]


def _fails(result: subprocess.CompletedProcess[str], *fragments: str) -> str:
    assert result.returncode == ExitCode.INVALID_INPUT, result.stderr[-3000:]
    line = _error(result.stderr)
    for fragment in fragments:
        assert fragment in line, line
    return line


# Item 4: the bomb is refused from the zip's directory, before anything is decompressed.
@pytest.mark.parametrize("flag", ["--calibration", "--eval"])
def test_a_zip_bomb_is_refused_before_it_is_decompressed(pt2, zip_bomb, tmp_path, flag
                                                         ) -> None:
    target = ["--to", "tflite", "--quantize", "int8", "-o", tmp_path / "q.tflite"] \
        if flag == "--calibration" else ["--to", "onnx", "-o", tmp_path / "m.onnx"]
    code, stderr, seconds = _measured(  # 1 GB can't be read within the CLI's 400 MiB
        ["convert", pt2, *target, flag, zip_bomb], tmp_path, timeout=90, data_mib=400)
    assert code == ExitCode.INVALID_INPUT, stderr[-3000:]
    line = _error(stderr)
    for fragment in (f"{flag} {zip_bomb}", "member 'x.npy'", "32000000x8 float32",
                     BOMB_BYTES, "zip bomb"):
        assert fragment in line, line
    assert seconds < 60 and "MemoryError" not in stderr


@pytest.mark.parametrize("flag", ["--calibration", "--eval"])
def test_a_header_declaring_more_than_its_member_holds_is_exit_2(pt2, tmp_path, flag) -> None:
    path = tmp_path / "liar.npz"
    with zipfile.ZipFile(path, "w") as zf:  # the header alone: no data behind it
        zf.writestr("x.npy", _header(BOMB_SHAPE))
        zf.writestr("labels.npy", _header((4,), "int64") + bytes(32))
    target = ["--to", "tflite", "--quantize", "int8", "-o", tmp_path / "q.tflite"] \
        if flag == "--calibration" else ["--to", "onnx", "-o", tmp_path / "m.onnx"]
    _fails(run_cli("convert", pt2, *target, flag, path),
           f"{flag} {path}", "member 'x.npy'", "32000000x8 float32", BOMB_BYTES,
           "holds 0 bytes")


def test_arrays_beyond_the_memory_bound_are_exit_2_naming_the_limit(pt2, tmp_path) -> None:
    path = tmp_path / "big.npz"
    np.savez(path, x=np.ones((12 * 2**15, 1, 8), np.float32))  # 12 MiB, stored
    result = run_cli("convert", pt2, "--to", "tflite", "--quantize", "int8", "--calibration",
                     path, "-o", tmp_path / "q.tflite", env={"PORTKIT_MEMORY_LIMIT_MB": "40"})
    _fails(result, f"--calibration {path}", "12,582,912 bytes", "10 MiB",
           "PORTKIT_MEMORY_LIMIT_MB")


def test_a_bare_npy_header_declaring_more_than_the_file_holds_is_exit_2(pt2, tmp_path
                                                                        ) -> None:
    path = tmp_path / "x.npy"
    path.write_bytes(_header(BOMB_SHAPE))
    _fails(run_cli("convert", pt2, "--to", "onnx", "--inputs", path, "-o",
                   tmp_path / "o.onnx"),
           f"--inputs {path}", "32000000x8 float32", BOMB_BYTES, "holds 0 bytes")


# Item 10: a member that is no .npy.
def _not_npy(folder: Path) -> Path:
    path = folder / "input.npz"
    with zipfile.ZipFile(path, "w") as zf:
        zf.writestr("input.npy", b"hello")
    return path


@pytest.mark.parametrize("command", ["convert --inputs", "convert --calibration",
                                     "validate --inputs"])
def test_an_npz_member_that_is_no_npy_is_exit_2_naming_it(pt2, tmp_path, command) -> None:
    path = _not_npy(tmp_path)
    if command == "convert --inputs":
        args = ["convert", pt2, "--to", "onnx", "--inputs", path, "-o", tmp_path / "o.onnx"]
    elif command == "convert --calibration":
        args = ["convert", pt2, "--to", "tflite", "--quantize", "int8", "--calibration", path,
                "-o", tmp_path / "o.tflite"]
    else:
        relu = models.relu(tmp_path)
        args = ["validate", relu, "--reference", relu, "--inputs", path]
    flag = command.split()[1]
    _fails(run_cli(*args), f"{flag} {path}", "member 'input.npy'", "not an .npy array",
           "numpy.savez")


def test_a_folder_file_that_is_no_npy_is_exit_2_naming_it(pt2, tmp_path) -> None:
    folder = tmp_path / "samples"
    folder.mkdir()
    np.save(folder / "0.npy", np.zeros((1, 8), np.float32))
    (folder / "1.npy").write_bytes(b"hello")
    _fails(run_cli("convert", pt2, "--to", "onnx", "--inputs", folder, "-o",
                   tmp_path / "o.onnx"),
           f"--inputs {folder}", "1.npy", "not an .npy array")


# Smaller: what an error lists, and --eval's labels counted before any conversion.
def test_an_error_names_a_few_of_10000_arrays_and_counts_the_rest(pt2, tmp_path) -> None:
    path = tmp_path / "many.npz"
    np.savez(path, **{f"a{i}": np.zeros(1, np.float32) for i in range(10_000)})
    line = _fails(run_cli("convert", pt2, "--to", "onnx", "--inputs", path,
                          "-o", tmp_path / "o.onnx"), "a0, a1", "and 9,99")
    assert len(line) < 500, line


def test_an_eval_file_of_10000_arrays_without_labels_names_a_few(pt2, tmp_path) -> None:
    path = tmp_path / "many.npz"
    np.savez(path, **{f"a{i}": np.zeros(1, np.float32) for i in range(10_000)})
    line = _fails(run_cli("convert", pt2, "--to", "onnx", "--eval", path,
                          "-o", tmp_path / "o.onnx"), f"--eval {path}", "and 9,99", "'labels'")
    assert len(line) < 500, line


def test_an_eval_label_count_that_fits_no_sample_count_is_refused_before_converting(
        pt2, tmp_path) -> None:
    path = tmp_path / "eval.npz"
    np.savez(path, x=np.random.default_rng(0).random((20, 1, 8), np.float32),
             labels=np.zeros(7, np.int64))
    result = run_cli("convert", pt2, "--to", "onnx", "--eval", path, "-o", tmp_path / "o.onnx")
    _fails(result, f"--eval {path}", "7 labels for 20 samples", "'x' has shape (20, 1, 8)")
    assert "Converting" not in result.stdout + result.stderr
    assert not (tmp_path / "o.onnx").exists()


def test_a_small_compressed_member_inflating_far_is_still_read(tmp_path) -> None:
    # A new strictness never breaks a default: 8 MiB of ones (a mask) saved with
    # savez_compressed inflates ~1000x, under the 64 MiB floor of the bomb rule.
    from portkit.formats.arrays import read_arrays

    path = tmp_path / "mask.npz"
    np.savez_compressed(path, mask=np.ones((2048, 1024), dtype=np.float32))
    assert read_arrays(str(path), "--calibration")["mask"].sum() == 2048 * 1024


@pytest.mark.parametrize("name", ["missing.npz", "bad.npz"])
def test_an_inputs_file_is_refused_before_any_work(pt2, tmp_path, name) -> None:
    # Checked where the flags are parsed (options.feed), as --calibration and --eval are: the
    # reference worker never starts ("Running m.pt2 as the reference" is never printed).
    if name == "bad.npz":
        with zipfile.ZipFile(tmp_path / name, "w") as zf:
            zf.writestr("input.npy", b"hello")
    done = run_cli("convert", pt2, "--to", "onnx", "-o", tmp_path / "m.onnx", "--inputs",
                   tmp_path / name, cwd=tmp_path)
    why = "no such file or folder" if name == "missing.npz" else "is not an .npy array"
    assert why in _fails(done, f"--inputs {tmp_path / name}")
    assert "as the reference" not in done.stderr and not (tmp_path / "m.onnx").exists()


def _npy_bytes(array: np.ndarray) -> bytes:
    out = io.BytesIO()
    np.save(out, array)
    return out.getvalue()


def _damaged(kind: str, folder: Path) -> Path:
    """An array file damaged one way, each refused by its own check of the header or the zip."""
    if kind == "npy version 3":
        path = folder / "v3.npy"
        path.write_bytes(npy.MAGIC_PREFIX + b"\x03\x00" + bytes(64))
    elif kind == "damaged header":
        path = folder / "bad.npy"
        header = b"{'descr': '<f4', 'fortran_order': False}" + b" " * 20 + b"\n"  # no shape
        path.write_bytes(npy.MAGIC_PREFIX + b"\x01\x00" + len(header).to_bytes(2, "little")
                         + header)
    elif kind == "zip directory past the file":
        path = folder / "cut.npz"
        with zipfile.ZipFile(path, "w") as zf:
            zf.writestr("x.npy", _npy_bytes(np.zeros(1000, np.float32)))
        data = path.read_bytes()
        path.write_bytes(data[:1000] + data[3000:])  # member data cut, its directory kept
    else:  # a folder of .npy files of two shapes
        path = folder / "mixed"
        path.mkdir()
        np.save(path / "a.npy", np.zeros((1, 8), np.float32))
        np.save(path / "b.npy", np.zeros((1, 9), np.float32))
    return path


@pytest.mark.parametrize(("kind", "says"), [
    ("npy version 3", "an .npy of version 3.0, which portkit doesn't read"),
    ("damaged header", "has a damaged .npy header"),
    ("zip directory past the file", "declares more compressed data than the file holds"),
    ("mixed shapes", "hold arrays of 2 shapes"),
])
def test_a_damaged_array_file_is_refused_by_its_header_check(tmp_path, kind, says) -> None:
    from portkit.errors import UsageError
    from portkit.formats.arrays import check_arrays

    path = _damaged(kind, tmp_path)
    with pytest.raises(UsageError, match=f"^--calibration {path}: .*{re.escape(says)}"):
        check_arrays(path, "--calibration")


def test_an_npz_of_more_members_than_archives_may_hold_is_refused(tmp_path, monkeypatch
                                                                   ) -> None:
    from portkit.errors import UsageError
    from portkit.formats import arrays

    monkeypatch.setattr(arrays, "MAX_ARCHIVE_MEMBERS", 3)  # 100,000 in earnest
    path = tmp_path / "many.npz"
    np.savez(path, **{f"a{i}": np.zeros(1, np.float32) for i in range(4)})
    with pytest.raises(UsageError, match="a zip of 4 members \\(limit 3\\)"):
        arrays.check_arrays(path)


@pytest.mark.parametrize("value", ["abc", "0", "-5", "1.5"])
def test_a_memory_limit_that_is_no_whole_number_of_mb_is_refused(monkeypatch, value) -> None:
    from portkit.bounds import MEMORY_ENV, memory_limit_mb
    from portkit.errors import UsageError

    monkeypatch.setenv(MEMORY_ENV, value)
    with pytest.raises(UsageError, match=f"{MEMORY_ENV}='{re.escape(value)}': must be a whole"):
        memory_limit_mb()
