"""Time and peak memory of ``portkit debug`` on zoo models, against a plain run of both models.

    python -m benchmarks.debug                          # resnet18 and vit_tiny, ONNX and TFLite
    python -m benchmarks.debug --models resnet18 --targets tflite
    python -m benchmarks.debug --readme docs/debug.md   # the table from the results, no run

For each model (``benchmarks/zoo.py``, saved as ``.pt2``) and target, portkit converts it by its
default route, then two commands run alone in fresh processes on the pair:
``portkit validate ARTIFACT --reference SOURCE --runtime R`` (the plain run of both models: the
source as the reference, the artifact on its runtime's CPU devices) and ``portkit debug
ARTIFACT --reference SOURCE --json``. Each command's process tree (the CLI and its workers) is
sampled every 50 ms; its peak is the largest sum of resident memory seen. Results go to
``benchmarks/results/debug.json``.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

from benchmarks.report import replace_block
from benchmarks.zoo import ZooModel, by_name
from portkit import api
from portkit.io import atomic_write_text
from portkit.results import versions

RESULTS = Path(__file__).parent / "results" / "debug.json"
MODELS = ["resnet18", "vit_tiny"]
RUNTIME = {"onnx": "onnxruntime", "tflite": "tflite"}
TIMEOUT = 1800.0
START, END = "<!-- debug:start -->", "<!-- debug:end -->"


def tree_peak(cmd: list[str], timeout: float = TIMEOUT) -> tuple[int, float, float, str]:
    """Run ``cmd``; its exit code, wall seconds, peak resident MB of its whole process tree
    (sampled every 50 ms), and its stdout."""
    import psutil

    started = time.perf_counter()
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    root = psutil.Process(proc.pid)
    peak = 0
    out: list[str] = []
    reader = threading.Thread(target=lambda: out.append(proc.stdout.read() if proc.stdout else ""))
    reader.start()
    while proc.poll() is None:
        total = 0
        try:
            for p in [root, *root.children(recursive=True)]:
                try:
                    total += p.memory_info().rss
                except psutil.Error:
                    continue
        except psutil.Error:
            pass
        peak = max(peak, total)
        if time.perf_counter() - started > timeout:
            proc.kill()
        time.sleep(0.05)
    reader.join()
    return proc.returncode, time.perf_counter() - started, peak / 2**20, "".join(out)


def cli(*args: str | Path) -> list[str]:
    return [sys.executable, "-m", "portkit", *map(str, args)]


def measure(model: ZooModel, target: str, folder: Path) -> dict[str, Any]:
    """One model and target: convert, then the plain run and ``portkit debug``, measured."""
    source = next(folder.glob(f"{model.name}.pt2"), None) or model.save(folder)
    artifact = folder / f"{model.name}.{target}"
    flags = [f"{s.name}:{'x'.join(map(str, s.shape or ()))}:{s.dtype}" for s in model.inputs]
    converted = api.convert(source, target, artifact, inputs=flags)
    row: dict[str, Any] = {"model": model.name, "config": model.config, "target": target,
                           "route": converted.route_name, "source_bytes": source.stat().st_size,
                           "artifact_bytes": artifact.stat().st_size,
                           "convert_exit_code": int(converted.exit_code)}
    inputs = [a for f in flags for a in ("--input", f)]
    rc, wall, peak, _ = tree_peak(cli("validate", artifact, "--reference", source,
                                      "--runtime", RUNTIME[target], *inputs))
    row["plain"] = {"command": f"portkit validate --runtime {RUNTIME[target]}", "exit_code": rc,
                    "seconds": round(wall, 2), "peak_rss_mb": round(peak, 1)}
    rc, wall, peak, out = tree_peak(cli("debug", artifact, "--reference", source, "--json",
                                        *inputs))
    report = json.loads(out) if out.strip().startswith("{") else {}
    first = report.get("first_divergence")
    row["debug"] = {
        "exit_code": rc, "seconds": round(wall, 2), "peak_rss_mb": round(peak, 1),
        "report_seconds": round(report.get("seconds", 0.0), 2),
        "workers_peak_rss_mb": round(report.get("peak_rss_mb", 0.0), 1),
        "source_tensors": len(report.get("nodes", [])), "matched": report.get("matched"),
        "unmatched_source": report.get("unmatched_source"),
        "unmatched_artifact": report.get("unmatched_artifact"),
        "first_divergence": first and {k: first[k] for k in
                                       ("source_node", "artifact_node", "op_type", "scaled_err")},
    }
    row["peak_ratio"] = round(row["debug"]["peak_rss_mb"] / max(row["plain"]["peak_rss_mb"], 1),
                              2)
    print(json.dumps(row), flush=True)
    return row


def markdown(data: dict[str, Any]) -> str:
    """The docs table: per model and target, debug's time and peak memory against a plain
    validate of the same pair, and the first divergence it found."""
    names = {"onnx": "ONNX", "tflite": "TFLite"}
    lines = ["| model | artifact | source tensors | matched | validate s | debug s | "
             "validate peak MB | debug peak MB | ratio | divergence |",
             "| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | --- |"]
    for r in data["rows"]:
        plain, dbg, first = r["plain"], r["debug"], r["debug"]["first_divergence"]
        where = (f"{first['op_type']} `{first['source_node']}` "
                 f"({first['scaled_err']:.2g} of the scale)" if first else "none")
        lines.append(f"| {r['model']} | {names.get(r['target'], r['target'])} ({r['route']}) | "
                     f"{dbg['source_tensors']} | {dbg['matched']} | {plain['seconds']:.1f} | "
                     f"{dbg['seconds']:.1f} | {plain['peak_rss_mb']:.0f} | "
                     f"{dbg['peak_rss_mb']:.0f} | {r['peak_ratio']:.2f}x | {where} |")
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", nargs="*", default=MODELS)
    parser.add_argument("--targets", nargs="*", default=["onnx", "tflite"],
                        choices=sorted(RUNTIME))
    parser.add_argument("--out", type=Path, default=RESULTS)
    parser.add_argument("--readme", type=Path,
                        help="Replace the table in this page with one made from --out (no run).")
    args = parser.parse_args(argv)
    if args.readme:
        replace_block(args.readme, START, END, markdown(json.loads(args.out.read_text())))
        return
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for model in by_name(args.models):
            folder = Path(tmp) / model.name
            folder.mkdir()
            rows += [measure(model, target, folder) for target in args.targets]
    atomic_write_text(args.out, json.dumps({
        "machine": platform.processor() or platform.machine(), "cores": len(os.sched_getaffinity(0)),
        "versions": versions(), "rows": rows}, indent=1) + "\n")


if __name__ == "__main__":
    main()
