"""The ``.pte`` reader and runtime on small programs lowered here: what a program holds (the
delegate's nodes, the ops left to portable kernels), a missing kernel named at load, a damaged
file refused with exit 2, and ``bench --profile`` timing each XNNPACK node and portable op."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest

from portkit.formats import Format, sniff
from portkit.formats.pte import PteMethod, PteTensor, program_report, read_program
from portkit.runtimes.executorch import missing_kernels
from tests.conftest import run_cli


def _cli(*args: object) -> subprocess.CompletedProcess[str]:
    return run_cli(*map(str, args))


@pytest.fixture(scope="module")
def programs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """A conv + mean + linear model (XNNPACK leaves the mean to a portable kernel), lowered
    with and without the delegate."""
    import torch

    from portkit.convert.torch_to_executorch import lower

    class Net(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.conv = torch.nn.Conv2d(3, 8, 3, padding=1)
            self.head = torch.nn.Linear(8, 4)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return self.head(torch.relu(self.conv(x)).mean((2, 3)))

    torch.manual_seed(0)
    program = torch.export.export(Net().eval(), (torch.randn(1, 3, 16, 16),))
    folder = tmp_path_factory.mktemp("pte")
    paths = {}
    for name, delegate in (("xnnpack", True), ("portable", False)):
        paths[name] = folder / f"{name}.pte"
        paths[name].write_bytes(lower(program, delegate))
    return paths


def test_program_lists_delegated_nodes_and_the_ops_left_out(programs: dict[str, Path]) -> None:
    assert sniff(programs["xnnpack"]) is Format.EXECUTORCH
    report = program_report(programs["xnnpack"])
    assert report.backends == ("XnnpackBackend",)
    assert report.inside.get("XNNConv2d") == 1 and report.inside.get("XNNFullyConnected") == 1
    assert report.outside == {"aten::mean.out": 1}
    assert 0.5 < report.delegated_share < 1.0
    assert not report.bounded
    portable = program_report(programs["portable"])
    assert portable.delegate_calls == 0 and portable.delegated_share == 0.0
    assert "aten::convolution.out" in portable.outside


def test_inputs_and_outputs_are_read_from_the_program(programs: dict[str, Path]) -> None:
    (method,) = read_program(programs["xnnpack"])
    assert method.name == "forward"
    assert method.inputs == (PteTensor((1, 3, 16, 16), "float32"),)
    assert method.outputs == (PteTensor((1, 4), "float32"),)


def test_a_kernel_the_runtime_lacks_is_named() -> None:
    method = PteMethod("forward", (), (), ("aten::mean.out", "custom::fancy_op.out"), ())
    assert missing_kernels(method) == ["custom::fancy_op.out"]


def test_a_truncated_program_is_exit_2_naming_the_file(programs: dict[str, Path],
                                                      tmp_path: Path) -> None:
    bad = tmp_path / "cut.pte"
    bad.write_bytes(programs["xnnpack"].read_bytes()[:200])
    result = _cli("inspect", bad)
    assert result.returncode == 2, result.stderr
    assert str(bad) in result.stderr and "Traceback" not in result.stderr


def test_profile_times_xnnpack_nodes_and_portable_ops(programs: dict[str, Path]) -> None:
    result = _cli("bench", programs["xnnpack"], "--profile", "--json")
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout)
    assert report["versions"]["executorch"] == "1.5.1"
    ops = [o for r in report["rows"] for o in r["latency"]["profile"]]
    providers = {o["provider"] for o in ops}
    assert providers == {"XNNPACK", "portable"}, ops
    assert any(o["kind"].startswith("Convolution") for o in ops)
    assert any(o["kind"] == "mean.out" and not o["delegated"] for o in ops)
