"""Where each zoo model's default TFLite artifact spends its time, per op type.

    python -m benchmarks.profiles                        # every zoo model
    python -m benchmarks.profiles --models lstm resnet18

For each zoo model portkit converts the saved source ``--to tflite`` with its defaults, then
``portkit bench ARTIFACT --profile`` times it (XNNPACK, one thread per core) and LiteRT's
profiler times each op. Recorded per model: the route, the p50, the share of the ops' time that
XNNPACK ran and the share left on TFLite's builtin kernels (an op that dropped out of XNNPACK
shows there), and the op types worst first. Shares are of the summed op times, so they hold on a
busy machine where the milliseconds don't. Results are merged into
``benchmarks/results/profiles.json`` model by model.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

from benchmarks.run import machine, measured_on, per_model
from benchmarks.zoo import ZooModel
from portkit import api
from portkit.options import Budget
from portkit.profiles import op_kinds
from portkit.results import versions

RESULTS = Path(__file__).with_name("results") / "profiles.json"
# Its table's block in docs/benchmarks.md (benchmarks/docs_hook.py renders it at build time).
START, END = "<!-- profiles:start -->", "<!-- profiles:end -->"
TOP = 4


def main() -> None:
    per_model(__doc__, RESULTS, "profiles", run, markdown)


def run(model: ZooModel, work: Path) -> dict[str, Any]:
    """The default TFLite conversion (in portkit's workers), then its profile."""
    src = model.save(work)
    artifact = work / f"{model.name}.tflite"
    print(f"{model.name}: portkit -> tflite", flush=True)
    report = api.convert(src, "tflite", artifact, timeout=3600)
    found: dict[str, Any] = {"name": model.name, "route": report.route_name,
                             "passed": report.passed}
    if report.passed:
        print(f"{model.name}: bench --profile", flush=True)
        [row] = api.bench([artifact], runtimes=["tflite"], profile=True, timeout=3600,
                          budget=Budget(warmup=3, min_runs=20, min_seconds=1.0)).rows
        ops = row.latency.profile
        found.update(
            p50_ms=row.latency.p50_ms, ops=len(ops),
            xnnpack_share=sum(o.share for o in ops if o.delegated),
            builtin_share=sum(o.share for o in ops if not o.delegated),
            builtin_kinds=sorted({o.kind for o in ops if not o.delegated}),
            kinds=[{"kind": k.kind, "ops": k.op, "share": k.share, "delegated": k.delegated}
                   for k in op_kinds(ops)])
    return {**found, "machine": machine(), "versions": versions(),
            "date": time.strftime("%Y-%m-%d %H:%M:%S %Z")}


def markdown(path: Path) -> str:
    """The docs table: per model, XNNPACK's share and the worst op types."""
    import json

    data = json.loads(path.read_text())
    lines = ["| model | route | p50 ms | on XNNPACK | on builtin kernels | worst op types |",
             "|---|---|---|---|---|---|"]
    for m in data["models"]:
        if not m.get("passed"):
            lines.append(f"| {m['name']} | {m['route']} | - | - | - | not converted |")
            continue
        worst = ", ".join(f"{k['kind']}{'' if k['delegated'] else ' (builtin)'} "
                          f"{k['share']:.0%}" for k in m["kinds"][:TOP])
        builtin = f"{m['builtin_share']:.1%}"
        if m["builtin_kinds"]:
            builtin += f" ({', '.join(m['builtin_kinds'])})"
        lines.append(f"| {m['name']} | {m['route']} | {m['p50_ms']:.2f} | "
                     f"{m['xnnpack_share']:.1%} | {builtin} | {worst} |")
    lines.append(measured_on(data["models"], "one thread per core; shares of the ops' summed "
                                             "time"))
    return "\n".join(lines)


if __name__ == "__main__":
    main()
