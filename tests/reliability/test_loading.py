"""Issue 27, items 8, 9 and 15 and two of its smaller lines: a model that can't be loaded is bad
input (exit 2, the file named on one line) in every command, never a parity verdict (1) or a bug
(70); ``portkit.convert(module, timeout=...)`` comes back within its timeout; a source that is
no model, or a symlink loop, is called what it is."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
import zipfile
from pathlib import Path

import pytest

import portkit
from portkit import api
from portkit.errors import ExitCode, InvalidModelError, UsageError
from tests.conftest import run_cli
from tests.reliability import models
from tests.security import hostile


def _fails(result: subprocess.CompletedProcess[str], code: ExitCode, *fragments: str) -> None:
    """One ``portkit: error:`` line naming every fragment, and the exit code."""
    errors = [line for line in result.stderr.splitlines() if line.startswith("portkit: error:")]
    assert result.returncode == code, result.stdout[-2000:] + result.stderr[-2000:]
    assert len(errors) == 1, result.stderr[-2000:]
    for fragment in fragments:
        assert fragment in errors[0], errors[0]


def _truncated(model: Path, name: str) -> Path:
    data = model.read_bytes()
    path = model.with_name(name)
    path.write_bytes(data[: len(data) // 2])
    return path


def _bit_flipped(model: Path, name: str) -> Path:
    """Every fifth byte flipped past the first eight (the format's magic kept, so the file is
    still taken for what it was)."""
    data = bytearray(model.read_bytes())
    for i in range(8, len(data), 5):
        data[i] ^= 0x5A
    path = model.with_name(name)
    path.write_bytes(bytes(data))
    return path


@pytest.fixture(scope="module")
def relu(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return models.relu(tmp_path_factory.mktemp("relu"))


@pytest.fixture(scope="module")
def tflite(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return hostile.tflite_model(tmp_path_factory.mktemp("tflite"))


@pytest.fixture(scope="module")
def pt2(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return models.linear_pt2(tmp_path_factory.mktemp("pt2"))


# ---- item 8: validate on an artifact that won't load ----

def test_validate_on_a_truncated_onnx_artifact_exits_2_naming_it(relu: Path) -> None:
    broken = _truncated(relu, "truncated.onnx")
    _fails(run_cli("validate", broken, "--reference", relu), ExitCode.INVALID_INPUT,
           str(broken), "could not load it as onnx")


@pytest.mark.parametrize("damage", [_truncated, _bit_flipped])
def test_validate_on_a_broken_tflite_artifact_exits_2_naming_it(tflite: Path, damage) -> None:
    broken = damage(tflite, f"{damage.__name__.strip('_')}.tflite")
    _fails(run_cli("validate", broken, "--reference", tflite), ExitCode.INVALID_INPUT,
           str(broken))


def test_the_api_raises_the_load_error_rather_than_failing_parity(relu: Path) -> None:
    broken = _truncated(relu, "api-truncated.onnx")
    with pytest.raises(InvalidModelError, match="api-truncated.onnx: onnxruntime could not "
                                                "load it as onnx"):
        api.validate(broken, relu, find_divergence=False)


@pytest.fixture
def bundle(relu: Path, tmp_path: Path) -> Path:
    folder = tmp_path / "bundle"
    assert api.validate(relu, relu, save_bundle=folder).exit_code == 0
    return folder


def test_a_bundle_whose_artifact_is_truncated_exits_2(bundle: Path) -> None:
    artifact = bundle / json.loads((bundle / "manifest.json").read_text())["artifact"]
    artifact.write_bytes(artifact.read_bytes()[:40])
    _fails(run_cli("validate", "--bundle", bundle), ExitCode.INVALID_INPUT, artifact.name)


def test_a_bundle_manifest_naming_the_wrong_format_exits_2(bundle: Path) -> None:
    manifest = json.loads((bundle / "manifest.json").read_text())
    manifest["format"] = "tflite"
    (bundle / "manifest.json").write_text(json.dumps(manifest))
    _fails(run_cli("validate", "--bundle", bundle), ExitCode.INVALID_INPUT,
           "manifest.json", "tflite", "onnx")


def test_an_artifact_that_loads_and_mismatches_is_still_a_parity_failure(
        relu: Path, tmp_path: Path) -> None:
    from onnx import TensorProto, helper

    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 4])
    other = models._save([helper.make_node("Neg", ["x"], ["y"])], [x], [], tmp_path / "neg.onnx")
    result = run_cli("validate", other, "--reference", relu, "--runtime", "onnxruntime")
    assert result.returncode == ExitCode.PARITY_FAILED, result.stderr[-2000:]


# ---- item 9: convert on a .pt2 with a missing zip member ----

def _without(model: Path, member: str, name: str) -> Path:
    path = model.with_name(name)
    with zipfile.ZipFile(model) as src, zipfile.ZipFile(path, "w") as dst:
        for info in src.infolist():
            if not info.filename.endswith(member):
                dst.writestr(info, src.read(info))
    return path


def test_convert_on_a_pt2_missing_a_zip_member_exits_2_naming_it(pt2: Path, tmp_path: Path
                                                                   ) -> None:
    broken = _without(pt2, "/data/weights/weight_0", "no-weight.pt2")
    _fails(run_cli("convert", broken, "--to", "onnx", "-o", tmp_path / "m.onnx"),
           ExitCode.INVALID_INPUT, str(broken), "could not load it as exported-program")
    assert not (tmp_path / "m.onnx").exists()


def test_convert_on_a_torchscript_missing_a_zip_member_exits_2(tmp_path: Path) -> None:
    import torch

    module = torch.nn.Sequential(torch.nn.Linear(8, 4), torch.nn.ReLU()).eval()
    whole = tmp_path / "m.pt"
    torch.jit.save(torch.jit.trace(module, torch.randn(1, 8)), str(whole))
    broken = _without(whole, "/data/0", "no-data.pt")
    _fails(run_cli("convert", broken, "--to", "onnx", "--input", "x:1x8"),
           ExitCode.INVALID_INPUT, str(broken), "could not load it as torchscript")


def test_convert_on_a_truncated_onnx_exits_2(relu: Path, tmp_path: Path) -> None:
    broken = _truncated(relu, "convert-truncated.onnx")
    _fails(run_cli("convert", broken, "--to", "tflite", "-o", tmp_path / "m.tflite"),
           ExitCode.INVALID_INPUT, str(broken), "could not load it as onnx")


# ---- item 15: portkit.convert(module, timeout=...) on a forward that never returns ----

_FOREVER = """
import sys, time
import torch
import portkit
from portkit import api
from portkit.errors import WorkerTimeoutError

class Forever(torch.nn.Module):
    def forward(self, x):
        while True:
            pass

start = time.monotonic()
try:
    portkit.convert(Forever(), "onnx", sys.argv[1], inputs=["x:1x8"], timeout=5)
except WorkerTimeoutError as e:
    print(f"timed out after {time.monotonic() - start:.1f} s: {e}")
"""


def _run_script(script: str, *args: str | Path) -> subprocess.CompletedProcess[str]:
    """``script`` in a fresh interpreter, bounded, so a regression fails instead of hanging."""
    return subprocess.run([sys.executable, "-c", textwrap.dedent(script), *map(str, args)],
                          capture_output=True, text=True, timeout=120)


def test_convert_of_a_module_whose_forward_never_returns_honours_the_timeout(
        tmp_path: Path) -> None:
    done = _run_script(_FOREVER, tmp_path / "m.onnx")
    assert done.returncode == 0, done.stderr[-3000:]
    said = done.stdout.strip()
    assert said.startswith("timed out after"), done.stdout + done.stderr[-3000:]
    assert float(said.split()[3]) < 30, said
    assert "Forever" in said and "5 s" in said, said
    assert not (tmp_path / "m.onnx").exists()


def test_the_timeout_holds_where_the_export_cannot_run_in_a_child(tmp_path: Path) -> None:
    # CUDA initialized in the caller: no forked child; the export runs in a thread watched
    forced = _FOREVER.replace("start = ", "from portkit.runtimes import torch_export\n"
                                          "torch_export._forkable = lambda: False\nstart = ")
    done = _run_script(forced, tmp_path / "m.onnx")
    assert done.stdout.startswith("timed out after"), done.stdout + done.stderr[-3000:]
    assert float(done.stdout.split()[3]) < 30, done.stdout


def test_an_export_that_kills_its_process_is_a_crash_not_a_hang(tmp_path: Path) -> None:
    # The forked child dies without answering (as a segfault would): exit 5, the call returns.
    dying = (_FOREVER.replace("        while True:\n            pass",
                              "        import os\n        os._exit(3)")
             .replace("except WorkerTimeoutError as e:", "except WorkerCrashedError as e:")
             .replace("timed out after", "crashed after")
             .replace("import WorkerTimeoutError", "import WorkerCrashedError"))
    done = _run_script(dying, tmp_path / "m.onnx")
    said = done.stdout.strip()
    assert said.startswith("crashed after"), done.stdout + done.stderr[-3000:]
    assert "crashed the process it ran in (exit code 3)" in said, said


def test_convert_of_a_module_exports_it_and_keeps_its_errors(tmp_path: Path) -> None:
    import torch

    from portkit.errors import ConversionError

    torch.manual_seed(0)
    module = torch.nn.Sequential(torch.nn.Linear(8, 4), torch.nn.ReLU())
    report = portkit.convert(module, "onnx", tmp_path / "m.onnx", inputs=["x:1x8"], timeout=60)
    assert report.exit_code == 0, report.routes_tried

    class FixedBatch(torch.nn.Module):
        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return x.reshape(2, -1)  # the batch is 2, whatever the input says

    with pytest.raises(ConversionError, match=r"torch.export can't keep x axis 0 .* dynamic"):
        portkit.convert(FixedBatch(), "onnx", tmp_path / "f.onnx", inputs=["x:Nx4"],
                        dims=["N=1..8"])


# ---- smaller: convert(None), a symlink loop ----

@pytest.mark.parametrize(("source", "said"), [(None, "None"), (5, "an int"),
                                              (["m.pt2"], "a list")])
def test_convert_of_something_that_is_no_model_says_so(source: object, said: str) -> None:
    with pytest.raises(UsageError, match=rf"convert\(\): the source is {said}, not a model; "
                                         r"pass a model file's path.*torch.nn.Module"):
        portkit.convert(source, "onnx")


def test_a_symlink_loop_is_called_a_loop(tmp_path: Path) -> None:
    (tmp_path / "a.onnx").symlink_to(tmp_path / "b.onnx")
    (tmp_path / "b.onnx").symlink_to(tmp_path / "a.onnx")
    _fails(run_cli("convert", tmp_path / "a.onnx", "--to", "tflite"), ExitCode.INVALID_INPUT,
           "a.onnx", "symbolic link loop")
    with pytest.raises(InvalidModelError, match="a.onnx: a symbolic link loop"):
        portkit.inspect(tmp_path / "a.onnx")


def test_a_dangling_symlink_names_its_target(tmp_path: Path) -> None:
    (tmp_path / "m.onnx").symlink_to(tmp_path / "gone.onnx")
    with pytest.raises(InvalidModelError, match="m.onnx: a symbolic link to .*gone.onnx, "
                                                "which does not exist"):
        portkit.inspect(tmp_path / "m.onnx")


def test_a_missing_file_is_still_no_such_file(tmp_path: Path) -> None:
    with pytest.raises(InvalidModelError, match="missing.onnx: no such file or directory"):
        portkit.inspect(tmp_path / "missing.onnx")
