"""Hostile and careless use, probe by probe: each runs the ``portkit`` CLI as a user would and
records its exit code, its one error line, its seconds, and what it left behind (a file lost, a
staging folder, a live worker). Run it on two trees to see a change's before and after.

    python -m benchmarks.probes                       # this tree -> benchmarks/results/probes.json
    python -m benchmarks.probes --tree /tmp/old --out /tmp/before.json
    python -m benchmarks.probes --probes sigkill-mid-conversion   # rerun one, keep the rest
    python -m benchmarks.probes --readme docs/safety.md --before /tmp/before.json   # the table only

The ``r3-`` probes are issue 27's (the third round): each reproduces one of its numbered lines.
"""

from __future__ import annotations

import argparse
import io
import json
import os
import resource
import shutil
import signal
import stat
import subprocess
import sys
import tempfile
import time
import zipfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

RESULTS = Path(__file__).parent / "results" / "probes.json"
START, END = "<!-- probes:start -->", "<!-- probes:end -->"
Files = dict[str, Path]


@dataclass(frozen=True)
class Probe:
    """One probe: a class of misuse, the CLI arguments, and what must survive it."""

    name: str
    what: str
    args: Callable[[Files, Path], list[str | Path]]
    kept: Callable[[Files, Path], list[Path]] = lambda f, d: []  # files that must not change
    expected: int = 2
    command: str = "convert"
    env: Callable[[Files, Path], dict[str, str]] = lambda f, d: {}  # more environment
    limits: tuple[tuple[int, int], ...] = ()  # resource limits, as ``ulimit`` sets them
    reader_gone: bool = False  # stdout closed at once, as ``| head -0`` would


def _models(folder: Path) -> Files:
    """The sample models and input files the probes use, built once."""
    import onnx
    from onnx import TensorProto, helper

    from portkit.fixtures import FIXTURES

    cnn = FIXTURES["cnn"]
    files = {"pt": cnn.save(folder, "torchscript"), "pt2": cnn.save(folder, "pt2")}
    x = np.random.default_rng(0).standard_normal((1, 3, 32, 32))
    for name, array in (("int64", x.astype(np.int64)), ("float64", x),
                        ("nan", np.full_like(x, np.nan, dtype=np.float32))):
        np.savez(folder / f"{name}.npz", x=array)
        files[name] = folder / f"{name}.npz"
    (folder / "corrupt.npz").write_bytes(b"PK\x03\x04" + os.urandom(200))
    files["corrupt"] = folder / "corrupt.npz"
    np.savez(folder / "object.npz", x=np.array([{"a": 1}], dtype=object))
    files["object"] = folder / "object.npz"
    (folder / "empty").mkdir()
    files["empty"] = folder / "empty"
    os.mkfifo(folder / "fifo")
    files["fifo"] = folder / "fifo"
    big = [100_000, 100_000]
    expand = helper.make_graph(
        [helper.make_node("Expand", ["x", "shape"], ["y"])], "expand",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, big)],
        [helper.make_tensor("shape", TensorProto.INT64, [2], big)])
    fill = helper.make_graph(
        [helper.make_node("ConstantOfShape", ["shape"], ["c"]),
         helper.make_node("Add", ["c", "x"], ["y"])], "fill",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, big)],
        [helper.make_tensor("shape", TensorProto.INT64, [2], big)])
    for name, graph in (("expand", expand), ("fill", fill)):
        files[name] = folder / f"{name}.onnx"
        onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]),
                  str(files[name]))
    files.update(_linear(folder))
    return files


def _linear(folder: Path) -> Files:
    """Issue 27's setup: ``Linear(8,4)+ReLU`` (seed 0) exported as ``m.pt2``, and ``m.onnx``
    converted from it by this checkout's portkit (a plain ONNX file any version reads)."""
    import torch

    import portkit

    torch.manual_seed(0)
    module = torch.nn.Sequential(torch.nn.Linear(8, 4), torch.nn.ReLU()).eval()
    source = folder / "m.pt2"
    torch.export.save(torch.export.export(module, (torch.randn(1, 8),)), str(source))
    report = portkit.convert(source, "onnx", folder / "m.onnx")
    assert report.exit_code == 0, report.routes_tried
    return {"linear": source, "linear-onnx": folder / "m.onnx"}


def _copies(files: Files, folder: Path) -> Files:
    """Copies of the probes' files in ``folder``: a probe that damages one harms no other."""
    folder.mkdir()
    copies = {}
    for name, path in files.items():
        copies[name] = folder / path.name
        if path.is_fifo():
            os.mkfifo(copies[name])
        elif path.is_dir():
            shutil.copytree(path, copies[name])
        else:
            shutil.copy(path, copies[name])
    return copies


def _special(path: Path) -> bool:
    return path.is_fifo() or path.is_char_device()


def _device(folder: Path) -> Path:
    """A character device like /dev/null, made in ``folder`` (root only): a portkit that
    replaced it harms no system file."""
    path = folder / "null.onnx"
    os.mknod(path, 0o666 | stat.S_IFCHR, os.makedev(1, 3))
    return path


def _existing(folder: Path, name: str, text: bytes = b"a good artifact") -> Path:
    path = folder / name
    path.write_bytes(text)
    return path


def _config(folder: Path, text: str) -> Path:
    """``ci/portkit.toml`` holding ``text`` (its work folder, ``.portkit-check``, beside it);
    sources are named from there, ``../models/m.pt2``."""
    (folder / "ci").mkdir(exist_ok=True)
    path = folder / "ci" / "portkit.toml"
    path.write_text(text)
    return path


M = '[[model]]\nname = "m"\nsource = "../models/m.pt2"\nartifact = "../models/m.onnx"\n'
A = M.replace('"m"', '"a"')


def _npy(shape: tuple[int, ...]) -> bytes:
    out = io.BytesIO()
    np.lib.format.write_array_header_1_0(out, {"descr": "<f4", "fortran_order": False,
                                               "shape": shape})
    return out.getvalue()


def _zip_bomb(folder: Path) -> Path:
    """A ~1 MB ``.npz`` whose ``x.npy`` (32000000x8 float32) is 1 GB of zeros, deflated."""
    path, zeros = folder / "bomb.npz", bytes(2**22)
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED, compresslevel=1) as zf:
        with zf.open("x.npy", "w", force_zip64=True) as f:
            f.write(_npy((32_000_000, 8)))
            left = 32_000_000 * 8 * 4
            while left:
                f.write(zeros[:min(left, len(zeros))])
                left -= min(left, len(zeros))
    return path


def _npz(folder: Path, name: str, **members: bytes | np.ndarray) -> Path:
    """An ``.npz`` of these members: arrays saved as ``.npy``, bytes written as they are."""
    path = folder / name
    with zipfile.ZipFile(path, "w") as zf:
        for member, data in members.items():
            if isinstance(data, np.ndarray):
                out = io.BytesIO()
                np.save(out, data)
                data = out.getvalue()
            zf.writestr(f"{member}.npy", data)
    return path


def _without(model: Path, member: str, folder: Path) -> Path:
    """A copy of the zip ``model`` without its member ending in ``member``."""
    path = folder / f"no-member{model.suffix}"
    with zipfile.ZipFile(model) as src, zipfile.ZipFile(path, "w") as dst:
        for info in src.infolist():
            if not info.filename.endswith(member):
                dst.writestr(info, src.read(info))
    return path


def _truncated(model: Path, folder: Path) -> Path:
    path = folder / f"truncated{model.suffix}"
    path.write_bytes(model.read_bytes()[: model.stat().st_size // 2])
    return path


def _outside_bundle(f: Files, d: Path) -> list[str | Path]:
    """A bundle saved by the portkit probed, its manifest then naming its artifact by an
    absolute path outside it (the same model, so a replay of it passes)."""
    made = _cli(f["tree"], [f["linear-onnx"], "--reference", f["linear"],
                            "--save-bundle", d / "bundle"], d, d / "tmp", "validate")
    _, err = made.communicate(timeout=300)
    if made.returncode != 0:
        raise RuntimeError(f"saving the bundle: exit {made.returncode}: {err[-2000:]}")
    manifest = json.loads((d / "bundle" / "manifest.json").read_text())
    manifest["artifact"] = str(f["linear-onnx"])
    (d / "bundle" / "manifest.json").write_text(json.dumps(manifest))
    return ["--bundle", d / "bundle"]


def _hops(f: Files, d: Path) -> list[str | Path]:
    (d / "models" / "m.onnx.hops").mkdir()
    (d / "models" / "m.onnx.hops" / "notes.txt").write_text("mine")
    return [f["linear-onnx"], "--reference", f["linear"], "--hops"]


def _victim(f: Files, d: Path) -> list[str | Path]:
    (d / "out").mkdir()
    _existing(d / "out", "victim.onnx")
    return [_config(d, f'[[model]]\nname = "{d}/out/victim"\nsource = "../models/m.pt2"\n'
                       'targets = ["onnx"]\n')]


def _baseline(f: Files, d: Path) -> list[str | Path]:
    baseline = d / "run.json"
    baseline.write_text(json.dumps({"results": [
        {"id": "m/onnx/onnxruntime", "passed": True, "latency": {"p50_ms": "slow"}}]}))
    return [_config(d, M + "p50_regression = 0.1\n"), "--baseline", baseline,
            "--junit", d / "j.xml"]


def _unicode(f: Files, d: Path) -> list[str | Path]:
    return [shutil.copy(f["linear-onnx"], d / "modèle.onnx")]


def _int8(f: Files, d: Path, calibration: Path) -> list[str | Path]:
    return [f["linear"], "--to", "tflite", "--quantize", "int8", "-o", d / "q.tflite",
            "--calibration", calibration]


ROUND3 = [
    Probe("r3-config-name-path", "27.1 check: a portkit.toml model name '/abs/.../victim'",
          _victim, lambda f, d: [d / "out" / "victim.onnx"], command="check"),
    Probe("r3-config-duplicate-name", "27.2 check: two [[model]] named 'a', the first's source "
          "missing", lambda f, d: [_config(d, A.replace("m.pt2", "missing.pt2") + A)],
          command="check"),
    Probe("r3-hops-user-folder", "27.3 debug --hops where ARTIFACT.hops/ holds a notes.txt",
          _hops, lambda f, d: [d / "models" / "m.onnx.hops" / "notes.txt"], command="debug"),
    Probe("r3-calibration-zip-bomb", "27.4 --calibration a 1 MB .npz inflating to 1 GB",
          lambda f, d: _int8(f, d, _zip_bomb(d))),
    Probe("r3-step-summary-source", "27.5 check: $GITHUB_STEP_SUMMARY names the source model",
          lambda f, d: [_config(d, M)], lambda f, d: [f["linear"]], command="check",
          env=lambda f, d: {"GITHUB_STEP_SUMMARY": str(f["linear"])}),
    Probe("r3-bundle-absolute-artifact", "27.6 validate --bundle: manifest names an absolute "
          "artifact", _outside_bundle, command="validate"),
    Probe("r3-calibration-constant", "27.7 --quantize int8, --calibration 64 copies of 0.5",
          lambda f, d: _int8(f, d, _npz(d, "constant.npz",
                                        x=np.full((64, 1, 8), 0.5, np.float32))), expected=1),
    Probe("r3-validate-truncated-onnx", "27.8 validate a truncated .onnx artifact",
          lambda f, d: [_truncated(f["linear-onnx"], d), "--reference", f["linear"]],
          command="validate"),
    Probe("r3-pt2-missing-member", "27.9 convert a .pt2 missing a zip member",
          lambda f, d: [_without(f["linear"], "/data/weights/weight_0", d), "--to", "onnx",
                        "-o", d / "m.onnx"]),
    Probe("r3-inputs-member-not-npy", "27.10 --inputs .npz member b'hello'",
          lambda f, d: [f["linear"], "--to", "onnx", "-o", d / "m.onnx",
                        "--inputs", _npz(d, "hello.npz", input=b"hello")]),
    Probe("r3-work-dir-is-file", "27.11 check --work-dir names an existing file",
          lambda f, d: [_config(d, M), "--work-dir", _existing(d, "taken", b"mine")],
          lambda f, d: [d / "taken"], command="check"),
    Probe("r3-output-name-too-long", "27.11 -o of 250 characters (NAME.failed.onnx is 257)",
          lambda f, d: [f["linear"], "--to", "onnx", "-o", d / ("a" * 245 + ".onnx")]),
    Probe("r3-config-model-table", "27.12 check: [model] instead of [[model]]",
          lambda f, d: [_config(d, M.replace("[[model]]", "[model]"))], command="check"),
    Probe("r3-baseline-wrong-type", "27.12 check --baseline with \"p50_ms\": \"slow\"",
          _baseline, command="check"),
    Probe("r3-broken-pipe", "27.13 validate, its reader gone (stdout closed at once); the parity "
          "passes",
          lambda f, d: [f["linear-onnx"], "--reference", f["linear"]], command="validate",
          reader_gone=True, expected=0),
    Probe("r3-ulimit-n-16", "27.14 convert under ulimit -n 16",
          lambda f, d: [f["linear"], "--to", "onnx", "-o", d / "m.onnx"],
          limits=((resource.RLIMIT_NOFILE, 16),), expected=5),
    Probe("r3-ascii-terminal", "27.16 inspect modèle.onnx with PYTHONIOENCODING=ascii",
          _unicode, command="inspect", env=lambda f, d: {"PYTHONIOENCODING": "ascii"},
          expected=0),
]
X = ["--input", "x:1x3x32x32"]
PROBES = [
    Probe("report-onto-source", "--report names the source model",
          lambda f, d: [f["pt2"], "--to", "onnx", "-o", d / "m.onnx", "--report", f["pt2"]],
          lambda f, d: [f["pt2"]]),
    Probe("report-is-output", "--report names the -o artifact",
          lambda f, d: [f["pt2"], "--to", "onnx", "-o", d / "m.onnx", "--report", d / "m.onnx"]),
    Probe("report-is-folder", "--report names a folder",
          lambda f, d: [f["pt2"], "--to", "onnx", "-o", d / "m.onnx", "--report", d]),
    Probe("output-fifo", "-o names a FIFO",
          lambda f, d: [f["pt2"], "--to", "onnx", "-o", f["fifo"]]),
    Probe("output-device", "-o names a device node (a null device made in the probe's folder)",
          lambda f, d: [f["pt2"], "--to", "onnx", "-o", _device(d)]),
    Probe("output-suffix", "-o out/c.tflite with --to onnx",
          lambda f, d: [f["pt2"], "--to", "onnx", "-o", d / "c.tflite"]),
    Probe("parity-fail-keeps-output", "parity fails; -o held a good artifact",
          lambda f, d: [f["pt2"], "--to", "onnx", "-o", _existing(d, "good.onnx"),
                        "--atol", "0", "--rtol", "0"],
          lambda f, d: [d / "good.onnx"], expected=1),
    Probe("inputs-int64", "--inputs int64 array for a float input",
          lambda f, d: [f["pt"], "--to", "onnx", "-o", d / "m.onnx", "--inputs", f["int64"]]),
    Probe("inputs-float64", "--inputs float64 array for a float32 input (values fit: cast)",
          lambda f, d: [f["pt"], "--to", "onnx", "-o", d / "m.onnx", "--inputs", f["float64"]],
          expected=0),
    Probe("inputs-corrupt-npz", "--inputs an .npz that is a corrupt zip",
          lambda f, d: [f["pt"], "--to", "onnx", "-o", d / "m.onnx", "--inputs", f["corrupt"]]),
    Probe("inputs-nan", "--inputs all NaN",
          lambda f, d: [f["pt"], "--to", "onnx", "-o", d / "m.onnx", "--inputs", f["nan"]]),
    Probe("input-dtype", "--input with a dtype the model doesn't take",
          lambda f, d: [f["pt2"], "--to", "onnx", "-o", d / "m.onnx",
                        "--input", "x:1x3x32x32:int64"]),
    Probe("input-unknown-name", "--input names no input of the model",
          lambda f, d: [f["pt2"], "--to", "onnx", "-o", d / "m.onnx", "--input", "y:1x3x32x32"]),
    Probe("input-zero-dim", "--input with a zero dimension",
          lambda f, d: [f["pt"], "--to", "onnx", "-o", d / "m.onnx", "--input", "x:0x3x32x32"]),
    Probe("pt2-other-batch", "--input batch a .pt2 was not exported for",
          lambda f, d: [f["pt2"], "--to", "onnx", "-o", d / "m.onnx", "--input", "x:4x3x32x32"]),
    Probe("timeout-nan", "--timeout nan",
          lambda f, d: [f["pt"], "--to", "onnx", "-o", d / "m.onnx", *X, "--timeout", "nan"]),
    Probe("timeout-zero", "--timeout 0",
          lambda f, d: [f["pt"], "--to", "onnx", "-o", d / "m.onnx", *X, "--timeout", "0"]),
    Probe("opset-99", "--opset 99",
          lambda f, d: [f["pt2"], "--to", "onnx", "-o", d / "m.onnx", "--opset", "99"]),
    Probe("calibration-object", "--calibration with an object array",
          lambda f, d: [f["pt2"], "--to", "tflite", "-o", d / "m.tflite", "--quantize", "int8",
                        "--calibration", f["object"]]),
    Probe("calibration-empty", "--calibration an empty folder",
          lambda f, d: [f["pt2"], "--to", "tflite", "-o", d / "m.tflite", "--quantize", "int8",
                        "--calibration", f["empty"]]),
    Probe("memory-bomb-expand", "ONNX Expand to 1e10 elements",
          lambda f, d: [f["expand"], "--to", "tflite", "-o", d / "m.tflite"], expected=5),
    Probe("memory-bomb-fill", "ONNX ConstantOfShape to 1e10 elements",
          lambda f, d: [f["fill"], "--to", "tflite", "-o", d / "m.tflite"], expected=5),
    *ROUND3,
]


def _hostile(name: str, args: list[str], code: int) -> Probe:
    """A case of ``tests/security``: the hostile file made in the probe's folder (a payload
    would create SENTINEL there), converted to a path with ``--to``'s suffix."""
    from portkit.formats import Format
    from tests.security import hostile

    def argv(f: Files, d: Path) -> list[str | Path]:
        source = getattr(hostile, name)(d, d / "SENTINEL")
        return [source, *args, "-o", d / f"out{Format(args[1]).suffix}"]

    return Probe(f"hostile-{name}", f"hostile file: {name.replace('_', ' ')}", argv,
                 expected=code)


def _fuzzed(seed: int) -> Probe:
    """``inspect`` on a small ``.tflite`` with 3 random bytes changed."""
    from tests.security import hostile

    return Probe(f"inspect-fuzzed-{seed}", f"inspect a fuzzed flatbuffer (seed {seed})",
                 lambda f, d: [hostile.fuzzed(hostile.tflite_model(d), d, seed)],
                 command="inspect")


def _security_probes() -> list[Probe]:
    from tests.security.test_hostile_files import CASES

    return [_hostile(name, args, code) for name, args, code, _ in CASES] + [
        _fuzzed(0), _fuzzed(5)]


def _live_workers(tmp: Path) -> int:
    """Processes whose command line runs a portkit worker with its scratch folder in ``tmp``."""
    n = 0
    for proc in Path("/proc").iterdir():
        try:
            cmd = (proc / "cmdline").read_bytes().split(b"\0")
        except OSError:
            continue
        if b"portkit.runtimes.worker" in cmd and any(str(tmp).encode() in c for c in cmd):
            n += 1
    return n


def _left(folder: Path, tmp: Path) -> list[str]:
    """Temporary folders portkit left in ``folder`` (staging) and ``tmp`` (workers)."""
    return sorted(p.name for p in (*folder.glob(".*portkit*"), *tmp.glob("portkit-*")))


def _cli(tree: Path, args: list[Any], cwd: Path, tmp: Path, command: str = "convert",
         env: dict[str, str] | None = None, limits: tuple[tuple[int, int], ...] = ()
         ) -> subprocess.Popen[str]:
    env = {**os.environ, "PYTHONPATH": str(tree), "TMPDIR": str(tmp),
           "PORTKIT_MEMORY_LIMIT_MB": os.environ.get("PORTKIT_MEMORY_LIMIT_MB", ""), **(env or {})}
    if not env["PORTKIT_MEMORY_LIMIT_MB"]:
        del env["PORTKIT_MEMORY_LIMIT_MB"]

    def limited() -> None:
        for kind, value in limits:
            resource.setrlimit(kind, (value, value))

    return subprocess.Popen([sys.executable, "-m", "portkit", command, *map(str, args)],
                            cwd=cwd, env=env, text=True, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, preexec_fn=limited if limits else None)


def _row(name: str, code: int, started: float, err: str, **more: Any) -> dict[str, Any]:
    lines = [ln for ln in err.splitlines() if ln.startswith("portkit:")]
    row = {"probe": name, "exit": code, "seconds": round(time.perf_counter() - started, 1),
           "line": lines[-1][:300] if lines else "", "traceback": "Traceback" in err, **more}
    print(json.dumps(row), flush=True)
    return row


def run_probe(probe: Probe, tree: Path, files: Files, folder: Path) -> dict[str, Any]:
    """Run one probe in a folder of its own; what it must keep is checksummed around it."""
    work, tmp = folder / probe.name, folder / probe.name / "tmp"
    tmp.mkdir(parents=True)
    files = {**_copies(files, work / "models"), "tree": tree}  # a probe may run portkit first
    try:
        args = probe.args(files, work)
    except PermissionError as e:  # mknod needs root
        return {"probe": probe.name, "what": probe.what, "skipped": str(e)}
    kept = {p: p.read_bytes() for p in probe.kept(files, work)}
    special = [p for p in work.rglob("*") if _special(p)]
    started = time.perf_counter()
    proc = _cli(tree, args, work, tmp, probe.command, probe.env(files, work), probe.limits)
    if probe.reader_gone:
        assert proc.stdout is not None and proc.stderr is not None
        proc.stdout.close()
        err = proc.stderr.read()
        proc.wait(timeout=900)
    else:
        _, err = proc.communicate(timeout=900)
    lost = [p.name for p, data in kept.items() if not p.exists() or p.read_bytes() != data]
    lost += [p.name for p in special if not _special(p)]  # a FIFO or device replaced by a file
    lost += ["the payload ran"] if (work / "SENTINEL").exists() else []
    return _row(probe.name, proc.returncode, started, err, what=probe.what,
                expected=probe.expected, lost=lost, left=_left(work, tmp))


def run_signal(tree: Path, files: Files, folder: Path, sig: signal.Signals) -> dict[str, Any]:
    """Send ``sig`` to a conversion once its first worker runs; what is left 2 s later."""
    name = f"{sig.name.lower()}-mid-conversion"
    work, tmp = folder / name, folder / name / "tmp"
    tmp.mkdir(parents=True)
    started = time.perf_counter()
    proc = _cli(tree, [files["pt2"], "--to", "tflite", "-o", work / "m.tflite"], work, tmp)
    deadline = time.monotonic() + 120
    while not list(tmp.glob("portkit-worker-*")) and time.monotonic() < deadline:
        time.sleep(0.1)
    time.sleep(3)  # the workers are importing their frameworks
    proc.send_signal(sig)
    _, err = proc.communicate(timeout=120)
    time.sleep(2)
    left = _left(work, tmp)
    workers = _live_workers(tmp)
    expected = {signal.SIGTERM: 143, signal.SIGHUP: 129, signal.SIGKILL: -9}[sig]
    row = _row(name, proc.returncode, started, err, what=f"{sig.name} during a conversion",
               expected=expected, lost=[], left=left, live_workers=workers)
    if sig is signal.SIGKILL:  # the next run sweeps what a killed one could not remove
        time.sleep(5)  # folders touched in the last 5 s are left alone (a run just starting)
        nxt = _cli(tree, [files["pt2"], "--to", "tflite", "-o", work / "m.tflite"], work, tmp)
        nxt.communicate(timeout=600)
        row["left_after_next_run"] = _left(work, tmp)
    return row


def measure(tree: Path, names: list[str] | None = None) -> list[dict[str, Any]]:
    """Every probe (or those named) against the portkit in ``tree``."""
    with tempfile.TemporaryDirectory(prefix="probes-") as tmp:
        folder = Path(tmp)
        (folder / "models").mkdir()
        files = _models(folder / "models")
        rows = [run_probe(p, tree, files, folder) for p in PROBES + _security_probes()
                if not names or p.name in names]
        for sig in (signal.SIGTERM, signal.SIGHUP, signal.SIGKILL):
            if not names or f"{sig.name.lower()}-mid-conversion" in names:
                rows.append(run_signal(tree, files, folder, sig))
    return rows


def _outcome(r: dict[str, Any]) -> str:
    """What a probe lost or left behind, in words."""
    parts = [f"lost {x}" for x in r["lost"]] + r["left"]
    if r.get("live_workers"):
        parts.append(f"{r['live_workers']} live worker(s)")
    if "left_after_next_run" in r:
        parts.append(f"after the next run: {', '.join(r['left_after_next_run']) or 'nothing'}")
    return ", ".join(parts) or "nothing"


def markdown(after: list[dict[str, Any]], before: list[dict[str, Any]] | None) -> str:
    """The docs table: each probe with its exit code and what it lost or left, before and
    now."""
    old = {r["probe"]: r for r in before or []}
    lines = ["| probe | before: exit (s), lost or left | now: exit | s | now: lost or left |",
             "|---|---|---|---|---|"]
    for r in after:
        if "skipped" in r:
            continue
        b = old.get(r["probe"])
        was = f"{b['exit']} ({b['seconds']:g} s), {_outcome(b)}" if b and "exit" in b else "-"
        lines.append(f"| {r['what']} | {was} | {r['exit']} | {r['seconds']:g} | "
                     f"{_outcome(r)} |")
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tree", type=Path, default=Path(__file__).resolve().parents[1],
                        help="The portkit checkout to probe (default: this one).")
    parser.add_argument("--out", type=Path, default=RESULTS)
    parser.add_argument("--probes", nargs="*", help="Only these probes.")
    parser.add_argument("--readme", type=Path, help="Replace the table in this file (no run).")
    parser.add_argument("--before", type=Path, help="With --readme: an earlier run's JSON.")
    args = parser.parse_args()
    if args.readme:
        after = json.loads(args.out.read_text())["probes"]
        before = json.loads(args.before.read_text())["probes"] if args.before else None
        text = args.readme.read_text()
        head, rest = text.split(START, 1)
        _, tail = rest.split(END, 1)
        args.readme.write_text(f"{head}{START}\n{markdown(after, before)}{END}{tail}")
        return
    rows = measure(args.tree, args.probes)
    if args.probes and args.out.exists():  # the other probes' rows stay as they were
        new = {r["probe"] for r in rows}
        rows = [r for r in json.loads(args.out.read_text())["probes"] if r["probe"] not in new] + rows
    args.out.write_text(json.dumps({"tree": str(args.tree), "date": time.strftime("%Y-%m-%d"),
                                    "probes": rows}, indent=1) + "\n")


if __name__ == "__main__":
    main()
