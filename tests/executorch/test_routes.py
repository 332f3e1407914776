"""Routes to ExecuTorch: the XNNPACK delegate first, portable kernels as the fallback (pure
logic), flags that don't apply refused before any work, and the portable route run for real."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest

from portkit.convert import registry
from portkit.formats import Format
from portkit.policies import Quantize
from tests.conftest import run_cli


def _cli(*args: object) -> subprocess.CompletedProcess[str]:
    return run_cli(*map(str, args))


@pytest.mark.parametrize("source", [Format.EXPORTED_PROGRAM, Format.TORCHSCRIPT])
def test_xnnpack_first_then_portable_kernels(source: Format) -> None:
    assert [r.name for r in registry.plan(source, Format.EXECUTORCH)] == [
        "executorch-xnnpack", "executorch-portable"]


def test_only_the_delegate_route_quantizes() -> None:
    for mode in (Quantize.INT8, Quantize.DYNAMIC, Quantize.FP16):
        assert [r.name for r in registry.plan(Format.EXPORTED_PROGRAM, Format.EXECUTORCH,
                                              quantize=mode)] == ["executorch-xnnpack"]
    assert registry.plan(Format.EXPORTED_PROGRAM, Format.EXECUTORCH,
                         quantize=Quantize.INT16X8) == []


@pytest.mark.parametrize(("flags", "said"), [
    (["--quantize", "int16x8", "--calibration", "cal.npz"], "quantize fp16, dynamic or int8"),
    (["--quantize", "dynamic", "--int8-io"], "--int8-io is for"),
    (["--no-flex"], "--no-flex is for --to tflite"),
])
def test_flags_that_dont_apply_are_exit_2(flags: list[str], said: str, tmp_path: Path) -> None:
    src = tmp_path / "m.pt2"
    src.write_bytes(b"PK\x03\x04")  # never read: the flags are refused first
    result = _cli("convert", src, "--to", "executorch", *flags)
    assert result.returncode == 2, result.stderr
    assert said in result.stderr


def test_fp16_halves_the_weights_and_is_judged_by_the_fp16_policy(tmp_path: Path) -> None:
    import torch

    torch.manual_seed(0)
    mlp = torch.nn.Sequential(torch.nn.Linear(256, 256), torch.nn.ReLU(),
                              torch.nn.Linear(256, 10)).eval()
    src = tmp_path / "mlp.pt2"
    torch.export.save(torch.export.export(mlp, (torch.randn(1, 256),)), src)
    out = tmp_path / "fp16.pte"
    result = _cli("convert", src, "--to", "executorch", "-o", out, "--json", "--quantize", "fp16")
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout)
    assert report["tolerance"]["policy"] == "fp16"
    assert report["quantization"]["mode"] == "fp16"
    float32_bytes = 4 * sum(p.numel() for p in mlp.parameters())  # 266 KB
    assert out.stat().st_size < 0.6 * float32_bytes, out.stat().st_size


def test_the_portable_route_ships_a_program_without_a_delegate(
        saved_models: object, tmp_path: Path) -> None:
    src = saved_models("cnn", "pt2")  # type: ignore[operator]
    out = tmp_path / "cnn.pte"
    result = _cli("convert", src, "--to", "executorch", "--route", "executorch-portable",
                  "-o", out, "--json")
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout)["route_name"] == "executorch-portable"
    inspected = json.loads(_cli("inspect", out, "--json").stdout)["info"]["executorch"]
    assert inspected["delegate_calls"] == 0 and inspected["delegated_share"] == 0.0
    assert "aten::convolution.out" in inspected["outside"]
