"""Every flag value is checked before any work: a number out of its flag's range (``nan``, ``inf``,
0 seconds, a negative seed...) exits 2 with one line naming the flag, from click, before a
command body (and so any worker) runs; the library and ``portkit.toml`` refuse the same values;
``--opset`` is refused unless a planned route writes it, and an artifact's opset is the one
asked for."""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest

import portkit
from portkit import api, bounds, gate
from portkit.convert import registry
from portkit.errors import ConversionError, InternalError, UsageError
from portkit.fixtures import FIXTURES
from portkit.formats import Format
from portkit.options import BenchJob, Budget, ConvertJob, ConvertOptions, Feed
from portkit.runtimes import worker
from portkit.specs import parse_inputs
from tests.conftest import run_cli

Saved = Callable[[str, str], Path]

# (command line, the flag its error must name); the paths don't exist: click refuses first.
CONVERT = ["convert", "model.pt2", "--to", "onnx"]
BENCH = ["bench", "model.onnx"]
CHECK = ["check", "portkit.toml"]
BAD: list[tuple[list[str], str]] = [
    *[(CONVERT + ["--opset", v], "--opset") for v in ("-1", "0", "1001", "17.5", "x")],
    *[(CONVERT + ["--timeout", v], "--timeout") for v in ("0", "-5", "nan", "inf", "1e9", "x")],
    *[(CONVERT + ["--samples", v], "--samples") for v in ("0", "-3", "1.5", "100001")],
    *[(CONVERT + ["--seed", v], "--seed") for v in ("-1", "4294967296", "nan")],
    *[(CONVERT + ["--min-cosine", v], "--min-cosine") for v in ("2", "-1.5", "nan")],
    *[(CONVERT + ["--min-top1", v], "--min-top1") for v in ("1.5", "-0.1", "inf")],
    *[(CONVERT + ["--min-top5", v], "--min-top5") for v in ("nan", "2")],
    *[(CONVERT + ["--max-accuracy-drop", v], "--max-accuracy-drop")
      for v in ("-0.01", "1.5", "nan")],
    *[(CONVERT + [flag, v], flag) for flag in ("--atol", "--rtol", "--scale-tol")
      for v in ("-1", "nan", "inf")],
    (["validate", "a.onnx", "--reference", "m.pt2", "--atol", "nan"], "--atol"),
    (["validate", "a.onnx", "--reference", "m.pt2", "--timeout", "0"], "--timeout"),
    (["inspect", "m.onnx", "--timeout", "-1"], "--timeout"),
    *[(BENCH + ["--threads", v], "--threads") for v in ("0", "-2", "4096")],
    *[(BENCH + ["--batch", v], "--batch") for v in ("0", "-1")],
    (BENCH + ["--warmup", "-1"], "--warmup"),
    (BENCH + ["--min-runs", "0"], "--min-runs"),
    *[(BENCH + ["--min-seconds", v], "--min-seconds") for v in ("inf", "nan", "-1")],
    (BENCH + ["--timeout", "nan"], "--timeout"),
    *[(CHECK + ["-j", v], "--jobs") for v in ("0", "-1", "1.5")],
    *[(CHECK + ["--shard", v], "--shard") for v in ("0/2", "3/2", "1/0", "a/b", "2")],
    (CHECK + ["--timeout", "inf"], "--timeout"),
]
# Runs every bad command line through the real entry point in one fresh interpreter, and says
# after each whether a library module (which every command body imports) was loaded.
_SCRIPT = """
import contextlib, io, json, sys
from portkit.cli.app import main
out = []
for args in json.loads(sys.argv[1]):
    err = io.StringIO()
    with contextlib.redirect_stderr(err), contextlib.redirect_stdout(io.StringIO()):
        try:
            main(args)
        except SystemExit as e:
            code = e.code
    ran = sorted(m for m in ("portkit.api", "portkit.gate", "portkit.runtimes.worker")
                 if m in sys.modules)
    out.append({"code": code, "stderr": err.getvalue(), "ran": ran})
print(json.dumps(out))
"""


@pytest.fixture(scope="module")
def refused() -> dict[str, dict]:
    """Each bad command line's exit code, stderr and the library modules loaded by then."""
    lines = [args for args, _ in BAD]
    done = subprocess.run([sys.executable, "-c", _SCRIPT, json.dumps(lines)],
                          capture_output=True, text=True, timeout=300, check=True)
    return {" ".join(a): r for a, r in zip(lines, json.loads(done.stdout), strict=True)}


@pytest.mark.parametrize(("args", "flag"), BAD, ids=[" ".join(a[-2:]) for a, _ in BAD])
def test_bad_value_exits_2_with_one_line_naming_the_flag(refused: dict[str, dict],
                                                         args: list[str], flag: str) -> None:
    got = refused[" ".join(args)]
    errors = [line for line in got["stderr"].splitlines() if "rror" in line]
    assert got["code"] == 2, got
    assert len(errors) == 1 and flag in errors[0] and args[-1] in errors[0], got["stderr"]
    assert "Traceback" not in got["stderr"]
    assert got["ran"] == [], "a command body ran (it could have started a worker)"


def test_opset_no_route_writes_exits_2_before_any_work(saved_models: Saved,
                                                       tmp_path: Path) -> None:
    out = tmp_path / "m.onnx"
    done = run_cli("convert", saved_models("cnn", "torchscript"), "--to", "onnx", "-o", out,
                   "--opset", "99")
    assert done.returncode == 2, done.stderr
    [line] = done.stderr.strip().splitlines()
    assert line.startswith("portkit: error: --opset 99: ") and line.endswith("; pick one in range")
    assert "torch.onnx-legacy writes opsets 7-20" in line and "torch.onnx writes opsets 18-23" in line
    assert not out.exists() and not list(tmp_path.iterdir())


def test_opset_17_is_the_artifacts_opset(saved_models: Saved, tmp_path: Path) -> None:
    out = tmp_path / "m.onnx"
    done = run_cli("convert", saved_models("cnn", "torchscript"), "--to", "onnx", "-o", out,
                   "--opset", "17", "--input", *FIXTURES["cnn"].input_flags, "--no-validate",
                   "--json")
    assert done.returncode == 0, done.stderr
    report = json.loads(done.stdout)
    from portkit.convert.onnx_upgrade import opset

    assert opset(out) == 17
    assert report["route"][-1]["detail"].endswith("opset 17")
    # the dynamo exporter writes 18 for any opset below 18: dropped from the plan, with why
    assert {r["route"]: r["error"] for r in report["routes_tried"]}["torch.onnx"] == (
        "not tried: --opset 17: torch.onnx writes opsets 18-23")


def test_an_onnx_hop_that_writes_another_opset_fails_its_route(saved_models: Saved,
                                                                tmp_path: Path) -> None:
    # Past the planner (which drops this route for --opset 17): the post-condition catches it.
    with pytest.raises(ConversionError, match="torch.onnx wrote opset 18, not 17 .--opset."):
        worker.call(registry.run_edge, timeout=300, tool="torch.onnx", target=Format.ONNX,
                    src=str(saved_models("cnn", "pt2")), src_format=Format.EXPORTED_PROGRAM,
                    dst=str(tmp_path / "m.onnx"), inputs=parse_inputs(FIXTURES["cnn"].input_flags),
                    options=ConvertOptions(opset=17))


def test_routes_are_kept_or_dropped_by_the_opsets_their_onnx_hops_write() -> None:
    routes = registry.plan(Format.TORCHSCRIPT, Format.ONNX)
    kept, dropped = registry.by_opset(routes, 17)
    assert "torch.onnx-legacy" in [r.name for r in kept] and "torch.onnx" in dropped
    assert registry.by_opset(routes, None) == (routes, {})
    with pytest.raises(UsageError, match="--opset 6: .*pick one in range"):
        registry.by_opset(routes, 6)
    # routes writing no ONNX have no opset to honour; a conversion with none refuses --opset
    to_tflite = registry.plan(Format.TORCHSCRIPT, Format.TFLITE)
    assert "litert-torch" in [r.name for r in registry.by_opset(to_tflite, 6)[0]]
    with pytest.raises(UsageError, match="no route of this conversion writes ONNX"):
        registry.by_opset(registry.plan(Format.ONNX, Format.TFLITE), 17)


def test_every_onnx_edge_declares_its_opsets_and_registration_checks_it() -> None:
    for edge in registry.edges():
        if edge.when is None:  # a preparation keeping the source's opset may declare none
            assert (edge.opsets is not None) == (edge.target is Format.ONNX), edge.tool
    for target, opsets in ((Format.ONNX, None), (Format.TFLITE, (7, 18)), (Format.ONNX, (9, 8)),
                           (Format.ONNX, (0, 5))):
        with pytest.raises(InternalError, match="opsets"):
            registry.register_edge(tool="test-edge", sources=(Format.KERAS,), target=target,
                                   cost=1.0, opsets=opsets)(lambda *a: "")


@pytest.mark.parametrize(("call", "flag"), [
    (lambda: portkit.convert("missing.pt2", "onnx", timeout=0), "--timeout"),
    (lambda: portkit.convert("missing.pt2", "onnx", timeout=float("nan")), "--timeout"),
    (lambda: portkit.convert("missing.pt2", "onnx", opset=-1), "--opset"),
    (lambda: portkit.convert("missing.pt2", "onnx", seed=-1), "--seed"),
    (lambda: portkit.convert("missing.pt2", "onnx", min_cosine=2.0), "--min-cosine"),
    (lambda: api.validate("a.onnx", "m.pt2", min_top1=float("inf")), "--min-top1"),
    (lambda: api.inspect("missing.onnx", timeout=-1), "--timeout"),
    (lambda: api.bench(["m.onnx"], threads=0), "--threads"),
    (lambda: api.bench(["m.onnx"], batch=0), "--batch"),
    (lambda: Budget(min_seconds=float("inf")), "--min-seconds"),
    (lambda: Budget(warmup=-1), "--warmup"),
    (lambda: BenchJob(models=(), threads=-1), "--threads"),
    (lambda: ConvertJob(source=Path("m.pt2"), target=Format.ONNX, feed=Feed(seed=2**32)),
     "--seed"),
    (lambda: gate.run("missing.toml", jobs=0), "--jobs"),
    (lambda: gate.run("missing.toml", timeout=float("inf")), "--timeout"),
], ids=lambda x: x if isinstance(x, str) else None)
def test_the_library_refuses_the_same_values(call: Callable[[], object], flag: str) -> None:
    with pytest.raises(UsageError, match=f"^{flag} .*: must be "):
        call()


def test_portkit_toml_numbers_are_checked_like_the_flags(tmp_path: Path) -> None:
    config = tmp_path / "portkit.toml"
    model = '[[model]]\nname = "m"\nfixture = "cnn"\ntargets = ["onnx"]\n'
    for line, message in (
            ("atol = nan", "atol = nan: must be a finite number >= 0"),
            ("min_cosine = 2.0", "min_cosine = 2.0: must be a finite number in [-1, 1]"),
            ("samples = 0", "samples = 0: must be an integer in [1, 10000]"),
            ("min_top5 = true", "min_top5 = True: must be"),
            ("rtol = '1e-3'", "rtol = '1e-3': must be"),
            ("p50_regression = -0.5", "p50_regression = -0.5: must be a finite number >= 0"),
            ("[model.outputs.y]\nscale_tol = inf", "[model.outputs.y]: scale_tol = inf")):
        config.write_text(model + line + "\n")
        with pytest.raises(UsageError) as e:
            gate.load_config(config)
        assert f"{config}: [[model]] #1" in str(e.value) and message in str(e.value)


def test_bounds_allow_exactly_their_range() -> None:
    assert bounds.TIMEOUT.allows(0.001) and bounds.TIMEOUT.allows(bounds.MAX_SECONDS)
    assert not any(bounds.TIMEOUT.allows(v) for v in (0, -1, float("nan"), float("inf"), True))
    assert bounds.MIN_COSINE.allows(-1.0) and bounds.MIN_COSINE.allows(1)
    assert bounds.SEED.allows(0) and bounds.SEED.allows(2**32 - 1) and not bounds.SEED.allows(1.5)
    assert bounds.parse_shard("2/3") == (2, 3)
