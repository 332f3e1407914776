"""``portkit convert --to executorch`` end to end: a CNN and a transformer encoder block as
ExportedPrograms, and the CNN as TorchScript, each become a ``.pte`` (exit 0) that the test
itself runs through ``executorch.runtime`` on an input of its own and compares with the torch
module; ``portkit inspect`` lists the share of ops inside the XNNPACK delegate and the ops left
to portable kernels, as ExecuTorch's own deserializer counts them."""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest

import portkit
from portkit.fixtures import FIXTURES
from portkit.runtimes.worker import Pool
from tests.conftest import made_once, run_cli, shared_folder

Saved = Callable[[str, str], Path]
# Each fixture's input for the test's own run: seeded apart from portkit's validation inputs.
SEED = 2028


@dataclass(frozen=True)
class Converted:
    """One ``portkit convert --to executorch`` run: its source, program, exit code, stderr and
    ``--report`` JSON."""

    source: Path
    pte: Path
    exit_code: int
    stderr: str
    report: dict  # type: ignore[type-arg]


def to_pte(tmp_path_factory: pytest.TempPathFactory, name: str,
           source: Callable[[Path], Path], inputs: Sequence[str] = (),
           workers: Pool | None = None) -> Converted:
    """``portkit convert SOURCE --to executorch -o NAME.pte --input INPUTS`` once per test run,
    shared by every test process (``source(folder)`` makes or finds the source): in a fresh
    interpreter as a user runs it, or with ``workers`` through ``portkit.convert`` in workers
    that already imported ExecuTorch (15 s less)."""
    folder = shared_folder(tmp_path_factory, f"executorch-{name}")
    done, report, out = folder / "done.json", folder / "report.json", folder / f"{name}.pte"
    with made_once(folder):
        if not done.exists():
            src = source(folder)
            if workers is None:
                flags = [f for flag in inputs for f in ("--input", flag)]
                ran = run_cli("convert", src, "--to", "executorch", "-o", out, "--report",
                              report, *flags)
                code, stderr = ran.returncode, ran.stderr[-4000:]
            else:
                made = portkit.convert(src, "executorch", out, inputs=list(inputs),
                                       workers=workers)
                report.write_text(json.dumps(made.to_dict()))
                code, stderr = made.exit_code, json.dumps(made.to_dict()["routes_tried"])
            done.write_text(json.dumps({"source": str(src), "exit_code": code,
                                        "stderr": stderr}))
    made = json.loads(done.read_text())
    return Converted(Path(made["source"]), out, made["exit_code"], made["stderr"],
                     json.loads(report.read_text()) if report.exists() else {})


def run_pte(path: Path, *arrays: np.ndarray) -> list[np.ndarray]:
    """The program's ``forward`` on ``arrays``, through ExecuTorch's own Python runtime."""
    import torch
    from executorch.runtime import Runtime

    method = Runtime.get().load_program(str(path)).load_method("forward")
    return [o.numpy() for o in method.execute([torch.from_numpy(a) for a in arrays])]


def torch_out(name: str, *arrays: np.ndarray) -> np.ndarray:
    """The fixture module's output on ``arrays``."""
    import torch

    with torch.no_grad():
        return FIXTURES[name].module()(*map(torch.from_numpy, arrays)).numpy()


def scaled_err(ref: np.ndarray, got: np.ndarray) -> float:
    """Max abs error over the reference's largest magnitude."""
    assert ref.shape == got.shape
    return float(np.abs(ref - got).max() / np.abs(ref).max())


def fresh_input(name: str, batch: int | None = None) -> np.ndarray:
    """A seeded normal input of the fixture's (one) input shape, at ``batch`` if given."""
    (spec,) = FIXTURES[name].inputs
    shape = tuple(spec.shape or ())
    if batch is not None:
        shape = (batch, *shape[1:])
    return np.random.default_rng(SEED).standard_normal(shape).astype(np.float32)


@pytest.fixture(scope="module")
def programs(saved_models: Saved, workers: Pool, tmp_path_factory: pytest.TempPathFactory
             ) -> Callable[[str, str], Converted]:
    """``programs(fixture, kind)``: the fixture saved as ``kind``, converted once per run; the
    CNN's ExportedProgram by the CLI, the others in warm workers."""
    def get(name: str, kind: str) -> Converted:
        return to_pte(tmp_path_factory, f"{name}-{kind}", lambda _: saved_models(name, kind),
                      FIXTURES[name].input_flags,
                      None if (name, kind) == ("cnn", "pt2") else workers)

    return get


@pytest.mark.parametrize("name,kind", [
    ("cnn", "pt2"), ("attention", "pt2"),
    # TorchScript -> ExportedProgram (TS2EPConverter) alone takes 15 s
    pytest.param("cnn", "torchscript", marks=pytest.mark.slow)])
def test_pte_runs_in_executorch_and_matches_torch(
        programs: Callable[[str, str], Converted], name: str, kind: str) -> None:
    made = programs(name, kind)
    assert made.exit_code == 0, made.stderr
    report = made.report
    assert report["passed"] and report["target"] == "executorch"
    assert report["route_name"] == "executorch-xnnpack"
    assert report["source"]["format"] == {"pt2": "exported-program"}.get(kind, kind)
    x = fresh_input(name)
    (got,) = run_pte(made.pte, x)
    ref = torch_out(name, x)
    assert scaled_err(ref, got) <= 1e-4


def test_inspect_lists_the_delegated_share_and_the_ops_left_out(
        programs: Callable[[str, str], Converted]) -> None:
    made = programs("attention", "pt2")
    assert made.exit_code == 0, made.stderr
    kernels, delegates = _program_calls(made.pte)
    done = run_cli("inspect", made.pte, "--json")
    assert done.returncode == 0, done.stderr
    program = json.loads(done.stdout)["info"]["executorch"]
    assert program["outside"] == dict(kernels)
    assert "aten::native_layer_norm.out" in program["outside"]  # XNNPACK has no layer norm
    assert program["delegate_calls"] == delegates > 1
    assert program["delegated_share"] == pytest.approx(
        program["delegated_nodes"] / (program["delegated_nodes"] + sum(kernels.values())),
        abs=1e-4)
    assert 0.5 < program["delegated_share"] < 1.0
    table = run_cli("inspect", made.pte)
    assert table.returncode == 0, table.stderr
    text = " ".join(table.stdout.split())
    assert f"{round(100 * program['delegated_share'])}% of forward's ops delegated" in text
    assert f"{sum(kernels.values())} left to portable kernels" in text
    assert all(op in text for op in kernels)


def _program_calls(path: Path) -> tuple[Counter[str], int]:
    """The program's portable kernel calls by operator, and its delegate calls, as
    ExecuTorch's own deserializer reads the file."""
    from executorch.exir._serialize._program import deserialize_pte_binary

    (plan,) = deserialize_pte_binary(path.read_bytes()).program.execution_plan
    ops = [f"{o.name}.{o.overload}" if o.overload else o.name for o in plan.operators]
    kernels: Counter[str] = Counter()
    delegates = 0
    for chain in plan.chains:
        for instruction in chain.instructions:
            kind = type(instruction.instr_args).__name__
            if kind == "KernelCall":
                kernels[ops[instruction.instr_args.op_index]] += 1
            delegates += kind == "DelegateCall"
    return kernels, delegates
