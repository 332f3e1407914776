"""Hostile and careless use, probe by probe: each runs the ``portkit`` CLI as a user would and
records its exit code, its one error line, its seconds, and what it left behind (a file lost, a
staging folder, a live worker). Run it on two trees to see a change's before and after.

    python -m benchmarks.probes                       # this tree -> benchmarks/results/probes.json
    python -m benchmarks.probes --tree /tmp/old --out /tmp/before.json
    python -m benchmarks.probes --probes sigkill-mid-conversion   # rerun one, keep the rest
    python -m benchmarks.probes --readme docs/safety.md --before /tmp/before.json   # the table only
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import stat
import subprocess
import sys
import tempfile
import time
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
    return files


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


def _cli(tree: Path, args: list[Any], cwd: Path, tmp: Path,
         command: str = "convert") -> subprocess.Popen[str]:
    env = {**os.environ, "PYTHONPATH": str(tree), "TMPDIR": str(tmp),
           "PORTKIT_MEMORY_LIMIT_MB": os.environ.get("PORTKIT_MEMORY_LIMIT_MB", "")}
    if not env["PORTKIT_MEMORY_LIMIT_MB"]:
        del env["PORTKIT_MEMORY_LIMIT_MB"]
    return subprocess.Popen([sys.executable, "-m", "portkit", command, *map(str, args)],
                            cwd=cwd, env=env, text=True, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE)


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
    files = _copies(files, work / "models")
    try:
        args = probe.args(files, work)
    except PermissionError as e:  # mknod needs root
        return {"probe": probe.name, "what": probe.what, "skipped": str(e)}
    kept = {p: p.read_bytes() for p in probe.kept(files, work)}
    special = [p for p in work.rglob("*") if _special(p)]
    started = time.perf_counter()
    proc = _cli(tree, args, work, tmp, probe.command)
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
