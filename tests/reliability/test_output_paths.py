"""Issue 27, items 3, 5 and 11: every path portkit writes (``debug --hops``'s folder,
``$GITHUB_STEP_SUMMARY``, ``check``'s work and bundle folders, ``demo --dir``) meets the checks
``-o`` and ``--report`` meet, before any work; an OS error on an output is exit 2 (the path) or
5 (a resource ran out), never 70; a full disk while a converter writes is not "no route" (3).

The probes run the CLI on a tiny ``Linear(8, 4) + ReLU`` exported as ``m.pt2``. A read-only or
full folder is a tmpfs mounted in a private mount namespace (``unshare -rm``), skipped where the
kernel does not allow that.
"""

from __future__ import annotations

import os
import resource
import shutil
import signal
import subprocess
import sys
from pathlib import Path

import pytest

import portkit
from portkit import io
from portkit.errors import ExitCode, PortkitError
from portkit.io import Folder, Output, check_outputs
from tests.conftest import run_cli
from tests.reliability import models


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """``m.pt2`` (Linear(8, 4) + ReLU, seed 0) and its ``m.onnx``, made once per module."""
    folder = tmp_path_factory.mktemp("model")
    source = models.linear_pt2(folder)
    report = portkit.convert(source, "onnx", folder / "m.onnx")
    assert report.exit_code == 0, report.routes_tried
    return source, folder / "m.onnx"


@pytest.fixture
def model(built: tuple[Path, Path], tmp_path: Path) -> tuple[Path, Path]:
    """This test's own copies of ``m.pt2`` and ``m.onnx``."""
    return (Path(shutil.copy2(built[0], tmp_path)), Path(shutil.copy2(built[1], tmp_path)))


def _refused(done: subprocess.CompletedProcess[str], code: int, *words: str) -> None:
    """Exit ``code`` with one line on stderr holding ``words``."""
    assert done.returncode == code, done.stdout + done.stderr
    lines = [line for line in done.stderr.strip().splitlines() if line.startswith("portkit:")]
    assert len(lines) == 1, done.stderr
    for word in words:
        assert word in lines[0], lines[0]


def _config(folder: Path, **extra: str) -> Path:
    """A portkit.toml checking the given ``m.onnx`` against ``m.pt2`` (no conversion)."""
    path = folder / "portkit.toml"
    lines = ['[[model]]', 'name = "m"', 'source = "m.pt2"', 'artifact = "m.onnx"',
             *(f'{k} = "{v}"' for k, v in extra.items())]
    path.write_text("\n".join(lines) + "\n")
    return path


def _check(config: Path, *args: str | Path, summary: str | Path | None = None
           ) -> subprocess.CompletedProcess[str]:
    env = {"GITHUB_STEP_SUMMARY": str(summary)} if summary is not None else {}
    return run_cli("check", config, *args, "--timeout", "120", cwd=config.parent, env=env)


# Item 3: debug --hops writes ARTIFACT.hops/ and loses nothing there.

def test_hops_keeps_a_folder_portkit_did_not_write(model: tuple[Path, Path]) -> None:
    source, artifact = model
    hops = artifact.with_name("m.onnx.hops")
    hops.mkdir()
    (hops / "notes.txt").write_text("mine")
    done = run_cli("debug", artifact, "--reference", source, "--hops")
    _refused(done, 2, "--hops", str(hops), "not one portkit wrote")
    assert (hops / "notes.txt").read_text() == "mine"


def test_hops_refuses_a_file_of_its_name_and_hides_nothing(model: tuple[Path, Path]) -> None:
    source, artifact = model
    hops = artifact.with_name("m.onnx.hops")
    hops.write_text("mine")
    done = run_cli("debug", artifact, "--reference", source, "--hops")
    _refused(done, 2, "--hops", str(hops), "existing file")
    assert hops.read_text() == "mine"
    assert sorted(p.name for p in artifact.parent.iterdir()) == ["m.onnx", "m.onnx.hops", "m.pt2"]


def test_hops_replaces_the_folder_it_wrote(model: tuple[Path, Path]) -> None:
    source, artifact = model
    for _ in range(2):
        done = run_cli("debug", artifact, "--reference", source, "--hops")
        assert done.returncode == 0, done.stderr
        assert sorted(p.name for p in artifact.with_name("m.onnx.hops").iterdir()) == [
            "hop1-torch.onnx.onnx"]
    assert sorted(p.name for p in artifact.parent.iterdir()) == ["m.onnx", "m.onnx.hops", "m.pt2"]


def test_a_swapped_out_file_is_removed_and_named_for_sweep(tmp_path: Path,
                                                           monkeypatch: pytest.MonkeyPatch) -> None:
    # A folder replacing a file: the file is moved aside, then removed; killed in between, the
    # aside is one that sweep removes once this process is gone.
    target = tmp_path / "out"
    target.write_text("old")
    staged = tmp_path / "staged"
    staged.mkdir()
    (staged / "a").write_text("new")
    io.atomic_replace(staged, target)
    assert (target / "a").read_text() == "new"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out"]

    aside: list[Path] = []
    monkeypatch.setattr(io.shutil, "rmtree", lambda p, **_kw: aside.append(Path(p)))
    staged.mkdir()
    io.atomic_replace(staged, target)
    [left] = aside
    assert left.parent == tmp_path and left.is_dir() and io._OWNED.match(left.name)
    assert int(io._OWNED.match(left.name).group(1)) == os.getpid()  # type: ignore[union-attr]


# Item 5: $GITHUB_STEP_SUMMARY is checked as an output, before any work.

def test_step_summary_onto_the_source_model_is_refused(model: tuple[Path, Path]) -> None:
    source, _artifact = model
    before = source.read_bytes()
    done = _check(_config(source.parent), summary=source)
    _refused(done, 2, "$GITHUB_STEP_SUMMARY", "input of this run")
    assert source.read_bytes() == before


@pytest.mark.parametrize("where", ["nodir/s.md", "link.md", "folder"])
def test_step_summary_in_a_missing_folder_a_link_or_a_folder_is_refused(
        model: tuple[Path, Path], where: str) -> None:
    folder = model[0].parent
    (folder / "link.md").symlink_to(folder / "elsewhere.md")
    (folder / "folder").mkdir()
    done = _check(_config(folder), "--junit", folder / "j.xml", summary=folder / where)
    _refused(done, 2, "$GITHUB_STEP_SUMMARY")
    assert not (folder / "j.xml").exists() and not (folder / "elsewhere.md").exists()


def test_step_summary_is_appended_to(model: tuple[Path, Path]) -> None:
    folder = model[0].parent
    summary = folder / "s.md"
    summary.write_text("earlier step\n")
    done = _check(_config(folder), summary=summary)
    assert done.returncode == 0, done.stderr
    text = summary.read_text()
    assert text.startswith("earlier step\n") and len(text) > len("earlier step\n")


def test_an_error_appending_is_exit_2_or_5_naming_it(tmp_path: Path) -> None:
    summary = tmp_path / "gone" / "s.md"
    with pytest.raises(PortkitError, match=r"\$GITHUB_STEP_SUMMARY") as failed:
        io.append_text(summary, "x", "$GITHUB_STEP_SUMMARY")
    assert failed.value.exit_code == ExitCode.INVALID_INPUT


# Item 11: OS errors on outputs are exit 2 or 5, never 70; refused before work where they can be.

def _limited(blocks: int) -> None:
    """In the child: files past ``blocks`` KiB fail with EFBIG (SIGXFSZ ignored), as under
    ``ulimit -f``."""
    signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
    resource.setrlimit(resource.RLIMIT_FSIZE, (blocks * 1024, blocks * 1024))


def test_a_report_past_the_file_size_limit_is_exit_5(model: tuple[Path, Path]) -> None:
    source, _artifact = model
    out, report = source.with_name("a.onnx"), source.with_name("r.json")
    done = subprocess.run(
        [sys.executable, "-m", "portkit", "convert", source, "--to", "onnx", "-o", out,
         "--report", report], capture_output=True, text=True, timeout=900,
        preexec_fn=lambda: _limited(3))
    _refused(done, 5, "--report", "file size limit")
    assert out.exists() and not report.exists()


@pytest.mark.parametrize("flag", ["--work-dir", "--save-bundle"])
def test_a_check_folder_naming_a_file_is_refused(model: tuple[Path, Path], flag: str) -> None:
    folder = model[0].parent
    (folder / "taken").write_text("mine")
    done = _check(_config(folder), flag, folder / "taken")
    _refused(done, 2, flag, "existing file")
    assert (folder / "taken").read_text() == "mine"


def test_demo_dir_naming_a_file_is_refused(tmp_path: Path) -> None:
    (tmp_path / "taken").write_text("mine")
    done = run_cli("demo", "--dir", tmp_path / "taken")
    _refused(done, 2, "--dir", "existing file")
    assert (tmp_path / "taken").read_text() == "mine"


def test_demo_to_bogus_is_refused_before_building(tmp_path: Path) -> None:
    done = run_cli("demo", "--dir", tmp_path / "d", "--to", "bogus")
    _refused(done, 2, "bogus")
    assert not (tmp_path / "d").exists()


def test_an_o_whose_failed_sibling_is_too_long_is_refused_before_work(
        model: tuple[Path, Path]) -> None:
    source, _artifact = model
    out = source.with_name("a" * 245 + ".onnx")  # 250 bytes: NAME.failed.onnx is 257
    done = run_cli("convert", source, "--to", "onnx", "-o", out)
    _refused(done, 2, "-o", "257 bytes", "255")
    assert sorted(p.name for p in source.parent.iterdir()) == ["m.onnx", "m.pt2"]


def test_derived_names_must_fit_name_max(tmp_path: Path) -> None:
    check_outputs([Output("-o", tmp_path / ("a" * 255))])
    with pytest.raises(PortkitError, match="256 bytes") as refused:
        check_outputs([Output("--report", tmp_path / ("a" * 256))])
    assert refused.value.exit_code == ExitCode.INVALID_INPUT
    # The staging folder beside a 255-byte name fits too (its name is shortened).
    with io.staging_dir(tmp_path / ("b" * 255)) as stage:
        assert len(stage.name) <= 255


def test_an_unwritable_parent_is_refused(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    real = os.access
    monkeypatch.setattr(io.os, "access",
                        lambda p, mode, **kw: not mode & os.W_OK and real(p, mode, **kw))
    for folder in (Folder.NEVER, Folder.WRITTEN_INTO):
        with pytest.raises(PortkitError, match="not writable") as refused:
            check_outputs([Output("--report", tmp_path / "r.json", folder)])
        assert refused.value.exit_code == ExitCode.INVALID_INPUT


def _mounted(folder: Path, options: str, *args: str | Path, fill: bool = False
             ) -> subprocess.CompletedProcess[str]:
    """``portkit ARGS`` with a tmpfs (``options``) on ``folder``, in a private mount namespace;
    ``fill``: with no byte left on it."""
    if shutil.which("unshare") is None or subprocess.run(
            ["unshare", "-rm", "true"], capture_output=True).returncode != 0:
        pytest.skip("unshare -rm (a private mount namespace) is not allowed here")
    folder.mkdir(exist_ok=True)
    script = ('mount -t tmpfs -o "$1" tmpfs "$2" || exit 99; '
              + ('cat /dev/zero > "$2/filler" 2>/dev/null; ' if fill else '')
              + 'shift 2; exec "$@"')
    done = subprocess.run(["unshare", "-rm", "sh", "-c", script, "sh", options, folder,
                           sys.executable, "-m", "portkit", *map(str, args)],
                          capture_output=True, text=True, timeout=900)
    if done.returncode == 99:
        pytest.skip(f"cannot mount a tmpfs here: {done.stderr.strip()}")
    return done


def test_a_report_in_a_read_only_folder_is_refused_before_converting(
        model: tuple[Path, Path]) -> None:
    source, _artifact = model
    out, ro = source.with_name("a.onnx"), source.with_name("ro")
    done = _mounted(ro, "ro", "convert", source, "--to", "onnx", "-o", out,
                    "--report", ro / "r.json")
    _refused(done, 2, "--report", "not writable")
    assert not out.exists()


def test_a_full_disk_while_converting_is_exit_5_not_no_route(model: tuple[Path, Path]) -> None:
    source, _artifact = model
    full = source.with_name("full")
    done = _mounted(full, "size=64k", "convert", source, "--to", "onnx", "-o", full / "a.onnx",
                    fill=True)
    _refused(done, ExitCode.RUNTIME_CRASHED, "no space left")
