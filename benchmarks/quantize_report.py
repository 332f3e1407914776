"""Markdown tables and the issue's verdicts from ``benchmarks/results/quantize.json``.

    python -m benchmarks.quantize_report                    # print the Markdown
    python -m benchmarks.quantize_report --readme docs/benchmarks.md # replace the block between the markers
"""

from __future__ import annotations

from typing import Any

from benchmarks.quantize import RESULTS
from benchmarks.report import (
    Verdict,
    cell_converted,
    converted,
    latency_cells,
    provenance,
    render_main,
    tool_cell,
)

START, END = "<!-- quantize:start -->", "<!-- quantize:end -->"
MODES = {"int8": "int8: static, calibrated, float inputs and outputs",
         "dynamic": "dynamic: int8 weights, float activations"}
KEYS = {"tflite_2t": "2 threads", "tflite_1t": "1 thread"}
DYNAMIC_OVER_FLOAT = 1.5  # the issue: --quantize dynamic of encoder4 <= 1.5x its float time


def dynamic_over_float(model: dict[str, Any]) -> tuple[float, dict[str, Any]] | None:
    """portkit's ``--quantize dynamic`` seconds over its float conversion's, and its run."""
    run = next((r for r in model["runs"] if r["tool"] == "portkit" and r["mode"] == "dynamic"),
               None)
    plain = model.get("float") or {}
    if run is None or not run.get("seconds") or not plain.get("seconds"):
        return None
    return run["seconds"] / plain["seconds"], run


def verdicts(data: dict[str, Any]) -> list[Verdict]:
    """encoder4's dynamic-over-float time, and coverage per mode against the peers."""
    out = []
    encoder = next((m for m in data["models"] if m["name"] == "encoder4"), None)
    found = dynamic_over_float(encoder) if encoder else None
    if found is None:
        out.append(Verdict(f"--quantize dynamic of encoder4 takes <= {DYNAMIC_OVER_FLOAT}x its "
                           "float conversion", False, "not measured"))
    else:
        ratio, run = found
        out.append(Verdict(
            f"--quantize dynamic of encoder4 takes <= {DYNAMIC_OVER_FLOAT}x its float conversion",
            ratio <= DYNAMIC_OVER_FLOAT and converted(run),
            f"{run['seconds']:.1f} s ({run.get('route') or '-'}) against "
            f"{encoder['float']['seconds']:.1f} s ({encoder['float'].get('route') or '-'}): "
            f"{ratio:.2f}x" + ("" if converted(run) else "; the artifact did not pass")))
    for mode, title in MODES.items():
        counted, missing = 0, []
        for m in data["models"]:
            runs = [r for r in m["runs"] if r["mode"] == mode]
            if any(converted(r) for r in runs if r["tool"] != "portkit"):
                counted += 1
                if not any(converted(r) for r in runs if r["tool"] == "portkit"):
                    missing.append(m["name"])
        if any(r["mode"] == mode for m in data["models"] for r in m["runs"]):
            out.append(Verdict(
                f"{title.split(':')[0]}: portkit converts every model a peer converts",
                not missing, f"{counted} models converted by some peer; portkit missed: "
                f"{', '.join(missing) or 'none'}"))
    return out


def _converted_cell(run: dict[str, Any]) -> str:
    """The "converted" cell, with portkit's own verdict where it failed the artifact (it judges
    on other inputs: seeded ones for dynamic, the held-back calibration samples for int8)."""
    cell = cell_converted(run)
    if run["tool"] == "portkit" and run.get("artifact") and run.get("exit_code") not in (0, None):
        cell += f" (portkit exit {run.get('exit_code')})"
    return cell


def _float_table(models: list[dict[str, Any]]) -> list[str]:
    lines = ["### portkit: float against --quantize dynamic", "",
             "| model | float seconds (route) | dynamic seconds (route) | dynamic / float |",
             "|---|--:|--:|--:|"]
    for m in models:
        plain = m.get("float") or {}
        found = dynamic_over_float(m)
        dyn = found[1] if found else {}
        cell = (lambda r: f"{r['seconds']:.1f} ({r.get('route') or 'failed'})"
                if r.get("seconds") is not None else "-")
        lines.append(f"| {m['name']} | {cell(plain)} | {cell(dyn)} | "
                     f"{f'{found[0]:.2f}×' if found else '-'} |")
    return [*lines, ""]


def markdown(data: dict[str, Any]) -> str:
    """The docs section: one table per mode, portkit's float against dynamic time, verdicts."""
    models = data["models"]
    first = models[0]
    lines = [
        provenance(models, "benchmarks/results/quantize.json", "benchmarks.quantize_report"),
        "",
        (f"Every artifact is judged on the last {first['held_back']} of {first['samples']} "
         "seeded input samples, which no tool calibrated on, under portkit's policy for the mode "
         "(int8: cosine ≥ 0.98, top-1 ≥ 80%, top-5 ≥ 95%; dynamic: cosine ≥ 0.99, top-1 ≥ 90%; "
         "top-k where the output is a classifier). Cosine and top-1 are the worst output's. "
         "Seconds are the wall time of the tool alone in a fresh process (onnx2tf's include "
         "torch.onnx's export). Latency is p50 over ≥ 50 runs, all artifacts of a model and "
         "mode timed in turns in one process; the ratio is against the fastest peer artifact "
         "that passed (below 1.00× is faster)."),
        "",
    ]
    for mode, title in MODES.items():
        if not any(r["mode"] == mode for m in models for r in m["runs"]):
            continue
        lines += [f"### {title}", "",
                  "| model | tool (route) | converted | seconds | cosine | top-1 | MB | "
                  + " | ".join(f"p50 ms {name} | vs best peer" for name in KEYS.values()) + " |",
                  "|---|---|---|--:|--:|--:|--:|" + "--:|--:|" * len(KEYS)]
        for m in models:
            runs = [r for r in m["runs"] if r["mode"] == mode]
            for r in runs:
                cos = f"{r['cosine']:.4f}" if r.get("cosine") is not None else "-"
                top1 = f"{r['top1']:.0%}" if r.get("top1") is not None else "-"
                size = f"{r['size_bytes'] / 1e6:.1f}" if r.get("size_bytes") else "-"
                secs = f"{r['seconds']:.1f}" if r.get("seconds") is not None else "-"
                lines.append(f"| {m['name']} | {tool_cell(r)} | {_converted_cell(r)} | {secs} | "
                             f"{cos} | {top1} | {size} | "
                             + " | ".join(latency_cells(r, runs, KEYS)) + " |")
        lines.append("")
    lines += _float_table(models)
    lines += ["### Verdicts", "", "| claim | held | evidence |", "|---|---|---|"]
    lines += [f"| {v.claim} | {'yes' if v.held else '**no**'} | {v.evidence} |"
              for v in verdicts(data)]
    return "\n".join(lines) + "\n"


def main() -> None:
    render_main(__doc__, RESULTS, START, END, markdown)


if __name__ == "__main__":
    main()
