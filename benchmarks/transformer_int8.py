"""int8 on a MiniLM-sized transformer with an outlier channel: what portkit ships, how long
``--keep-float auto`` takes and how much memory, against PT2E int8 made by hand.

    python -m benchmarks.transformer_int8                  # ~15 min on 2 cores
    python -m benchmarks.transformer_int8 --size tiny      # the tests' 64-wide encoder

The source is ``portkit.fixtures.encoders.outlier_encoder`` (6 post-norm blocks, ids ``1x128``
in, a mean-pooled embedding out; MiniLM-L6's sizes: 22M parameters; one feed-forward channel
of block 3 x1000, its down-projection compensating), exported as a ``.pt2``. Calibration:
132 seeded samples; portkit calibrates on the first 100 and validates on the last 32; the peer
calibrates on the same 100. Each tool runs alone in a fresh process, whose wall time and peak
resident memory (the largest process of its tree) are recorded:

- ``portkit convert --quantize int8 --int8-io`` (full int8, every op) and ``--quantize int8``
  (the transformer default: int8 linear layers, float attention), each with and without
  ``--keep-float auto``; all with ``--route litert-torch --min-cosine 0.99``;
- litert-torch's PT2E int8 by hand (``benchmarks.peers``: XNNPACK-style symmetric
  per-channel, ``prepare_pt2e``/``convert_pt2e``, ``litert_torch.convert``).

Every artifact is judged on the 32 held-back samples (cosine against the float source), then
those that ran are timed against each other in turns in one process (TFLite, 1 and 2 threads;
``benchmarks.run.time_runs``). Results: ``benchmarks/results/transformer_int8.json``, rendered
into docs/quantize.md.
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

from benchmarks.quantize import HELD_BACK, SAMPLES, _judge, _launch
from benchmarks.run import machine, time_runs
from portkit.results import versions

RESULTS = Path(__file__).parent / "results" / "transformer_int8.json"
START, END = "<!-- transformer_int8:start -->", "<!-- transformer_int8:end -->"
SEQ = 128
TIMEOUT = 1800.0
COMMON = ("--to", "tflite", "--quantize", "int8", "--route", "litert-torch", "--min-cosine",
          "0.99", "--output-kind", "output_0=embedding")
RUNS = (  # name, label, portkit flags (None: the peer)
    ("full-int8", "portkit --int8-io (every op int8)", ("--int8-io",)),
    ("full-int8-keep-float", "portkit --int8-io --keep-float auto",
     ("--int8-io", "--keep-float", "auto")),
    ("int8", "portkit (default: int8 linear layers)", ()),
    ("int8-keep-float", "portkit --keep-float auto", ("--keep-float", "auto")),
    ("litert-torch-pt2e", "litert-torch PT2E by hand", None),
)
# The largest process of the child's tree: a parent's RUSAGE_CHILDREN after it waited.
PEAK = ("import resource, subprocess, sys\n"
        "code = subprocess.call(sys.argv[1:])\n"
        "peak = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss\n"
        "print(f'peak_kb={peak}', file=sys.stderr)\n"
        "sys.exit(code)\n")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", choices=("minilm", "tiny"), default="minilm")
    parser.add_argument("--keep", action="store_true", help="keep the work folder")
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="transformer-int8-"))
    try:
        results = bench(work, args.size)
    finally:
        if not args.keep:
            shutil.rmtree(work, ignore_errors=True)
    RESULTS.write_text(json.dumps(results, indent=1) + "\n")
    print(markdown(results))


def bench(work: Path, size: str) -> dict[str, Any]:
    """Every run on the encoder of ``size``, judged and timed (see the module's docstring)."""
    import torch

    from portkit.fixtures import encoders
    from portkit.runtimes.tasks import Reference

    dims = encoders.MINILM if size == "minilm" else encoders.TINY
    net = encoders.outlier_encoder(**dims)
    ids = encoders.token_ids(SAMPLES, SEQ, seed=1, vocab=dims["vocab"])[:, None, :]
    src = work / "outlier_encoder.pt2"
    torch.export.save(torch.export.export(net, (torch.from_numpy(ids[0]),)), src)
    calibration, peer_calibration = work / "calibration.npz", work / "calibration_peers.npz"
    np.savez(calibration, ids=ids)
    np.savez(peer_calibration, ids=ids[:SAMPLES - HELD_BACK])
    with torch.no_grad():
        outputs = [{"output_0": net(torch.from_numpy(x)).numpy()} for x in ids]
    ref = _with_inputs(Reference(runtime="torch", inputs=(), feeds=tuple(
        {"ids": x} for x in ids), outputs=tuple(outputs)), src)
    runs = []
    for name, label, flags in RUNS:
        print(f"{name}: {label}", flush=True)
        folder = work / name
        folder.mkdir()
        dst = folder / "outlier_encoder.tflite"
        if flags is None:
            cmd = [sys.executable, "-m", "benchmarks.peers", name, str(src), str(dst),
                   f"--input=ids:1x{SEQ}:int64", "--calibration", str(peer_calibration)]
        else:
            cmd = ["portkit", "convert", str(src), *COMMON, *flags, "--calibration",
                   str(calibration), "-o", str(dst), "--report", str(folder / "report.json")]
        run = {"name": name, "label": label, "mode": "int8", "flags": list(flags or ()),
               **_launch([sys.executable, "-c", PEAK, *cmd], folder, dst, TIMEOUT)}
        log = (folder / "log.txt").read_text()
        peaks = [int(x.split("=")[1]) for x in log.split() if x.startswith("peak_kb=")]
        run["peak_mb"] = round(peaks[-1] / 1024) if peaks else None
        failed = folder / "outlier_encoder.failed.tflite"
        if not run["artifact_abs"] and failed.exists():  # exit 1 keeps what failed beside -o
            run.update(artifact=str(failed.relative_to(work)), artifact_abs=str(failed))
        if (folder / "report.json").exists():
            run["portkit"] = _summary(json.loads((folder / "report.json").read_text()))
        if run["artifact_abs"]:
            run.update(_judge(run, ref, ("output_0=embedding",)))
        runs.append(run)
    time_runs("tflite-int8", [r for r in runs if r.get("ran")], ref)
    for run in runs:
        run.pop("artifact_abs", None)
    return {"size": size, "dims": dims, "seq": SEQ, "parameters": sum(
        p.numel() for p in net.parameters()), "samples": SAMPLES, "held_back": HELD_BACK,
        "runs": runs, "machine": machine(), "versions": versions(),
        "date": time.strftime("%Y-%m-%d %H:%M:%S %Z")}


def _with_inputs(ref: Any, src: Path) -> Any:
    """``ref`` with the source's input specs (as portkit reads them from the ``.pt2``)."""
    import dataclasses

    from portkit.formats import sniff
    from portkit.runtimes import tasks, worker

    described = worker.call(tasks.describe, what=src.name, timeout=600, path=str(src),
                            fmt=sniff(src))
    return dataclasses.replace(ref, inputs=tuple(described.inputs))


def _summary(report: dict[str, Any]) -> dict[str, Any]:
    """What a portkit report says of the run: verdict, recipe, ops kept float and the search."""
    q = report.get("quantization") or {}
    return {"passed": report["passed"], "seconds": report["seconds"],
            "recipe": q.get("recipe"), "ops": len(q.get("ops") or ()),
            "keep_float": q.get("keep_float"), "trials": q.get("trials"),
            "search_seconds": q.get("search_seconds"), "search_peak_mb": q.get("search_peak_mb")}


def markdown(results: dict[str, Any]) -> str:
    """The docs block: each run's verdict, size, time, memory, ops kept float and p50."""
    runs = results["runs"]
    peer = next((r for r in runs if r["name"] == "litert-torch-pt2e"), {})
    peer_p50 = {k: (peer.get("latency") or {}).get(k, {}).get("p50_ms")
                for k in ("tflite_1t", "tflite_2t")}
    m = results["machine"]
    lines = [f"{results['parameters'] / 1e6:.1f}M parameters ({results['size']}), ids 1x"
             f"{results['seq']}; judged on {results['held_back']} held-back samples (cosine "
             f"against the float source, at least 0.99); {m.get('cpu', '')}, "
             f"{m.get('cores', '')} cores; p50 in turns in one process:", "",
             "| run | exit | cosine | kept float | size | convert s | peak MB | p50 1t ms | "
             "p50 2t ms | vs PT2E 2t |", "|---|--:|--:|--:|--:|--:|--:|--:|--:|--:|"]
    for r in runs:
        pk = r.get("portkit") or {}
        kept = (f"{len(pk['keep_float'])} of {pk['ops']} ops ({pk['trials']} trials, "
                f"{pk['search_seconds']:.0f} s)" if pk.get("keep_float") else "-")
        lat = r.get("latency") or {}
        p1, p2 = (lat.get(k, {}).get("p50_ms") for k in ("tflite_1t", "tflite_2t"))
        ratio = f"{p2 / peer_p50['tflite_2t']:.2f}x" if p2 and peer_p50["tflite_2t"] else "-"
        cosine = f"{r['cosine']:.4f}" if r.get("cosine") is not None else "-"
        size = f"{r['size_bytes'] / 1e6:.1f} MB" if r.get("size_bytes") else "-"
        lines.append(f"| {r['label']} | {r['exit_code']} | {cosine} | {kept} | {size} | "
                     f"{r['seconds']:.0f} | {r['peak_mb'] or '-'} | "
                     f"{f'{p1:.2f}' if p1 else '-'} | {f'{p2:.2f}' if p2 else '-'} | {ratio} |")
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    main()
