"""Issue 13, "nothing lost": every path portkit writes meets one rule, checked before any work
(``portkit.io.check_outputs``), and ``-o`` only ever receives an artifact that passed.

The probes run the CLI as a user would; the rule's other cases are unit tests of the function.
"""

from __future__ import annotations

import json
import os
import shutil
import stat
from collections.abc import Callable
from pathlib import Path

import pytest

import portkit
from portkit.convert.outputs import check_paths
from portkit.errors import ResourceError, UsageError
from portkit.formats import Format, sniff
from portkit.io import Folder, Output, atomic_write_text, check_outputs, failed_path
from portkit.options import ConvertJob
from tests.conftest import run_cli

Saved = Callable[[str, str], Path]
SHAPE = "x:1x3x32x32"  # the cnn fixture's input


@pytest.fixture
def source(saved_models: Saved, tmp_path: Path) -> Path:
    """A private copy of the cnn fixture (TorchScript), so a test that loses it loses only its
    own."""
    return Path(shutil.copy2(saved_models("cnn", "torchscript"), tmp_path / "cnn.pt"))


def _refused(done, *words: str) -> None:  # type: ignore[no-untyped-def]
    """Exit 2 with one line on stderr holding ``words``."""
    assert done.returncode == 2, done.stdout + done.stderr
    [line] = done.stderr.strip().splitlines()
    for word in words:
        assert word in line, line


def _dev_null() -> Path:
    """``/dev/null``, the one device node a test can use unprivileged (skips if something on
    this machine has already replaced it with a file: then it proves nothing)."""
    if not stat.S_ISCHR(os.lstat("/dev/null").st_mode):
        pytest.skip("/dev/null is not a character device here (something replaced it)")
    return Path("/dev/null")


# The probes, through the CLI.

def test_report_onto_the_source_is_refused_and_the_source_kept(source: Path) -> None:
    before = source.read_bytes()
    done = run_cli("convert", source, "--to", "onnx", "--input", SHAPE,
                   "-o", source.with_name("a.onnx"), "--report", source)
    _refused(done, "--report", str(source), "input of this run")
    assert source.read_bytes() == before
    assert not source.with_name("a.onnx").exists()


def test_report_and_o_on_one_path_is_refused_before_any_work(source: Path) -> None:
    out = source.parent / "out.onnx"
    done = run_cli("convert", source, "--to", "onnx", "--input", SHAPE, "-o", out,
                   "--report", out)
    _refused(done, "--report", "same path as -o")
    assert not out.exists()


def test_report_onto_a_folder_is_refused_before_the_artifact_is_written(source: Path) -> None:
    folder = source.parent / "reports"
    folder.mkdir()
    out = source.parent / "r.onnx"
    done = run_cli("convert", source, "--to", "onnx", "--input", SHAPE, "-o", out,
                   "--report", folder)
    _refused(done, "--report", "existing folder")
    assert not out.exists() and list(folder.iterdir()) == []


def test_o_onto_a_fifo_is_refused_and_the_fifo_kept(source: Path) -> None:
    fifo = source.parent / "pipe.onnx"
    os.mkfifo(fifo)
    done = run_cli("convert", source, "--to", "onnx", "--input", SHAPE, "-o", fifo)
    _refused(done, "-o", "FIFO")
    assert stat.S_ISFIFO(fifo.lstat().st_mode)


def test_o_onto_a_device_node_is_refused_and_the_device_kept(source: Path) -> None:
    done = run_cli("convert", source, "--to", "onnx", "--input", SHAPE, "-o", _dev_null())
    _refused(done, "-o /dev/null", "character device")
    assert stat.S_ISCHR(os.lstat("/dev/null").st_mode)


def test_o_suffix_must_fit_to(source: Path) -> None:
    out = source.parent / "c.tflite"
    done = run_cli("convert", source, "--to", "onnx", "--input", SHAPE, "-o", out)
    _refused(done, f"-o {out}", "--to onnx writes an ONNX model",
             f"name it {out.with_suffix('.onnx')}")
    assert not out.exists()


def test_parity_failure_keeps_o_and_writes_the_failed_artifact_beside_it(source: Path) -> None:
    out = source.parent / "m.onnx"
    out.write_bytes(b"the previous artifact")
    report = source.parent / "r.json"
    done = run_cli("convert", source, "--to", "onnx", "--input", SHAPE, "-o", out,
                   "--atol", "0", "--rtol", "0", "--report", report)  # exact equality: fails
    assert done.returncode == 1, done.stdout + done.stderr
    assert out.read_bytes() == b"the previous artifact"
    failed = source.parent / "m.failed.onnx"
    assert sniff(failed) is Format.ONNX
    data = json.loads(report.read_text())
    assert data["artifact_failed"] is True and data["artifact"]["path"] == str(failed)
    assert f"failed artifact kept at {failed}" in " ".join(done.stdout.split())


def test_o_is_replaced_by_an_artifact_that_passes(source: Path, workers) -> None:
    out = source.parent / "m.onnx"
    out.write_bytes(b"the previous artifact")
    report = portkit.convert(source, "onnx", out, inputs=[SHAPE], workers=workers)
    assert report.exit_code == 0 and not report.artifact_failed
    assert report.artifact is not None and report.artifact.path == str(out)
    assert out.read_bytes() != b"the previous artifact"
    assert not failed_path(out).exists()


def test_validate_save_bundle_onto_its_artifact_is_refused(source: Path) -> None:
    done = run_cli("validate", source, "--reference", source, "--save-bundle", source)
    _refused(done, "--save-bundle", "input of this run")


def test_check_outputs_are_checked_before_the_gate_runs(tmp_path: Path) -> None:
    config = tmp_path / "portkit.toml"
    config.write_text('[[model]]\nname = "cnn"\nfixture = "cnn"\ntargets = ["onnx"]\n')
    done = run_cli("check", config, "--junit", config)
    _refused(done, "--junit", "input of this run")
    done = run_cli("check", config, "--json", tmp_path / "r.json", "--markdown",
                   tmp_path / "r.json")
    _refused(done, "--markdown", "same path as --json")
    assert not (tmp_path / ".portkit-check").exists()


def test_demo_report_onto_a_folder_is_refused_before_building(tmp_path: Path) -> None:
    done = run_cli("demo", "--dir", tmp_path / "d", "--report", tmp_path)
    _refused(done, "--report", "existing folder")
    assert not (tmp_path / "d").exists()


# The rule, as a function.

def test_climbing_and_missing_parents_are_refused(tmp_path: Path) -> None:
    with pytest.raises(UsageError, match=r"^--report a/../r.json: .*without '\.\.'"):
        check_outputs([Output("--report", Path("a/../r.json"))])
    with pytest.raises(UsageError, match="does not exist; create it first"):
        check_outputs([Output("-o", tmp_path / "missing" / "m.onnx")])


def test_links_and_special_files_are_refused_and_left_alone(tmp_path: Path) -> None:
    target = tmp_path / "t.onnx"
    target.write_bytes(b"keep")
    link = tmp_path / "link.onnx"
    link.symlink_to(target)
    with pytest.raises(UsageError, match="-o .*link.onnx: an existing symlink"):
        check_outputs([Output("-o", link)])
    fifo = tmp_path / "f.json"
    os.mkfifo(fifo)
    with pytest.raises(UsageError, match="--json .*FIFO"):
        check_outputs([Output("--json", fifo)])
    with pytest.raises(UsageError, match="character device"):
        check_outputs([Output("-o", _dev_null())])
    assert target.read_bytes() == b"keep" and stat.S_ISFIFO(fifo.lstat().st_mode)


def test_existing_folders_by_kind(tmp_path: Path) -> None:
    folder = tmp_path / "f"
    folder.mkdir()
    with pytest.raises(UsageError, match="--report .*an existing folder, and --report writes"):
        check_outputs([Output("--report", folder)])
    with pytest.raises(UsageError, match="not a SavedModel or a portkit bundle"):
        check_outputs([Output("--save-bundle", folder, Folder.REPLACED)])
    check_outputs([Output("--work-dir", folder, Folder.WRITTEN_INTO)])
    (folder / "manifest.json").write_text("{}")
    check_outputs([Output("--save-bundle", folder, Folder.REPLACED)])
    check_outputs([Output("--report", None)])  # a flag not given


def test_inputs_are_never_outputs(tmp_path: Path) -> None:
    src = tmp_path / "m.pt"
    src.write_bytes(b"model")
    hard = tmp_path / "hard.pt"
    os.link(src, hard)
    (tmp_path / "via").symlink_to(tmp_path)
    for out in (src, hard, tmp_path / "via" / "m.pt"):
        with pytest.raises(UsageError, match="input of this run"):
            check_outputs([Output("--report", out)], [src])
    bundle = tmp_path / "b"
    bundle.mkdir()
    (bundle / "manifest.json").write_text("{}")
    art = bundle / "m.onnx"
    art.write_bytes(b"x")
    with pytest.raises(UsageError, match="holds an input of this run"):
        check_outputs([Output("--save-bundle", bundle, Folder.REPLACED)], [art])


def test_outputs_are_distinct_and_not_inside_one_replaced_whole(tmp_path: Path) -> None:
    with pytest.raises(UsageError, match="--junit .*: the same path as --json"):
        check_outputs([Output("--json", tmp_path / "r"), Output("--junit", tmp_path / "r")])
    (tmp_path / "sm").mkdir()
    (tmp_path / "sm" / "saved_model.pb").write_bytes(b"")
    with pytest.raises(UsageError, match="--report .*inside -o"):
        check_outputs([Output("-o", tmp_path / "sm", Folder.REPLACED),
                       Output("--report", tmp_path / "sm" / "r.json")])
    check_outputs([Output("--work-dir", tmp_path, Folder.WRITTEN_INTO),
                   Output("--json", tmp_path / "r.json")])


def test_convert_checks_o_its_failed_path_and_suffix(tmp_path: Path) -> None:
    src = tmp_path / "m.pt"
    job = ConvertJob(source=src, target=Format.ONNX)
    assert check_paths(job) == tmp_path / "m.onnx"  # the default: beside the source
    (tmp_path / "m.failed.onnx").symlink_to(src)
    with pytest.raises(UsageError, match="failed artifact .*m.failed.onnx: an existing symlink"):
        check_paths(job)
    sm = ConvertJob(source=src, target=Format.SAVEDMODEL, output=tmp_path / "sm.tflite")
    with pytest.raises(UsageError, match=r"writes a SavedModel folder; name it .*/sm$"):
        check_paths(sm)
    pt2 = ConvertJob(source=src, target=Format.EXPORTED_PROGRAM, output=tmp_path / "e.pt")
    with pytest.raises(UsageError, match=r"--to pt2 writes an ExportedProgram; name it .*/e\.pt2$"):
        check_paths(pt2)
    assert failed_path(tmp_path / "sm") == tmp_path / "sm.failed"
    for name in ("ts.pt", "ts.torchscript"):  # TorchScript goes by either suffix
        out = tmp_path / name
        assert check_paths(ConvertJob(source=src, target=Format.TORCHSCRIPT, output=out)) == out


def test_a_write_that_fails_late_names_its_own_flag(tmp_path: Path,
                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    # --report is written after the artifact: a full disk then blames --report, not -o.
    def disk_full(src: object, dst: object) -> None:
        raise OSError(28, "No space left on device")

    monkeypatch.setattr("portkit.io.os.replace", disk_full)
    with pytest.raises(ResourceError, match=r"^--report .*r\.json: cannot write it: no space"):
        atomic_write_text(tmp_path / "r.json", "{}", "--report")
    assert list(tmp_path.iterdir()) == []
