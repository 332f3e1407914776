"""The issue's acceptance, through the real CLI in fresh processes."""

from __future__ import annotations

import hashlib
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from portkit.convert import registry
from portkit.formats import Format
from tests.conftest import run_cli
from tests.schema import assert_schema

torch = pytest.importorskip("torch")


class UnseenNet(torch.nn.Module):
    """A model defined only here: batch norm, two residual blocks, adaptive pooling, a linear head."""

    def __init__(self) -> None:
        super().__init__()
        nn = torch.nn
        self.stem = nn.Sequential(nn.Conv2d(3, 12, 3, stride=2, padding=1), nn.BatchNorm2d(12), nn.ReLU())
        self.blocks = nn.ModuleList(
            nn.Sequential(nn.Conv2d(12, 12, 3, padding=1), nn.BatchNorm2d(12), nn.ReLU(),
                          nn.Conv2d(12, 12, 1), nn.BatchNorm2d(12))
            for _ in range(2)
        )
        self.pool = nn.AdaptiveAvgPool2d((1, 1))
        self.head = nn.Linear(12, 7)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.stem(x)
        for block in self.blocks:
            y = torch.relu(y + block(y))
        return self.head(self.pool(y).flatten(1))


def _unseen() -> torch.nn.Module:
    torch.manual_seed(123)
    model = UnseenNet().eval()
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, torch.nn.BatchNorm2d):
                m.running_mean.normal_(0, 0.3)
                m.running_var.uniform_(0.5, 2.0)
    return model


@pytest.fixture(scope="module")
def unseen(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    d = tmp_path_factory.mktemp("unseen")
    model, x = _unseen(), torch.randn(1, 3, 64, 64)
    torch.jit.save(torch.jit.trace(model, (x,)), str(d / "model.pt"))
    torch.export.save(torch.export.export(model, (x,)), str(d / "model.pt2"))
    return {"torchscript": d / "model.pt", "pt2": d / "model.pt2"}


def _run_artifact(path: Path, x: np.ndarray) -> np.ndarray:
    """Run the artifact with its own runtime, independently of portkit."""
    if path.suffix == ".tflite":
        from ai_edge_litert.interpreter import Interpreter

        it = Interpreter(model_path=str(path))
        it.allocate_tensors()
        it.set_tensor(it.get_input_details()[0]["index"], x)
        it.invoke()
        return it.get_tensor(it.get_output_details()[0]["index"])
    import onnxruntime

    session = onnxruntime.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    return session.run(None, {session.get_inputs()[0].name: x})[0]


@pytest.mark.parametrize("kind", ["torchscript", "pt2"])
@pytest.mark.parametrize("target,suffix,runtime", [("tflite", ".tflite", "tflite"),
                                                   ("onnx", ".onnx", "onnxruntime")])
def test_unseen_model_converts_and_matches(unseen: dict[str, Path], tmp_path: Path, kind: str,
                                           target: str, suffix: str, runtime: str) -> None:
    out, report_path = tmp_path / f"model{suffix}", tmp_path / "r.json"
    result = run_cli("convert", unseen[kind], "--to", target, "--input", "x:1x3x64x64",
                     "-o", out, "--report", report_path)
    assert result.returncode == 0, result.stderr
    x = np.random.default_rng(5).standard_normal((1, 3, 64, 64)).astype(np.float32)
    with torch.no_grad():
        expected = _unseen()(torch.from_numpy(x)).numpy()
    assert np.abs(_run_artifact(out, x) - expected).max() < 1e-4

    report = json.loads(report_path.read_text())
    assert_schema(f"convert_{target}", report)
    assert report["passed"] is True and report["exit_code"] == 0
    assert report["source"]["format"] == ("torchscript" if kind == "torchscript" else "exported-program")
    assert report["artifact"]["format"] == target
    assert report["artifact"]["size_bytes"] == out.stat().st_size
    assert report["artifact"]["sha256"] == hashlib.sha256(out.read_bytes()).hexdigest()
    assert report["route"] and {"from", "to", "tool", "seconds"} <= set(report["route"][0])
    assert report["routes_tried"][-1]["ok"] is True
    (check,) = [c for c in report["checks"] if c["runtime"] == runtime and c["device"] == "cpu"]
    assert check["passed"]
    # TFLite also runs on one thread (a device of its own), and must match there too.
    assert all(c["passed"] for c in report["checks"] if c["runtime"] == runtime)
    row = check["outputs"][0]
    assert row["max_abs_err"] < 1e-4 and row["cosine"] > 0.9999 and row["passed"]
    assert {"max_rel_err", "min_atol_to_pass"} <= set(row)
    assert {"torch", "numpy"} <= set(report["versions"]) and report["seed"] == 0
    assert set(tmp_path.iterdir()) == {out, report_path}  # no staging leftovers


def test_forced_onnx2tf_route_maps_the_nhwc_layout(unseen: dict[str, Path], tmp_path: Path) -> None:
    out = tmp_path / "m.tflite"
    result = run_cli("convert", unseen["pt2"], "--to", "tflite", "--route", "torch.onnx+onnx2tf",
                     "-o", out, "--json")
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout)
    assert [h["tool"] for h in report["route"]] == ["torch.onnx", "onnx2tf"]
    assert report["checks"][0]["input_layouts"] == ["x: NCHW->NHWC"]


def test_parity_failure_exits_1_and_keeps_the_artifact(unseen: dict[str, Path], tmp_path: Path) -> None:
    out = tmp_path / "m.tflite"
    result = run_cli("convert", unseen["pt2"], "--to", "tflite", "--route", "litert-torch",
                     "--atol", "0", "--rtol", "0", "-o", out, "--json")
    assert result.returncode == 1, result.stderr
    report = json.loads(result.stdout)
    row = report["checks"][0]["outputs"][0]
    kept = tmp_path / "m.failed.tflite"  # beside -o, which only receives an artifact that passed
    assert report["passed"] is False and kept.exists() and not out.exists()
    assert report["artifact_failed"] and report["artifact"]["path"] == str(kept)
    assert not row["passed"] and row["min_atol_to_pass"] == pytest.approx(row["max_abs_err"])
    assert "or --atol" in report["routes_tried"][0]["error"]


def _bad_source(case: str, tmp: Path, unseen: dict[str, Path]) -> Path:
    if case == "no shape":
        return unseen["torchscript"]
    good = unseen["torchscript"].read_bytes()
    data = {"empty": b"", "random": np.random.default_rng(0).bytes(3000),
            "truncated": good[: len(good) // 3]}[case]
    (tmp / f"{case}.pt").write_bytes(data)
    return tmp / f"{case}.pt"


@pytest.mark.parametrize("case,message", [
    ("empty", "is empty"),
    ("random", "not a model format"),
    ("truncated", "truncated or corrupt"),
    ("no shape", "pass it, e.g. --input x:"),
])
def test_bad_input_exits_2_with_one_line(unseen: dict[str, Path], tmp_path: Path, case: str,
                                         message: str) -> None:
    src = _bad_source(case, tmp_path, unseen)
    out = tmp_path / "out" / "m.tflite"
    out.parent.mkdir()
    shape = [] if case == "no shape" else ["--input", "x:1x3x64x64"]
    result = run_cli("convert", src, "--to", "tflite", "-o", out, *shape)
    assert result.returncode == 2, result.stderr
    lines = [ln for ln in result.stderr.splitlines() if ln.startswith("portkit:")]
    assert len(lines) == 1 and message in lines[0], result.stderr
    assert str(src.name) in lines[0]
    assert "Traceback" not in result.stderr
    assert list(out.parent.iterdir()) == []


def test_debug_shows_the_traceback(tmp_path: Path) -> None:
    (tmp_path / "e.pt").write_bytes(b"")
    result = run_cli("--debug", "convert", tmp_path / "e.pt", "--to", "onnx")
    assert result.returncode == 2 and "Traceback" in result.stderr


def test_failed_conversion_leaves_an_existing_output_untouched(saved_models, tmp_path: Path) -> None:
    # keras_flex with --no-flex: every route fails (tflite-converter needs Flex for Cumprod,
    # tf2onnx fails on it; see tests/convert/test_fixture_routes.py).
    out = tmp_path / "keras_flex.tflite"
    out.write_bytes(b"previous artifact")
    result = run_cli("convert", saved_models("keras_flex", "keras"), "--to", "tflite", "-o", out,
                     "--no-flex", "--json")
    assert result.returncode == 3, result.stderr
    report = json.loads(result.stdout)
    planned = registry.plan(Format.KERAS, Format.TFLITE)
    assert report["artifact"] is None and len(report["routes_tried"]) == len(planned)
    assert all(not a["ok"] and a["error"] for a in report["routes_tried"])
    assert out.read_bytes() == b"previous artifact"
    assert [p.name for p in tmp_path.iterdir()] == ["keras_flex.tflite"]


def test_help_imports_no_framework() -> None:
    code = ("import sys, portkit.cli\n"
            "from click.testing import CliRunner\n"
            "r = CliRunner().invoke(portkit.cli.cli, ['--help'])\n"
            "assert r.exit_code == 0 and 'Examples' in r.output, r.output\n"
            "for cmd in ('convert', 'inspect', 'demo', 'validate', 'bench', 'check', 'debug'):\n"
            "    r = CliRunner().invoke(portkit.cli.cli, [cmd, '--help'])\n"
            "    assert r.exit_code == 0 and 'Examples' in r.output, r.output\n"
            "heavy = [m for m in ('torch', 'tensorflow', 'onnx', 'onnxruntime', 'ai_edge_litert') if m in sys.modules]\n"
            "assert not heavy, heavy\n")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr


def test_inspect_tflite_json(unseen: dict[str, Path], tmp_path: Path) -> None:
    out = tmp_path / "m.tflite"
    assert run_cli("convert", unseen["pt2"], "--to", "tflite", "-o", out).returncode == 0
    result = run_cli("inspect", out, "--json")
    assert result.returncode == 0, result.stderr
    info = json.loads(result.stdout)
    assert_schema("inspect_tflite", info)
    assert info["info"]["format"] == "tflite"
    assert info["info"]["inputs"][0]["shape"] == [1, 3, 64, 64]
    assert info["info"]["op_counts"]["CONV_2D"] >= 5
    assert info["size_bytes"] == out.stat().st_size


def test_demo(tmp_path: Path) -> None:
    result = run_cli("demo", "--dir", tmp_path / "demo", "--report", tmp_path / "r.json")
    assert result.returncode == 0, result.stderr
    assert "PASSED" in result.stdout and "Parity" in result.stdout
    assert json.loads((tmp_path / "r.json").read_text())["passed"] is True
    assert (tmp_path / "demo" / "cnn.tflite").exists()


def test_falls_back_to_the_next_route_and_reports_both(saved_models, tmp_path: Path) -> None:
    # litert-torch can't lower the fixture's transposed conv; ONNX + onnx2tf can.
    out = tmp_path / "up.tflite"
    result = run_cli("convert", saved_models("upsample", "pt2"), "--to", "tflite", "-o", out, "--json")
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout)
    tried = report["routes_tried"]
    assert [a["route"] for a in tried] == ["litert-torch", "torch.onnx+onnx2tf"]
    assert not tried[0]["ok"] and not tried[0]["converted"] and "litert-torch" in tried[0]["error"]
    assert tried[1]["ok"] and tried[1]["error"] is None
    assert [h["tool"] for h in report["route"]] == ["torch.onnx", "onnx2tf"]
    assert report["passed"] and report["checks"][0]["outputs"][0]["layout"] == "NCHW->NHWC"


def test_const_binds_an_input_through_the_cli(saved_models, tmp_path: Path) -> None:
    src, out = saved_models("sample_rate", "torchscript"), tmp_path / "sr.onnx"
    result = run_cli("convert", src, "--to", "onnx", "--input", "x:1x16", "--const", "sr=16000",
                     "-o", out, "--json")
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout)
    assert report["constants"] == {"sr": 16000}
    assert report["preparation"]["tool"] == "bind-constants"
    assert [i["name"] for i in report["inputs"]] == ["x"]
    checked = run_cli("validate", out, "--reference", src, "--input", "x:1x16",
                      "--const", "sr=16000")
    assert checked.returncode == 0, checked.stderr
    assert "Constants (--const): sr=16000" in checked.stdout
    missing = run_cli("convert", src, "--to", "onnx", "--input", "x:1x16", "-o",
                      tmp_path / "m.onnx")
    assert missing.returncode == 2, missing.stderr
    assert "forward takes sr: int" in missing.stderr and "--const sr=" in missing.stderr
    bad = run_cli("convert", src, "--to", "onnx", "--const", "sr:16000")
    assert bad.returncode == 2 and "expected NAME=VALUE" in bad.stderr, bad.stderr
    assert not (tmp_path / "m.onnx").exists()
