"""PyTorch models quantized to TFLite int8, by portkit and by the peers' own int8 paths.

    python -m benchmarks.quantize                        # every PyTorch model of the zoo
    python -m benchmarks.quantize --models resnet18 encoder4 --timeout 600
    python -m benchmarks.report --quantize --readme docs/benchmarks.md

For each model and mode (``int8``: static int8 calibrated, float inputs and outputs;
``dynamic``: int8 weights, float activations) each tool runs alone in a fresh process:

- ``portkit convert M.pt2 --to tflite --quantize MODE`` (``--calibration`` with all
  ``SAMPLES`` samples: portkit holds back the last ``HELD_BACK`` to validate on, in both modes;
  dynamic calibrates on none), and once
  without ``--quantize`` for the float time the dynamic time is set against;
- litert-torch's PT2E quantization (``benchmarks/peers.py``: ``litert-torch-pt2e``);
- onnx2tf's own quantization: ``torch.onnx.export`` (timed once per model, counted in both
  modes), then the onnx2tf CLI with ``-oiqt -cind`` (``*_full_integer_quant.tflite`` with
  float I/O by ``-iqd float32 -oqd float32``) or ``-odrqt`` (``*_dynamic_range_quant.tflite``);
- litert-torch float then ai-edge-quantizer by hand (``litert-torch+aeq``).

The peers calibrate on the first ``SAMPLES - HELD_BACK`` samples, as portkit does. Every
artifact is judged the same way: run on the ``HELD_BACK`` held-back samples and compared with
the float source under portkit's policy for the mode (``POLICIES["int8"]``/``["dynamic"]``);
then the artifacts of one model and mode that ran are timed against each other in turns in one
process (TFLite, 1 and 2 threads; ``benchmarks.run.time_runs``). Results are merged into
``benchmarks/results/quantize.json`` model by model.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import re
import shutil
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from benchmarks.run import (
    bench_each,
    input_flag,
    last_line,
    machine,
    put_onnx2tf_sample,
    time_runs,
    tool_env,
)
from benchmarks.zoo import ZooModel, by_name
from portkit.formats import sniff
from portkit.options import Feed
from portkit.policies import POLICIES, output_kinds
from portkit.results import versions
from portkit.runtimes import tasks, worker
from portkit.runtimes.tasks import Reference
from portkit.validators.parity import compare_outputs

RESULTS = Path(__file__).parent / "results" / "quantize.json"
MODES = ("int8", "dynamic")
SAMPLES = 132  # seeded samples of the model's inputs: calibration, then the held-back ones
HELD_BACK = 32  # the last samples: never calibrated on, every artifact is judged on them
TOOL_TIMEOUT = 1200.0
ANSI = re.compile(r"\x1b\[[0-9;]*m")


@dataclass(frozen=True)
class Tool:
    """One way to quantize: portkit or a peer's own int8 path."""

    name: str  # portkit, litert-torch-pt2e, onnx2tf, litert-torch+aeq
    label: str  # how the docs tables name it


TOOLS = (
    Tool("portkit", "portkit"),
    Tool("litert-torch-pt2e", "litert-torch PT2E"),
    Tool("onnx2tf", "torch.onnx + onnx2tf"),  # the docs tables add " CLI"
    Tool("litert-torch+aeq", "litert-torch + ai-edge-quantizer"),
)


@dataclass(frozen=True)
class Job:
    """What every conversion of one model needs: its source, data, folder and time limit."""

    src: Path
    ref: Reference
    work: Path
    timeout: float
    calibration: Path  # all SAMPLES samples (portkit)
    peer_calibration: Path  # the first SAMPLES - HELD_BACK (the peers)
    onnx: dict[str, Any]  # torch.onnx's run: exit code, seconds, artifact
    kinds: tuple[str, ...]  # --output-kind NAME=KIND where the guess would be wrong


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--models", nargs="*",
                        help="Zoo model names (default: every PyTorch model).")
    parser.add_argument("--modes", nargs="*", choices=MODES, default=list(MODES))
    parser.add_argument("--tools", nargs="*", choices=[t.name for t in TOOLS],
                        default=[t.name for t in TOOLS])
    parser.add_argument("--timeout", type=float, default=TOOL_TIMEOUT,
                        help="Seconds one tool may take on one model and mode.")
    parser.add_argument("--results", type=Path, default=RESULTS)
    parser.add_argument("--keep", type=Path, help="Keep the artifacts in this folder.")
    args = parser.parse_args()
    models = [m for m in by_name(args.models) if m.framework == "torch"]
    tools = [t for t in TOOLS if t.name in args.tools]
    bench_each(models, "portkit-bench-quantize", args.results, args.keep,
               lambda model, work: bench_model(model, work, args.modes, tools, args.timeout))


def bench_model(model: ZooModel, work: Path, modes: list[str], tools: list[Tool],
                timeout: float) -> dict[str, Any]:
    """Every tool in every mode on one model, then parity and latency of what they wrote."""
    src = model.save(work)
    ref: Reference = worker.call(tasks.reference, what=src.name, timeout=1800, path=str(src),
                                 fmt=sniff(src), feed=Feed(samples=SAMPLES))
    calibration, peer_calibration = work / "calibration.npz", work / "calibration_peers.npz"
    np.savez(calibration, **_stacked(ref, ref.feeds))
    np.savez(peer_calibration, **_stacked(ref, ref.feeds[:SAMPLES - HELD_BACK]))
    onnx = {"exit_code": None, "seconds": None, "artifact": None}
    if any(t.name == "onnx2tf" for t in tools):
        print(f"{model.name}: torch.onnx export (for onnx2tf)", flush=True)
        onnx = _export_onnx(src, ref, work, timeout)
    job = Job(src, ref, work, timeout, calibration, peer_calibration, onnx, model.kinds)
    print(f"{model.name}: portkit float", flush=True)
    float_run = _portkit(job, None)
    runs: list[dict[str, Any]] = []
    for mode in modes:
        for tool in tools:
            print(f"{model.name}: {tool.label} {mode}", flush=True)
            runs.append(_convert(tool, mode, job))
    for run in runs:
        if run["artifact"]:
            run.update(_judge(run, ref, model.kinds))
    for mode in modes:
        time_runs(f"tflite-{mode}", [r for r in runs if r["mode"] == mode and r.get("ran")], ref)
    for run in [float_run, *runs]:
        run.pop("artifact_abs", None)
    return {
        "name": model.name, "framework": model.framework, "config": model.config,
        "source_bytes": src.stat().st_size,
        "inputs": [dataclasses.asdict(s) for s in ref.inputs],
        "samples": SAMPLES, "held_back": HELD_BACK,
        "float": float_run, "torch_onnx": {k: onnx[k] for k in ("exit_code", "seconds")},
        "runs": runs,
        "machine": machine(), "versions": versions(),
        "date": time.strftime("%Y-%m-%d %H:%M:%S %Z"),
    }


def _stacked(ref: Reference, feeds: tuple[dict[str, np.ndarray], ...]) -> dict[str, np.ndarray]:
    """Samples on an extra leading axis, by input name (``--calibration``'s layout)."""
    return {s.name: np.stack([f[s.name] for f in feeds]) for s in ref.inputs}


def _convert(tool: Tool, mode: str, job: Job) -> dict[str, Any]:
    if tool.name == "portkit":
        run = _portkit(job, mode)
    elif tool.name == "onnx2tf":
        run = _onnx2tf(job, mode)
    else:
        folder = _folder(job, f"{mode}-{tool.name}")
        dst = folder / f"{job.src.stem}.tflite"
        cmd = [sys.executable, "-m", "benchmarks.peers", tool.name, str(job.src), str(dst),
               *[f"--input={input_flag(s)}" for s in job.ref.inputs]]
        if mode == "int8":
            cmd += ["--calibration", str(job.peer_calibration)]
        run = _launch(cmd, folder, dst, job.timeout)
    return {"tool": tool.name, "label": tool.label, "mode": mode, **run}


def _portkit(job: Job, mode: str | None) -> dict[str, Any]:
    """``portkit convert --to tflite`` (``--quantize mode``, or float), with its report."""
    folder = _folder(job, f"{mode or 'float'}-portkit")
    dst, report = folder / f"{job.src.stem}.tflite", folder / "report.json"
    cmd = ["portkit", "convert", str(job.src), "--to", "tflite", "-o", str(dst),
           "--report", str(report)]
    cmd += [f"--output-kind={kind}" for kind in job.kinds]
    if mode:
        cmd += ["--quantize", mode]
    if mode:  # int8 calibrates on it; every mode is judged on its held-back samples
        cmd += ["--calibration", str(job.calibration)]
    run = _launch(cmd, folder, dst, job.timeout)
    if report.exists():
        rep = json.loads(report.read_text())
        kept = Path((rep.get("artifact") or {}).get("path") or dst)
        if rep.get("artifact_failed") and kept.exists():
            # exit 1 keeps an artifact that failed portkit's own parity beside -o (NAME.failed
            # .tflite): it is judged like every other
            run.update(artifact=str(kept.relative_to(job.work)), artifact_abs=str(kept))
        failed = [a["error"] for a in rep["routes_tried"] if a["error"]]
        if run["exit_code"] != 0 and failed:
            run["error"] = failed[-1][:300]
        run.update(route=rep["route_name"], portkit_passed=rep["passed"],
                   portkit_seconds=rep["seconds"], converter_seconds=rep["converter_seconds"],
                   overhead_seconds=rep["overhead_seconds"],
                   routes_tried=[{"route": a["route"], "ok": a["ok"], "error": a["error"]}
                                 for a in rep["routes_tried"]])
    return run


def _export_onnx(src: Path, ref: Reference, work: Path, timeout: float) -> dict[str, Any]:
    """``torch.onnx.export`` alone in a fresh process (``benchmarks.peers torch.onnx``)."""
    folder = work / "torch.onnx"
    folder.mkdir()
    dst = folder / "model.onnx"
    cmd = [sys.executable, "-m", "benchmarks.peers", "torch.onnx", str(src), str(dst),
           *[f"--input={input_flag(s)}" for s in ref.inputs]]
    return _launch(cmd, folder, dst, timeout)


def _onnx2tf(job: Job, mode: str) -> dict[str, Any]:
    """The onnx2tf CLI's own quantization on torch.onnx's ONNX; both steps' time counted."""
    if not job.onnx["artifact_abs"]:
        return {"exit_code": None, "seconds": None, "artifact": None,
                "error": f"not run: torch.onnx wrote no ONNX ({job.onnx.get('error')})"}
    folder = _folder(job, f"{mode}-onnx2tf")
    local = folder / "model.onnx"
    shutil.copy(job.onnx["artifact_abs"], local)
    put_onnx2tf_sample(folder)
    cmd = ["onnx2tf", "-i", str(local), "-o", str(folder / "out")]
    if mode == "int8":
        cmd += ["-oiqt", "-iqd", "float32", "-oqd", "float32"]
        for spec in job.ref.inputs:  # in TensorFlow's axis order: channels last from 3-D up
            data = np.concatenate([f[spec.name] for f in job.ref.feeds[:SAMPLES - HELD_BACK]])
            if data.ndim >= 3:
                data = np.moveaxis(data, 1, -1)
            np.save(folder / f"{spec.name}.npy", data)
            cmd += ["-cind", spec.name, str(folder / f"{spec.name}.npy"), "[0.0]", "[1.0]"]
        dst = folder / "out" / "model_full_integer_quant.tflite"
    else:
        cmd += ["-odrqt"]
        dst = folder / "out" / "model_dynamic_range_quant.tflite"
    run = _launch(cmd, folder, dst, job.timeout)
    # onnx2tf can write the file and still fail later (another variant): the file is judged
    if dst.exists() and run["artifact"] is None:
        run.update(artifact=str(dst.relative_to(job.work)), artifact_abs=str(dst))
    if run["seconds"] is not None:
        run["seconds"] = round(run["seconds"] + job.onnx["seconds"], 2)
    run["note"] = f"torch.onnx export {job.onnx['seconds']:.1f} s + onnx2tf CLI"
    return run


def _folder(job: Job, name: str) -> Path:
    folder = job.work / name
    folder.mkdir()
    return folder


def _launch(cmd: list[str], folder: Path, dst: Path, timeout: float) -> dict[str, Any]:
    """Run one tool in a fresh process in ``folder``: its wall time, exit status, artifact."""
    started = time.perf_counter()
    try:
        proc = subprocess.run(cmd, cwd=folder, env=tool_env(), capture_output=True, text=True,
                              timeout=timeout, check=False)
        code, log = proc.returncode, proc.stdout + proc.stderr
    except subprocess.TimeoutExpired:
        code, log = None, f"timed out after {timeout:g} s"
    seconds = time.perf_counter() - started
    log = ANSI.sub("", log)  # onnx2tf colours its messages
    (folder / "log.txt").write_text(log)
    produced = dst.exists() and code == 0
    error = None if code == 0 else last_line(log)
    if code is not None and code < 0:
        error = f"crashed ({signal.Signals(-code).name}); last words: {error}"
    return {"exit_code": code, "seconds": round(seconds, 2),
            "artifact": str(dst.relative_to(folder.parent)) if produced else None,
            "artifact_abs": str(dst) if produced else None, "error": error}


def _judge(run: dict[str, Any], ref: Reference, kinds: tuple[str, ...]) -> dict[str, Any]:
    """Run the artifact on the held-back samples; compare with the source under the mode's
    policy (with the model's output kinds)."""
    tol = POLICIES[run["mode"]]
    path = Path(run["artifact_abs"])
    feeds, outputs = ref.feeds[SAMPLES - HELD_BACK:], ref.outputs[SAMPLES - HELD_BACK:]
    try:
        got = worker.call(tasks.run_artifact, what=path.name, timeout=900, path=str(path),
                          fmt=sniff(path), runtime="tflite", device="cpu", feeds=feeds,
                          specs=list(ref.inputs), prefer_channels_last=True)
    except Exception as e:  # noqa: BLE001 - a broken artifact is a result
        why = str(e).splitlines()[0].removeprefix(f"{path}: ")
        return {"ran": False, "parity_passed": False, "run_error": why,
                "size_bytes": path.stat().st_size}
    rows = compare_outputs(list(outputs), got.outputs, tol, output_kinds(tol, kinds))
    return {
        "ran": True, "size_bytes": path.stat().st_size,
        "parity_passed": all(r.passed for r in rows),
        "cosine": min(r.cosine for r in rows),
        "top1": min((r.top1 for r in rows if r.top1 is not None), default=None),
        "max_abs_err": max(r.max_abs_err for r in rows),
        "kind": sorted({getattr(r.kind, "value", str(r.kind)) for r in rows}),
        "failed": sorted({f for r in rows for f in r.failed}),
        "policy": tol.policy,
    }


if __name__ == "__main__":
    main()
