"""Markdown tables and the issue's verdicts from ``benchmarks/results/zoo.json``.

    python -m benchmarks.report                    # print the Markdown
    python -m benchmarks.report --readme docs/benchmarks.md # replace the block between the markers
"""

from __future__ import annotations

import argparse
import json
import statistics
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from benchmarks.run import RESULTS

START, END = "<!-- benchmarks:start -->", "<!-- benchmarks:end -->"
TARGETS = {"onnx": "ONNX (ONNX Runtime)", "tflite": "TFLite float32",
           "tflite-int8": "TFLite int8 (calibrated, float I/O)"}
SLOWER_ALLOWED = 0.05
OVERHEAD_ALLOWED = 0.30
TF2ONNX_OVERHEAD = 1.3  # portkit's convert + validate over tf2onnx alone, wall seconds


def converted(run: dict[str, Any]) -> bool:
    """Wrote an artifact that ran and matched its source (portkit's policy for the precision),
    and ran in every timed setting (e.g. XNNPACK on one thread)."""
    timed = (run.get("latency") or {}).values()
    return bool(run.get("artifact") and run.get("ran") and run.get("parity_passed")
                and not any("error" in t for t in timed))


def p50(run: dict[str, Any], key: str) -> float | None:
    return (run.get("latency") or {}).get(key, {}).get("p50_ms")


def latency_keys(target: str) -> list[str]:
    return ["onnxruntime"] if target == "onnx" else ["tflite_2t", "tflite_1t"]


def best_peer(runs: list[dict[str, Any]], key: str) -> float | None:
    """The lowest p50 among the peers' artifacts that matched."""
    times = [p50(r, key) for r in runs if r["tool"] != "portkit" and converted(r)]
    return min((t for t in times if t is not None), default=None)


def ratio_to_best(run: dict[str, Any], runs: list[dict[str, Any]], key: str) -> float | None:
    """The artifact's p50 over the fastest matching peer's: the median, over the timing
    processes, of that ratio within each process (``p50_ms_each``; all artifacts of a model are
    timed in turns in each), so a process that ran slow as a whole moves no ratio. Results
    without per-process p50s give the ratio of the medians."""
    mine = (run.get("latency") or {}).get(key, {})
    peers = [(r.get("latency") or {}).get(key, {}) for r in runs
             if r["tool"] != "portkit" and converted(r)]
    each = [mine.get("p50_ms_each") or []] + [t.get("p50_ms_each") or [] for t in peers if t]
    if len(each) > 1 and len({len(e) for e in each}) == 1 and each[0]:
        return float(statistics.median(m / min(p[k] for p in each[1:])
                                       for k, m in enumerate(each[0])))
    best, t = best_peer(runs, key), p50(run, key)
    return None if best is None or t is None else t / best


@dataclass(frozen=True)
class Verdict:
    """One must-show of the issue, checked on the results."""

    claim: str
    held: bool
    evidence: str


def verdicts(data: dict[str, Any]) -> list[Verdict]:
    """Coverage per target, optimized TFLite speed against the best peer, resnet18 overhead."""
    models = data["models"]
    out = []
    for target, title in TARGETS.items():
        missing, counted = [], 0
        for m in models:
            runs = [r for r in m["runs"] if r["target"] == target]
            if not runs:
                continue
            if any(converted(r) for r in runs if r["tool"] != "portkit"):
                counted += 1
                if not any(converted(r) for r in runs if r["tool"] == "portkit"):
                    missing.append(m["name"])
        out.append(Verdict(
            f"{title}: portkit converts every model a peer converts", not missing,
            f"{counted} models converted by some peer; portkit missed: {', '.join(missing) or 'none'}"))
    worst: tuple[float, str] = (0.0, "")
    for m in models:
        for target in ("tflite", "tflite-int8"):
            runs = [r for r in m["runs"] if r["target"] == target]
            mine = next((r for r in runs if r["mode"] == "optimize" and converted(r)), None)
            for key in latency_keys(target):
                ratio = ratio_to_best(mine, runs, key) if mine else None
                if ratio is not None and ratio > worst[0]:
                    worst = (ratio, f"{m['name']} {target} {key}")
    out.append(Verdict(
        f"--optimize latency: no portkit TFLite artifact more than {SLOWER_ALLOWED:.0%} slower "
        "than the best peer's (p50)", worst[0] <= 1 + SLOWER_ALLOWED,
        f"worst ratio {worst[0]:.3f} ({worst[1]})" if worst[1] else "no comparable pair"))
    r18 = next((r for m in models if m["name"] == "resnet18" for r in m["runs"]
                if r["target"] == "tflite" and r["mode"] == "default"), None)
    if r18 and r18.get("portkit_seconds"):
        share = r18["overhead_seconds"] / r18["portkit_seconds"]
        out.append(Verdict(
            f"portkit's overhead under {OVERHEAD_ALLOWED:.0%} of resnet18 -> TFLite",
            share < OVERHEAD_ALLOWED,
            f"{r18['overhead_seconds']:.2f} s of {r18['portkit_seconds']:.2f} s ({share:.0%}); "
            f"converter {r18['converter_seconds']:.2f} s"))
    return out + _against(models)


def _against(models: list[dict[str, Any]]) -> list[Verdict]:
    """portkit's TF -> ONNX time against tf2onnx's alone, where the results hold both. (The
    default TFLite artifact against ONNX Runtime is ``benchmarks/tflite_vs_ort.py``'s: timed in
    turns in one process, which the zoo's per-runtime timings are not.)"""
    def default(m: dict[str, Any], tool: str) -> dict[str, Any] | None:
        return next((r for r in m["runs"] if r["target"] == "onnx" and r["tool"] == tool
                     and r["mode"] in ("default", "") and converted(r)), None)

    cost = []
    for m in models:
        mine, peer = default(m, "portkit"), default(m, "tf2onnx")
        if mine and peer and peer.get("seconds"):
            cost.append((mine["seconds"] / peer["seconds"], m["name"]))
    if not cost:
        return []
    worst = max(cost)
    return [Verdict(
        f"TF -> ONNX: portkit's convert and validate within {TF2ONNX_OVERHEAD}x of tf2onnx alone "
        "(wall seconds)", worst[0] <= TF2ONNX_OVERHEAD,
        ", ".join(f"{n} {r:.2f}x" for r, n in cost))]


def cell_converted(run: dict[str, Any]) -> str:
    """The "converted" cell: yes, or what went wrong, shortened."""
    if converted(run):
        return "yes"
    failing = [f"{k}: {t['error']}" for k, t in (run.get("latency") or {}).items() if "error" in t]
    if failing:
        return f"does not run on {_short(failing[0])}"
    if run.get("artifact") and run.get("ran"):
        return f"wrong numbers ({', '.join(run.get('failed') or [])})"
    if run.get("artifact"):
        return f"does not run: {_short(run.get('run_error') or '')}"
    return f"no: {_short(run.get('error') or '')}"


def _short(text: str, limit: int = 70) -> str:
    text = text.replace("|", "/").replace("\n", " ")
    return text if len(text) <= limit else text[: limit - 1] + "…"


def tool_cell(run: dict[str, Any]) -> str:
    """The "tool (route)" cell: portkit in bold with the route it shipped, or the peer."""
    if run["tool"] != "portkit":
        return run["label"] + (" CLI" if run["tool"] == "onnx2tf" else "")
    return f"**{run['label']}** ({run.get('route') or '-'})"


def ratio_cell(run: dict[str, Any], runs: list[dict[str, Any]], key: str) -> str:
    """The artifact's p50 over the fastest matching peer's (``ratio_to_best``), or "-"."""
    ratio = ratio_to_best(run, runs, key) if converted(run) else None
    return "-" if ratio is None else f"{ratio:.2f}×"


def changed_verdicts(models: list[dict[str, Any]]) -> list[str]:
    """Lines on the fp32 artifacts whose verdict the scale-aware rule changed (against numpy
    allclose with atol 1e-4, rtol 1e-3 on the same outputs)."""
    judged = [(m, r) for m in models for r in m["runs"]
              if r.get("parity_passed_old_rule") is not None]
    if not judged:
        return []
    changed = [(m, r) for m, r in judged if r["parity_passed"] != r["parity_passed_old_rule"]]
    summary = (f"{len(judged)} float32 artifacts judged by both rules; "
               f"{len(changed)} verdicts changed{':' if changed else '.'}")
    lines = ["### Float32 verdicts under the scale-aware rule", "", summary, ""]
    if changed:
        header = "| model | tool (route) | target | max abs err | err / scale | old rule | new rule |"
        lines += [header, "|---|---|---|--:|--:|---|---|"]
        for m, r in changed:
            old, new = (("pass" if r[k] else "FAIL") for k in ("parity_passed_old_rule",
                                                                 "parity_passed"))
            lines.append(f"| {m['name']} | {tool_cell(r)} | {r['target']} | {r['max_abs_err']:.2g} | "
                         f"{r['scaled_err']:.2g} | {old} | {new} |")
        lines.append("")
    return lines


def provenance(models: list[dict[str, Any]], results: str, module: str) -> str:
    """When and where the results were measured, with every library's version."""
    first = models[0]
    runs: dict[tuple[str, str], list[str]] = {}  # (day, CPU): the CPU can differ by session
    for m in models:
        runs.setdefault((m["date"].split()[0], m["machine"]["cpu"]), []).append(m["name"])
    many = len({cpu for _day, cpu in runs}) > 1
    when = (f"Run {first['date']}" if len(runs) == 1 else "Runs of " + "; ".join(
        f"{day} ({', '.join(names)}{', ' + cpu if many else ''})"
        for (day, cpu), names in sorted(runs.items(), reverse=True)))
    where = "," if many else f" on {first['machine']['cpu']},"
    return (f"{when}{where} {first['machine']['cores']} cores, "
            f"{first['machine']['memory_gib']} GiB, Python {first['machine']['python']}; "
            + ", ".join(f"{k} {v}" for k, v in sorted(first["versions"].items())
                        if k != "portkit")
            + f". Generated by `python -m {module}` from `{results}`.")


def replace_block(readme: Path, start: str, end: str, text: str) -> None:
    """Put ``text`` between the ``start`` and ``end`` markers of ``readme``."""
    content = readme.read_text()
    if start not in content or end not in content:
        raise SystemExit(f"{readme}: no {start} ... {end} block to replace")
    head, rest = content.split(start, 1)
    _, tail = rest.split(end, 1)
    readme.write_text(f"{head}{start}\n{text}{end}{tail}")


def markdown(data: dict[str, Any]) -> str:
    """The docs section: one table per target, then the verdicts."""
    models = data["models"]
    lines = [
        provenance(models, "benchmarks/results/zoo.json", "benchmarks.report"),
        "",
        "Seconds are the wall time of the tool alone in a fresh process (imports included; "
        "portkit's also runs the source and validates). Latency is p50 over ≥ 50 runs, all "
        "artifacts of a model timed in turns in one process; the ratio is against the fastest "
        "peer artifact that matched, the median of that ratio within each of the three timing "
        "processes (below 1.00× is faster).",
        "",
    ]
    for target, title in TARGETS.items():
        rows = [(m, r) for m in models for r in m["runs"] if r["target"] == target]
        if not rows:
            continue
        keys = latency_keys(target)
        names = {"onnxruntime": "ORT", "tflite_2t": "2 threads", "tflite_1t": "1 thread"}
        lines += [f"### {title}", "",
                  "| model | tool (route) | converted | seconds | max abs err | cosine | MB | "
                  + " | ".join(f"p50 ms {names[k]} | vs best peer" for k in keys) + " |",
                  "|---|---|---|--:|--:|--:|--:|" + "--:|--:|" * len(keys)]
        for m in models:
            runs = [r for r in m["runs"] if r["target"] == target]
            for r in runs:
                err = f"{r['max_abs_err']:.2g}" if r.get("max_abs_err") is not None else "-"
                cos = f"{r['cosine']:.6f}" if r.get("cosine") is not None else "-"
                size = f"{r['size_bytes'] / 1e6:.1f}" if r.get("size_bytes") else "-"
                secs = f"{r['seconds']:.1f}" if r.get("seconds") is not None else "-"
                lines.append(f"| {m['name']} | {tool_cell(r)} | {cell_converted(r)} | {secs} | "
                             f"{err} | {cos} | {size} | "
                             + " | ".join(latency_cells(r, runs, keys)) + " |")
        lines.append("")
    lines += changed_verdicts(models)
    lines += ["### Verdicts", "", "| claim | held | evidence |", "|---|---|---|"]
    lines += [f"| {v.claim} | {'yes' if v.held else '**no**'} | {v.evidence} |"
              for v in verdicts(data)]
    return "\n".join(lines) + "\n"


def latency_cells(run: dict[str, Any], runs: list[dict[str, Any]], keys: Any) -> list[str]:
    """A row's p50 and ratio to the best peer, for each latency key."""
    cells = []
    for key in keys:
        t = p50(run, key)
        cells += [f"{t:.3g}" if t is not None else "-", ratio_cell(run, runs, key)]
    return cells


def render_main(doc: str | None, results: Path, start: str, end: str,
                render: Any) -> None:
    """``--results FILE --readme docs/benchmarks.md``: print the block ``render`` makes of the results,
    or replace the block between ``start`` and ``end`` in that page."""
    parser = argparse.ArgumentParser(description=doc,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--results", type=Path, default=results)
    parser.add_argument("--readme", type=Path, help="Replace the block in this file.")
    args = parser.parse_args()
    text = render(json.loads(args.results.read_text()))
    if not args.readme:
        print(text, end="")
        return
    replace_block(args.readme, start, end, text)


def main() -> None:
    render_main(__doc__, RESULTS, START, END, markdown)


if __name__ == "__main__":
    main()
