"""Run portkit and the peer tools over the zoo, in one run, and record what each produced.

    python -m benchmarks.run                      # the whole zoo (about an hour on 2 cores)
    python -m benchmarks.run --models resnet18 lstm
    python -m benchmarks.report --readme docs/benchmarks.md

For each model and target (ONNX; TFLite float32; TFLite int8 where it applies) every tool that
does the hop runs alone in a fresh process: ``portkit convert`` (its default route, and with
``--optimize latency``) and each peer (``benchmarks/peers.py``; onnx2tf as its own CLI). Then,
the same way for everyone, each artifact is run on the reference inputs and compared with the
source under portkit's parity policy for its precision, and the artifacts of one model and
target are timed against each other in turns in one process (TFLite with 1 and 2 threads, ONNX
Runtime). A tool "converted" a model when it wrote an artifact that ran and matched.

Results are merged into ``benchmarks/results/zoo.json`` model by model, with the machine and
library versions.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from benchmarks.zoo import ZooModel, by_name
from portkit.formats import Format, sniff
from portkit.options import Budget, Feed
from portkit.policies import POLICIES, Tolerance
from portkit.results import Latency, versions
from portkit.runtimes import tasks, worker
from portkit.runtimes.tasks import Reference
from portkit.specs import TensorSpec
from portkit.validators.latency import time_together
from portkit.validators.parity import compare_outputs

RESULTS = Path(__file__).parent / "results" / "zoo.json"
TOOL_TIMEOUT = 1200.0
BUDGET = Budget(warmup=5, min_runs=50, min_seconds=2.0)
CALIBRATION_SAMPLES = 32
# The fp32 policy before the scale-aware rule (issue 12): numpy.allclose per element.
OLD_FP32 = Tolerance(atol=1e-4, rtol=1e-3, scale_tol=0.0, policy="fp32 (old)")
REPEATS = 3
_ONNX2TF_SAMPLE = "calibration_image_sample_data_20x128x128x3_float32.npy"


@dataclass(frozen=True)
class Tool:
    """One way to do a hop: portkit (``mode`` default or optimize) or a peer."""

    name: str
    target: str  # onnx, tflite, tflite-int8
    mode: str = ""  # portkit: "default" or "optimize"

    @property
    def label(self) -> str:
        return "portkit --optimize latency" if self.mode == "optimize" else self.name


def tools_for(model: ZooModel) -> list[Tool]:
    """Every tool that does each of the model's hops."""
    torch = model.framework == "torch"
    tools = [Tool("portkit", "onnx", "default"), Tool("torch.onnx" if torch else "tf2onnx", "onnx")]
    tools += [Tool("portkit", "tflite", "default"), Tool("portkit", "tflite", "optimize")]
    tools += ([Tool("litert-torch", "tflite"), Tool("onnx2tf", "tflite")] if torch
              else [Tool("tflite-converter", "tflite")])
    if model.int8:
        tools += [Tool("portkit", "tflite-int8", "default"),
                  Tool("portkit", "tflite-int8", "optimize"),
                  Tool("tflite-converter", "tflite-int8")]
    return tools


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--models", nargs="*", help="Zoo model names (default: all).")
    parser.add_argument("--results", type=Path, default=RESULTS)
    parser.add_argument("--keep", type=Path, help="Keep the artifacts in this folder.")
    args = parser.parse_args()
    bench_each(by_name(args.models), "portkit-bench", args.results, args.keep, bench_model)


def bench_each(models: list[ZooModel], prefix: str, results: Path, keep: Path | None,
               bench: Callable[[ZooModel, Path], dict[str, Any]]) -> None:
    """``bench(model, folder)`` for each model in a fresh temporary folder (copied to ``keep``
    if given), each result merged into ``results`` as it comes."""
    for model in models:
        work = Path(tempfile.mkdtemp(prefix=f"{prefix}-{model.name}-"))
        try:
            result = bench(model, work)
        finally:
            if keep:
                shutil.copytree(work, keep / model.name, dirs_exist_ok=True)
            shutil.rmtree(work, ignore_errors=True)
        merge_result(results, result)
        print(f"{model.name}: done, results in {results}", flush=True)


def bench_model(model: ZooModel, work: Path) -> dict[str, Any]:
    """Every tool on every target of one model, then parity and latency of what they wrote."""
    src = model.save(work)
    ref: Reference = worker.call(tasks.reference, what=src.name,
                                 path=str(src), fmt=sniff(src),
                                 feed=Feed(samples=CALIBRATION_SAMPLES if model.int8 else 1))
    calibration = work / "calibration.npz"
    if model.int8:  # the same representative inputs for portkit and the peer
        np.savez(calibration, **{s.name: np.concatenate([f[s.name] for f in ref.feeds])
                                 for s in ref.inputs})
    runs: list[dict[str, Any]] = []
    for tool in tools_for(model):
        print(f"{model.name}: {tool.label} -> {tool.target}", flush=True)
        runs.append(_convert(tool, src, ref, calibration, work, runs))
    for run in runs:
        if run["artifact"]:
            run.update(_parity(run, ref))
    for target in sorted({r["target"] for r in runs}):
        time_runs(target, [r for r in runs if r["target"] == target and r.get("ran")], ref)
    for run in runs:
        run["artifact"] = Path(run["artifact"]).name if run["artifact"] else None
    return {
        "name": model.name, "framework": model.framework, "config": model.config,
        "source_bytes": src.stat().st_size,
        "inputs": [dataclasses.asdict(s) for s in ref.inputs],
        "runs": runs,
        "machine": machine(), "versions": versions(),
        "date": time.strftime("%Y-%m-%d %H:%M:%S %Z"),
    }


def _convert(tool: Tool, src: Path, ref: Reference, calibration: Path, work: Path,
             earlier: list[dict[str, Any]]) -> dict[str, Any]:
    """Run one tool in a fresh process; its wall time, exit status and artifact."""
    folder = work / f"{tool.target}-{tool.name}-{tool.mode or 'peer'}"
    folder.mkdir()
    int8 = tool.target == "tflite-int8"
    suffix = ".onnx" if tool.target == "onnx" else ".tflite"
    dst = folder / f"{src.stem}{suffix}"
    flags = [f"--input={input_flag(s)}" for s in ref.inputs]
    run: dict[str, Any] = {"tool": tool.name, "label": tool.label, "target": tool.target,
                           "mode": tool.mode}
    seconds_before = 0.0
    if tool.name == "portkit":
        report = folder / "report.json"
        cmd = ["portkit", "convert", str(src), "--to", "tflite" if int8 else tool.target,
               "-o", str(dst), "--report", str(report)]
        if int8:
            cmd += ["--quantize", "int8", "--calibration", str(calibration)]
        if tool.mode == "optimize":
            cmd += ["--optimize", "latency"]
    elif tool.name == "onnx2tf":
        onnx = next((r for r in earlier if r["tool"] == "torch.onnx"), None)
        if onnx is None or not onnx["exit_code"] == 0:
            return {**run, "exit_code": None, "seconds": None, "artifact": None,
                    "error": "not run: torch.onnx wrote no ONNX to start from"}
        seconds_before = onnx["seconds"]
        local = folder / "model.onnx"
        shutil.copy(work / onnx["artifact"], local)
        put_onnx2tf_sample(folder)
        cmd = ["onnx2tf", "-i", str(local), "-o", str(folder / "out")]
        dst = folder / "out" / "model_float32.tflite"
    else:
        cmd = [sys.executable, "-m", "benchmarks.peers", tool.name, str(src), str(dst), *flags]
        if int8:
            cmd += ["--calibration", str(calibration)]
    started = time.perf_counter()
    try:
        proc = subprocess.run(cmd, cwd=folder, env=tool_env(), capture_output=True, text=True,
                              timeout=TOOL_TIMEOUT)
        code, log = proc.returncode, proc.stdout + proc.stderr
    except subprocess.TimeoutExpired as e:
        code, log = None, f"timed out after {TOOL_TIMEOUT:g} s"
        del e
    seconds = time.perf_counter() - started + seconds_before
    (folder / "log.txt").write_text(log)
    # onnx2tf's float32 file can precede a failure; portkit's exit 1 keeps an artifact that
    # failed parity: both are judged like every other artifact.
    produced = dst.exists() and (code == 0 or tool.name == "onnx2tf"
                                 or (tool.name == "portkit" and code == 1))
    run.update(exit_code=code, seconds=round(seconds, 2),
               artifact=str(dst.relative_to(work)) if produced else None,
               error=None if code == 0 else last_line(log))
    if tool.name == "onnx2tf":
        run["note"] = f"torch.onnx export {seconds_before:.1f} s + onnx2tf CLI"
    if tool.name == "portkit" and (folder / "report.json").exists():
        rep = json.loads((folder / "report.json").read_text())
        failed = [a["error"] for a in rep["routes_tried"] if a["error"]]
        if code != 0 and failed:
            run["error"] = failed[-1][:300]
        run.update(route=rep["route_name"], portkit_seconds=rep["seconds"],
                   converter_seconds=rep["converter_seconds"],
                   overhead_seconds=rep["overhead_seconds"],
                   routes_tried=[{"route": a["route"], "ok": a["ok"],
                                  "p50_ms": (a.get("latency") or {}).get("p50_ms"),
                                  "error": a["error"]} for a in rep["routes_tried"]])
    run["artifact_abs"] = str(work / run["artifact"]) if run["artifact"] else None
    return run


def _parity(run: dict[str, Any], ref: Reference) -> dict[str, Any]:
    """Run the artifact on the reference inputs; compare under the precision's policy."""
    tol = POLICIES["int8" if run["target"] == "tflite-int8" else "fp32"]
    path = Path(run["artifact_abs"])
    fmt = sniff(path)
    runtime = "onnxruntime" if fmt is Format.ONNX else "tflite"
    feeds = ref.feeds[:tol.samples]
    try:
        got = worker.call(tasks.run_artifact, what=path.name, timeout=600,
                          path=str(path), fmt=fmt, runtime=runtime, device="cpu", feeds=feeds,
                          specs=list(ref.inputs), prefer_channels_last=True)
    except Exception as e:  # noqa: BLE001 - a broken artifact is a result
        return {"ran": False, "parity_passed": False, "run_error": str(e).splitlines()[0],
                "size_bytes": path.stat().st_size}
    rows = compare_outputs(ref.outputs[:tol.samples], got.outputs, tol)
    old = None  # the fp32 verdict under the rule before the scale term, for the docs tables
    if tol.policy == "fp32":
        old = all(r.passed for r in compare_outputs(ref.outputs[:1], got.outputs, OLD_FP32))
    return {
        "ran": True, "size_bytes": path.stat().st_size,
        "parity_passed": all(r.passed for r in rows),
        "parity_passed_old_rule": old,
        "scaled_err": max(r.scaled_err for r in rows),
        "max_abs_err": max(r.max_abs_err for r in rows),
        "cosine": min(r.cosine for r in rows),
        "top1": min((r.top1 for r in rows if r.top1 is not None), default=None),
        "failed": sorted({f for r in rows for f in r.failed}),
        "policy": tol.policy,
    }


def time_runs(target: str, runs: list[dict[str, Any]], ref: Reference) -> None:
    """Time a target's artifacts against each other: TFLite with 1 and 2 threads, or ORT.

    Each setting is timed in ``REPEATS`` fresh processes, each loading the artifacts in another
    order (so no artifact always goes first); an artifact's p50 is the median of its per-process
    p50s.
    """
    if not runs:
        return
    settings = ([("onnxruntime", None)] if target == "onnx"
                else [("tflite", 1), ("tflite", 2)])
    for runtime, threads in settings:
        key = runtime if threads is None else f"{runtime}_{threads}t"
        fmt = Format.ONNX if runtime == "onnxruntime" else Format.TFLITE
        print(f"  timing {len(runs)} {target} artifacts on {key}", flush=True)
        per_run: list[list[Latency]] = [[] for _ in runs]
        broken: dict[int, str] = {}
        for rep in range(REPEATS):
            order = [(i + rep) % len(runs) for i in range(len(runs))]
            order = [i for i in order if i not in broken]
            timings = time_together([Path(runs[i]["artifact_abs"]) for i in order], fmt,
                                    runtime, ref, threads=threads, channels_last=True,
                                    budget=BUDGET, timeout=1800)
            for i, t in zip(order, timings, strict=True):
                if isinstance(t, str):
                    broken[i] = t[:300]
                else:
                    per_run[i].append(t)
        for i, (run, ts) in enumerate(zip(runs, per_run, strict=True)):
            if i in broken:
                run.setdefault("latency", {})[key] = {"error": broken[i]}
                continue
            run.setdefault("latency", {})[key] = {
                "p50_ms": round(float(np.median([t.p50_ms for t in ts])), 4),
                "p50_ms_each": [round(t.p50_ms, 4) for t in ts],
                "p90_ms": round(float(np.median([t.p90_ms for t in ts])), 4),
                "runs": sum(t.runs for t in ts), "cv": round(float(np.median([t.cv for t in ts])), 3)}


def put_onnx2tf_sample(folder: Path) -> None:
    """onnx2tf fetches a sample-image file from the internet unless it is in the working
    folder; this machine has no internet, so a seeded stand-in is put there."""
    np.save(folder / _ONNX2TF_SAMPLE,
            np.random.default_rng(0).random((20, 128, 128, 3), dtype=np.float32))


def input_flag(s: TensorSpec) -> str:
    return f"{s.name}:{'x'.join(str(d) for d in s.shape or ())}:{s.dtype}"


def last_line(log: str) -> str:
    lines = [line.strip() for line in log.splitlines() if line.strip()]
    errors = [line for line in lines if "Error" in line or "error" in line]
    return ((errors or lines or [""])[-1])[:300]


def tool_env() -> dict[str, str]:
    """The environment portkit's workers get (quiet TF, no network), for every tool alike."""
    env = dict(os.environ)
    env.update(worker._QUIET_ENV)  # noqa: SLF001 - the same settings, not a copy of them
    env["PATH"] = os.pathsep.join([str(Path(sys.executable).parent), env.get("PATH", "")])
    root = str(Path(__file__).resolve().parents[1])
    env["PYTHONPATH"] = os.pathsep.join(p for p in (root, env.get("PYTHONPATH")) if p)
    return env


def per_model(doc: str, results: Path, label: str,
              run: Callable[[ZooModel, Path], dict[str, Any]],
              markdown: Callable[[Path], str]) -> None:
    """A per-model benchmark's ``main``: ``--models`` (default: the whole zoo), each model's
    ``run`` in a temporary folder merged into ``results`` as it ends, then the table."""
    parser = argparse.ArgumentParser(description=doc.split("\n\n")[0])
    parser.add_argument("--models", nargs="*", help="Zoo model names (default: all).")
    args = parser.parse_args()
    for model in by_name(args.models):
        with tempfile.TemporaryDirectory(prefix=f"{label}-{model.name}-") as work:
            merge_result(results, run(model, Path(work)))
        print(f"{model.name}: done, results in {results}", flush=True)
    print(markdown(results))


def measured_on(models: list[dict[str, Any]], how: str) -> str:
    """A table's footer: the CPUs and cores of the results' ``models``, ``how`` they were
    timed, and when (the first and the last model's date)."""
    cpus = ", ".join(sorted({m["machine"]["cpu"] for m in models}))
    dates = sorted(m["date"] for m in models)
    when = dates[0] if dates[0] == dates[-1] else f"{dates[0]} to {dates[-1]}"
    return f"\n{cpus}, {models[0]['machine']['cores']} cores, {how}; {when}."


def machine() -> dict[str, Any]:
    """CPU model, cores, memory, OS and Python of this machine."""
    cpu = platform.processor()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    memory = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30
    return {"cpu": cpu, "cores": os.cpu_count(), "memory_gib": round(memory, 1),
            "os": platform.platform(), "python": platform.python_version()}


def merge_result(path: Path, result: dict[str, Any]) -> None:
    """Put one model's result into the results file (replacing an older run of it)."""
    data = json.loads(path.read_text()) if path.exists() else {"models": []}
    data["models"] = [m for m in data["models"] if m["name"] != result["name"]] + [result]
    path.parent.mkdir(parents=True, exist_ok=True)
    staged = path.with_suffix(".json.tmp")
    staged.write_text(json.dumps(data, indent=1) + "\n")
    os.replace(staged, path)


if __name__ == "__main__":
    main()
