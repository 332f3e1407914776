"""A BERT-like model with a dynamic sequence length, to ONNX and TFLite: one artifact with the
sequence left free against one static artifact per length.

    python -m benchmarks.dynamic                      # bert_tiny, lengths 16 64 128
    python -m benchmarks.dynamic --readme docs/benchmarks.md   # also rewrite the docs table

The zoo's ``bert_tiny`` (``input_ids`` and ``attention_mask``, batch 1) is exported once with
``torch.export.Dim("seq", min=2, max=128)`` on both inputs. For each target, portkit converts it
once with the sequence kept dynamic (validated at the example length and two more), and once per
length with ``--static --input input_ids:1xL --input attention_mask:1xL``. Each conversion runs
in fresh workers (``portkit.api.convert``); the times are portkit's whole run (load, convert,
reference, validation). Every artifact that converted is then timed on its runtime with
``portkit.api.bench`` (a fresh worker per measurement, one after the other in this run): the
dynamic artifact at every length (``--shape``), each static one at its own. Results go to
``benchmarks/results/dynamic.json``; compare the dynamic and static p50 of one length only
(both measured in this run, on this machine).
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
import time
from pathlib import Path
from typing import Any

from benchmarks.run import machine
from benchmarks.zoo import _bert_tiny
from portkit import api
from portkit.errors import PortkitError
from portkit.options import Budget
from portkit.results import versions

RESULTS = Path(__file__).with_name("results") / "dynamic.json"
INPUTS = ("input_ids", "attention_mask")
TARGETS = ("onnx", "tflite")
START, END = "<!-- dynamic:start -->", "<!-- dynamic:end -->"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--lengths", type=int, nargs="+", default=[16, 64, 128])
    parser.add_argument("--timeout", type=float, default=900)
    parser.add_argument("--readme", type=Path, help="Rewrite this page's dynamic table (docs/benchmarks.md).")
    parser.add_argument("--report-only", action="store_true",
                        help="Only render the docs table from the results file.")
    args = parser.parse_args()
    if not args.report_only:
        with tempfile.TemporaryDirectory(prefix="dynamic-") as work:
            result = run(Path(work), args.lengths, args.timeout)
        staged = RESULTS.with_suffix(".json.tmp")
        staged.write_text(json.dumps(result, indent=1) + "\n")
        os.replace(staged, RESULTS)
        print(f"results in {RESULTS}")
    data = json.loads(RESULTS.read_text())
    table = markdown(data)
    print(table)
    if args.readme:
        text = args.readme.read_text()
        head, _, rest = text.partition(START)
        _, _, tail = rest.partition(END)
        args.readme.write_text(f"{head}{START}\n{table}\n{END}{tail}")


def export(folder: Path) -> Path:
    """bert_tiny as an ExportedProgram whose sequence length is free (2..128)."""
    import torch

    torch.manual_seed(0)
    model = _bert_tiny().eval()
    seq = torch.export.Dim("seq", min=2, max=128)
    args = (torch.randint(0, 1000, (1, 64)), torch.ones(1, 64, dtype=torch.int64))
    program = torch.export.export(model, args, dynamic_shapes=({1: seq}, {1: seq}))
    path = folder / "bert_tiny_dynamic.pt2"
    torch.export.save(program, str(path))
    return path


def run(work: Path, lengths: list[int], timeout: float) -> dict[str, Any]:
    """Every conversion, then every timing; the results as a JSON-ready dict."""
    src = export(work)
    rows: list[dict[str, Any]] = []
    for target in TARGETS:
        rows.append(_convert(src, target, None, work, timeout))
        rows += [_convert(src, target, n, work, timeout) for n in lengths]
    for row in rows:
        if row["passed"]:
            row["p50_ms"] = _time(Path(row.pop("path")), row["length"], lengths, timeout)
        row.pop("path", None)
    return {"model": "bert_tiny", "lengths": lengths, "rows": rows, "machine": machine(),
            "versions": versions(), "date": time.strftime("%Y-%m-%d %H:%M:%S %Z")}


def _convert(src: Path, target: str, length: int | None, work: Path,
             timeout: float) -> dict[str, Any]:
    """One portkit conversion: dynamic (``length`` None) or ``--static`` at ``length``."""
    name = f"{'dynamic' if length is None else f'static{length}'}.{target}"
    inputs = [f"{n}:1x{length}:int64" for n in INPUTS] if length else []
    print(f"{name}: converting", flush=True)
    started = time.perf_counter()
    row: dict[str, Any] = {"target": target, "length": length, "path": str(work / name)}
    try:
        report = api.convert(src, target, work / name, inputs=inputs, static=length is not None,
                             timeout=timeout)
    except PortkitError as e:
        return {**row, "passed": False, "seconds": time.perf_counter() - started,
                "error": str(e)[:400]}
    sizes = list(dict.fromkeys(c.size for c in report.checks if c.size))
    failed = [a.error for a in report.routes_tried if a.error]
    return {**row, "passed": report.passed, "seconds": report.seconds,
            "converter_seconds": report.converter_seconds, "route": report.route_name,
            "validated_at": sizes, "error": None if report.passed else "; ".join(failed)[:400],
            "routes_failed": [f"{a.route}: {a.error}"[:300] for a in report.routes_tried
                              if not a.passed]}


def _time(path: Path, length: int | None, lengths: list[int], timeout: float
          ) -> dict[str, float]:
    """p50 (ms) by sequence length: a dynamic artifact at every length, a static one at its
    own."""
    at = lengths if length is None else [length]
    names = [s.name for s in api.inspect(path).info.inputs]  # litert-torch writes args_0...
    shapes = [f"{n}:1x{k}" for n in names for k in at] if length is None else []
    report = api.bench([path], shapes=shapes, budget=Budget(warmup=5, min_runs=30,
                                                           min_seconds=2.0), timeout=timeout)
    return {str(k): row.latency.p50_ms for k, row in zip(at, report.rows, strict=True)}


def markdown(data: dict[str, Any]) -> str:
    """The docs table: per target, the dynamic artifact and the static ones, with p50 per
    length and the dynamic/static ratio."""
    lengths = [str(n) for n in data["lengths"]]
    head = ("| target | artifact | converted (s) | route | "
            + " | ".join(f"p50 ms @{n}" for n in lengths) + " |")
    lines = [head, "|" + "---|" * (4 + len(lengths))]
    for target in TARGETS:
        rows = [r for r in data["rows"] if r["target"] == target]
        static = {str(r["length"]): r.get("p50_ms", {}).get(str(r["length"])) for r in rows
                  if r["length"] is not None}
        for r in rows:
            kind = "dynamic seq" if r["length"] is None else f"static, seq {r['length']}"
            if not r["passed"]:
                cells = ["-"] * len(lengths)
                why = "; ".join(dict.fromkeys(_short(e) for e in r.get("routes_failed")
                                              or [r.get("error") or ""]))
                lines.append(f"| {target} | {kind} | {r['seconds']:.1f} | not converted: "
                             f"{why} | " + " | ".join(cells) + " |")
                continue
            cells = []
            for n in lengths:
                p50 = r.get("p50_ms", {}).get(n)
                ratio = f" ({p50 / static[n]:.2f}x static)" if (
                    p50 and r["length"] is None and static.get(n)) else ""
                cells.append(f"{p50:.2f}{ratio}" if p50 else "")
            lines.append(f"| {target} | {kind} | {r['seconds']:.1f} | {r['route']} | "
                         + " | ".join(cells) + " |")
    m = data["machine"]
    lines.append(f"\n{data['model']}, {m['cpu']}, {m['cores']} cores, {data['date']}; "
                 "p50 of one call at batch 1, each artifact on its runtime's CPU default "
                 "threads; ratios are within this run.")
    return "\n".join(lines)


def _short(failure: str) -> str:
    """``route: tool: what happened; how to go on`` as ``tool: what happened`` (one line)."""
    _route, _, why = failure.partition(": ")
    why = (why or failure).split("; ")[0].split(" (")[0]
    return why.replace("|", "/").replace("\n", " ")[:120]


if __name__ == "__main__":
    main()
