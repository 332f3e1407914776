"""Which format is fastest for each PyTorch zoo model: an ExecuTorch program, a TFLite file or
ONNX Runtime? And is portkit's ``.pte`` conversion as quick as ExecuTorch's own export?

    python -m benchmarks.executorch                         # every PyTorch zoo model
    python -m benchmarks.executorch --models resnet18 lstm
    python -m benchmarks.executorch --keep kept     # keep the artifacts, to time them again:
    python -m benchmarks.executorch --retime kept   # only the timing, on the kept artifacts

For each PyTorch zoo model portkit converts the saved ``.pt2`` three times with its defaults,
``--to executorch``, ``--to tflite`` and ``--to onnx`` (``portkit.api.convert``: fresh workers,
each artifact validated against the source). The peer is ExecuTorch's export called by hand in a
fresh process (``torch.export.load``, ``to_edge_transform_and_lower`` with the
``XnnpackPartitioner``, ``to_executorch``, the buffer written). The peer and portkit's ``.pte``
conversion run in three turns (peer, portkit, peer, portkit, ...) and each side's median turn
is compared, as a shared machine's load comes and goes. What each time holds:

- portkit's total: the whole ``convert`` (workers started, the source run as the reference,
  every route tried, the artifact reloaded and compared with the source);
- portkit's converter time (``converter_seconds``, the hops): inside the conversion worker,
  which has torch imported and the source read once already: ExecuTorch's imports, reading the
  ``.pt2`` (its input specs, then the program), lowering, writing, checking what was written;
- the peer's same steps: ExecuTorch's imports, ``torch.export.load``, lowering, writing (torch's
  own import left out, as it is from the hop) -- the issue's bar: the hop at most 1.2x this;
- the peer's fresh process: the above plus the interpreter's start and ``import torch``.

Then, in this process (it runs nothing else meanwhile), the artifacts that matched their source
are loaded and timed in turns (``portkit.validators.latency.measure_interleaved``) on 1 thread,
then on 2, each three times in a rotated order (an artifact's p50: the median of its three):
the ``.pte`` through ``executorch.runtime`` (XNNPACK's thread pool reset to the count,
``_unsafe_reset_threadpool``), the ``.tflite`` through ``ai_edge_litert`` (``num_threads``),
the ``.onnx`` through ONNX Runtime (``intra_op_num_threads``, no spinning after a run). Each is
fed seeded inputs of its own input shapes. Results are merged into
``benchmarks/results/executorch.json`` model by model, with the 1-minute load average around
each timing (the machine may be shared).
"""

from __future__ import annotations

import argparse
import gc
import hashlib
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from benchmarks.run import machine, measured_on, merge_result, tool_env
from benchmarks.tflite_vs_ort import _fixed, ort_runner
from benchmarks.zoo import ZOO, ZooModel, by_name
from portkit import api
from portkit.options import Budget
from portkit.results import versions

RESULTS = Path(__file__).with_name("results") / "executorch.json"
# Its table's block in docs/benchmarks.md (benchmarks/docs_hook.py renders it at build time).
START, END = "<!-- executorch:start -->", "<!-- executorch:end -->"
FORMATS = {"executorch": "ExecuTorch", "tflite": "TFLite", "onnx": "ONNX Runtime"}
SUFFIXES = {"executorch": ".pte", "tflite": ".tflite", "onnx": ".onnx"}
THREADS = (1, 2)
TURNS = 3
REPEATS = 3
BUDGET = Budget(warmup=3, min_runs=30, min_seconds=2.0)
BAR = 1.2
TIMEOUT = 3600.0
# ExecuTorch's export as its docs show it, alone in a fresh process; prints each step's seconds.
PEER = """\
import json, sys, time
t0 = time.perf_counter()
import torch
t1 = time.perf_counter()
from executorch.backends.xnnpack.partition.xnnpack_partitioner import XnnpackPartitioner
from executorch.exir import to_edge_transform_and_lower
t2 = time.perf_counter()
ep = torch.export.load(sys.argv[1])
t3 = time.perf_counter()
program = to_edge_transform_and_lower(ep, partitioner=[XnnpackPartitioner()]).to_executorch()
t4 = time.perf_counter()
with open(sys.argv[2], "wb") as f:
    f.write(program.buffer)
t5 = time.perf_counter()
print(json.dumps({"import_torch": t1 - t0, "import_executorch": t2 - t1, "load": t3 - t2,
                  "lower": t4 - t3, "write": t5 - t4}))
"""


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--models", nargs="*",
                        help="Zoo model names (default: every PyTorch one).")
    parser.add_argument("--keep", type=Path, help="Keep the artifacts in this folder.")
    parser.add_argument("--retime", type=Path,
                        help="Only time again the artifacts an earlier --keep kept here.")
    args = parser.parse_args()
    models = by_name(args.models) if args.models else [m for m in ZOO if m.framework == "torch"]
    for model in models:
        if args.retime:
            retime(model, args.retime / model.name)
            continue
        with tempfile.TemporaryDirectory(prefix=f"executorch-{model.name}-") as work:
            found, paths = run(model, Path(work))
            if args.keep:
                paths = keep(paths, args.keep / model.name)
            merge_result(RESULTS, {**found, **time_all(model.name, paths)})
        print(f"{model.name}: done, results in {RESULTS}", flush=True)
    print(markdown(RESULTS))


def keep(paths: dict[str, str], folder: Path) -> dict[str, str]:
    """The artifacts copied into ``folder``; their new paths."""
    folder.mkdir(parents=True, exist_ok=True)
    return {t: shutil.copy(p, folder / Path(p).name) for t, p in paths.items()}


def retime(model: ZooModel, folder: Path) -> None:
    """Time again the artifacts of ``model`` kept in ``folder`` (those that matched)."""
    found = next((m for m in json.loads(RESULTS.read_text())["models"]
                  if m["name"] == model.name), None)
    if found is None or not folder.is_dir():
        print(f"{model.name}: no earlier result or no kept artifacts in {folder}", flush=True)
        return
    paths = {t: str(folder / f"{model.name}{SUFFIXES[t]}") for t in FORMATS
             if found[t].get("passed")}
    merge_result(RESULTS, {**found, **time_all(model.name, paths)})


def run(model: ZooModel, work: Path) -> tuple[dict[str, Any], dict[str, str]]:
    """In ``TURNS`` turns, the peer's export then portkit's ``.pte`` conversion (the machine's
    load comes and goes: each side's median turn is compared), portkit's TFLite and ONNX
    conversions after the first; returns what they did and the artifacts that matched (by
    target)."""
    src = model.save(work)
    found: dict[str, Any] = {"name": model.name, "config": model.config}
    peers, ptes = [], []
    for turn in range(TURNS):
        peers.append(peer(src, work / f"peer-{turn}.pte"))
        ptes.append(convert(model, src, "executorch", work / f"turn-{turn}"))
        if turn == 0:
            found.update({t: convert(model, src, t, work) for t in FORMATS if t != "executorch"})
    found["executorch"] = typical(ptes, "converter_seconds", "passed")
    found["peer"] = typical(peers, "same_steps", "ok")
    paths = {t: found[t].pop("path") for t in FORMATS if found[t].get("path")}
    return {**found, "converted": time.strftime("%Y-%m-%d %H:%M:%S %Z")}, paths


def time_all(name: str, paths: dict[str, str]) -> dict[str, Any]:
    """The artifacts timed in turns on each thread count, with the machine and the date."""
    latency = {}
    for threads in THREADS:
        print(f"{name}: timing {', '.join(paths)} on {threads} thread(s)", flush=True)
        latency[f"{threads}t"] = time_in_turns(paths, threads)
    return {"latency": latency, "machine": machine(), "versions": versions(),
            "date": time.strftime("%Y-%m-%d %H:%M:%S %Z")}


def typical(turns: list[dict[str, Any]], key: str, ok: str) -> dict[str, Any]:
    """The first turn that is ``ok`` (else the first), its ``key`` and its total or wall
    seconds the medians over the turns that are ``ok`` (a slow spell of a shared machine, or a
    quiet one, moves one turn, not the median); every turn's times under ``turns``."""
    good = [t for t in turns if t.get(ok)] or turns[:1]
    found = dict(good[0])
    for t in turns:
        t.pop("path", None)
    seconds = "seconds" if "seconds" in found else "wall"
    for k in (key, seconds):
        if all(k in t for t in good):
            found[k] = round(statistics.median(t[k] for t in good), 2)
    found["turns"] = [{k: t.get(k) for k in (ok, key, seconds, "error")} for t in turns]
    return found


def convert(model: ZooModel, src: Path, target: str, folder: Path) -> dict[str, Any]:
    """portkit's conversion of ``src`` to ``target`` into ``folder`` (the artifact's ``path``
    given when it matched the source)."""
    print(f"{model.name}: portkit -> {target}", flush=True)
    folder.mkdir(exist_ok=True)
    out = folder / f"{model.name}{SUFFIXES[target]}"
    report = api.convert(src, target, out, output_kinds=model.kinds, timeout=TIMEOUT)
    return {**conversion(report), **({"path": str(out)} if report.passed else {})}


def conversion(report: Any) -> dict[str, Any]:
    """What one ``portkit.api.convert`` did, in plain fields: whether it passed, the route, its
    total and converter seconds, each hop's seconds, and why the routes failed if none passed."""
    errors = [f"{a.route}: {a.error}" for a in report.routes_tried if a.error]
    return {"passed": report.passed, "route": report.route_name,
            "seconds": round(report.seconds, 2),
            "converter_seconds": round(report.converter_seconds, 2),
            "hops": [{"tool": h.tool, "seconds": round(h.seconds, 2)} for h in report.route],
            "size_bytes": report.artifact.size_bytes if report.artifact else None,
            "sha256": report.artifact.sha256 if report.artifact else None,
            "error": None if report.passed else "; ".join(errors)[:600] or "no route converted"}


def peer(src: Path, dst: Path) -> dict[str, Any]:
    """ExecuTorch's export of ``src`` into ``dst``, alone in a fresh process: its wall time, and
    the seconds of the steps portkit's hop also runs (all but ``import torch``)."""
    started = time.perf_counter()
    proc = subprocess.run([sys.executable, "-c", PEER, str(src), str(dst)], env=tool_env(),
                          capture_output=True, text=True, timeout=TIMEOUT, cwd=dst.parent)
    wall = time.perf_counter() - started
    if proc.returncode != 0 or not dst.exists():
        lines = [line for line in (proc.stderr or proc.stdout).splitlines() if line.strip()]
        return {"ok": False, "wall": round(wall, 2),
                "error": (lines or [f"exit {proc.returncode}"])[-1][:300]}
    steps = json.loads(proc.stdout.strip().splitlines()[-1])
    same = sum(v for k, v in steps.items() if k != "import_torch")
    return {"ok": True, "wall": round(wall, 2), "same_steps": round(same, 2),
            "steps": {k: round(v, 2) for k, v in steps.items()},
            "size_bytes": dst.stat().st_size,
            "sha256": hashlib.sha256(dst.read_bytes()).hexdigest()}


def time_in_turns(paths: dict[str, str], threads: int) -> dict[str, Any]:
    """p50 (ms) of each artifact in ``paths`` (by target) on ``threads`` threads, timed in turns
    in this process, and each one's ratio to the fastest: ``REPEATS`` times, the artifacts
    loaded afresh in another order each time (none always first), the median of the p50s."""
    from portkit.validators.latency import measure_interleaved

    if not paths:
        return {}
    targets = list(paths)
    each: dict[str, list[float]] = {t: [] for t in targets}
    loads = [os.getloadavg()[0]]  # the machine is shared: how busy it was, for the record
    for rep in range(REPEATS):
        order = targets[rep % len(targets):] + targets[:rep % len(targets)]
        timed = measure_interleaved([_LOADERS[t](paths[t], threads) for t in order], BUDGET,
                                    runtime="+".join(order), device="cpu", threads=threads)
        for t, lat in zip(order, timed, strict=True):
            each[t].append(round(lat.p50_ms, 4))
        del timed
        gc.collect()  # the programs go before XNNPACK's pool is reset for another count
        loads.append(os.getloadavg()[0])
    p50 = {t: round(float(statistics.median(v)), 4) for t, v in each.items()}
    return {"p50_ms": p50, **ranking(p50), "p50_ms_each": each,
            "load_avg": [round(x, 2) for x in loads]}


def ranking(p50: dict[str, float]) -> dict[str, Any]:
    """The fastest of ``p50`` (by target) and each one's p50 over the fastest's."""
    fastest = min(p50, key=p50.__getitem__)
    return {"fastest": fastest,
            "ratio": {t: round(v / p50[fastest], 3) for t, v in p50.items()}}


def _registry(runtime: str, fmt_name: str) -> Callable[[str, int], Callable[[], Any]]:
    """A loader of a portkit runtime's session (``executorch``: its thread pool reset to the
    count; ``tflite``: ``num_threads``), fed seeded inputs of its own shapes."""

    def loader(path: str, threads: int) -> Callable[[], Any]:
        def load() -> Callable[[], Any]:
            from portkit.formats import Format
            from portkit.options import LoadOptions
            from portkit.runtimes import registry
            from portkit.specs import make_inputs

            session = registry.get(runtime).load(Path(path), Format(fmt_name), "cpu",
                                                 LoadOptions(threads=threads))
            feeds = make_inputs(_fixed(session.inputs), seed=0)
            return lambda: session.run(feeds)

        return load

    return loader


_LOADERS: dict[str, Callable[[str, int], Callable[[], Any]]] = {
    "executorch": _registry("executorch", "executorch"),
    "tflite": _registry("tflite", "tflite"),
    "onnx": ort_runner,
}


def conversion_ratios(m: dict[str, Any]) -> dict[str, float] | None:
    """portkit's ``.pte`` conversion over the peer's: the hops over the peer's same steps (the
    issue's bar), and portkit's total over the peer's fresh process; None when either failed."""
    pte, other = m.get("executorch") or {}, m.get("peer") or {}
    if not pte.get("passed") or "same_steps" not in other:
        return None
    return {"hop": pte["converter_seconds"] / other["same_steps"],
            "total": pte["seconds"] / other["wall"]}


def markdown(path: Path) -> str:
    """The docs tables: the fastest format per model and thread count, then the ``.pte``
    conversion against ExecuTorch's own export."""
    order = {m.name: i for i, m in enumerate(ZOO)}  # --retime merges a model in last
    models = sorted(json.loads(path.read_text())["models"],
                    key=lambda m: order.get(m["name"], len(order)))
    return "\n".join([*speed_table(models), "", *conversion_table(models),
                      measured_on(models, "p50 timed in turns in one process")])


def speed_table(models: list[dict[str, Any]]) -> list[str]:
    """Per model and thread count: each format's p50 and its ratio to the fastest."""
    lines = ["| model | threads | " + " | ".join(f"{n} p50 ms" for n in FORMATS.values())
             + " | fastest |", "|---|---|" + "---|" * len(FORMATS) + "---|"]
    for m in models:
        for threads in THREADS:
            timed = m.get("latency", {}).get(f"{threads}t") or {}
            cells = []
            for target in FORMATS:
                if target in timed.get("p50_ms", {}):
                    p50, ratio = timed["p50_ms"][target], timed["ratio"][target]
                    best = target == timed["fastest"]
                    cells.append(f"**{p50:.2f}**" if best else f"{p50:.2f} ({ratio:.2f}x)")
                else:
                    cells.append("not converted" if not (m.get(target) or {}).get("passed")
                                 else "not timed")
            fastest = FORMATS[timed["fastest"]] if timed else "-"
            lines.append(f"| {m['name']} | {threads} | {' | '.join(cells)} | {fastest} |")
    return lines


def conversion_table(models: list[dict[str, Any]]) -> list[str]:
    """Per model: portkit's ``.pte`` conversion against ExecuTorch's export called alone."""
    lines = ["| model | .pte route | portkit hop s | export, same steps s | hop ÷ export "
             f"| within {BAR:g}x | portkit total s | export, fresh process s | total ÷ export "
             "| same bytes as the export |", "|---|---|---|---|---|---|---|---|---|---|"]
    for m in models:
        pte, other = m.get("executorch") or {}, m.get("peer") or {}
        r = conversion_ratios(m)
        if r is None:
            why = (pte.get("error") if not pte.get("passed")
                   else "the peer failed: " + "; ".join(p.get("error", "")
                                                        for p in other.get("turns", [])))
            lines.append(f"| {m['name']} | {pte.get('route') or '-'} | - | - | - | "
                         f"not compared: {str(why)[:120]} | - | - | - | - |")
            continue
        same = "yes" if pte.get("sha256") == other.get("sha256") else "no"
        lines.append(f"| {m['name']} | {pte['route']} | {pte['converter_seconds']:.1f} | "
                     f"{other['same_steps']:.1f} | {r['hop']:.2f}x | "
                     f"{'yes' if r['hop'] <= BAR else '**no**'} | {pte['seconds']:.1f} | "
                     f"{other['wall']:.1f} | {r['total']:.2f}x | {same} |")
    return lines


if __name__ == "__main__":
    main()
