"""The labelled corpus (``tests/validators/corpus.py``) under portkit's float policies: each
artifact's error as a fraction of its output's scale, its verdict under the scale-aware rule
and under the old per-element rule (atol 1e-4 + rtol 1e-3), and the margins between the worst
faithful artifact and the best broken one.

    python -m benchmarks.tolerance                # writes benchmarks/results/tolerance.json
    python -m benchmarks.tolerance --cases flip-onnx2tf segmenter-onnx
    python -m benchmarks.tolerance --readme docs/parity.md  # the table from the results, no run
"""

from __future__ import annotations

import argparse
import json
import platform
import tempfile
from pathlib import Path
from typing import Any

from portkit import api
from portkit.results import versions
from portkit.runtimes.worker import Pool
from tests.validators.corpus import CASES, judge

RESULTS = Path(__file__).parent / "results" / "tolerance.json"
OLD_RULE = {"atol": 1e-4, "rtol": 1e-3}  # the fp32 policy before the scale term


def measure(names: list[str] | None = None) -> list[dict[str, Any]]:
    """Every case's numbers (the worst output of the worst runtime)."""
    rows = []
    with Pool() as pool, tempfile.TemporaryDirectory() as tmp:
        for case in CASES:
            if names and case.name not in names:
                continue
            folder = Path(tmp) / case.name
            folder.mkdir()
            new, artifact, source = judge(case, folder, pool)
            old = None if case.quantize else api.validate(
                artifact, source, inputs=case.inputs, workers=pool, **OLD_RULE)
            outputs = [o for c in new.checks for o in c.outputs]
            if not outputs:  # nothing ran: the check's error says why
                rows.append({"case": case.name, "faithful": case.faithful,
                             "error": "; ".join(c.error or "" for c in new.checks),
                             "passed": False, "correct": not case.faithful})
                print(json.dumps(rows[-1]), flush=True)
                continue
            worst = max(outputs, key=lambda o: o.min_scale_tol_to_pass)
            row = {"case": case.name, "faithful": case.faithful, "why": case.why,
                   "route": case.route, "target": case.target,
                   "policy": case.quantize or "fp32", "scale": worst.scale,
                   "max_abs_err": worst.max_abs_err, "scaled_err": worst.scaled_err,
                   "min_scale_tol_to_pass": worst.min_scale_tol_to_pass,
                   "cosine": worst.cosine, "error": worst.error,
                   "passed": new.passed, "passed_old_rule": old.passed if old else None,
                   "correct": new.passed == case.faithful}
            print(json.dumps(row), flush=True)
            rows.append(row)
    return rows


START, END = "<!-- tolerance:start -->", "<!-- tolerance:end -->"


def markdown(data: dict[str, Any]) -> str:
    """The docs table of the corpus and the margins of each float policy."""
    from portkit.policies import POLICIES

    rows = data["cases"]
    lines = ["| case | artifact | route | policy | scale | err / scale | old rule | new rule |",
             "|---|---|---|---|--:|--:|---|---|"]
    for r in rows:
        err = r.get("scaled_err")
        shown = "-" if err is None else ("shape differs" if r.get("error") else f"{err:.2g}")
        old = {None: "-", True: "pass", False: "FAIL"}[r.get("passed_old_rule")]
        lines.append(f"| {r['case']} | {'faithful' if r['faithful'] else '**broken**'} | "
                     f"{r.get('route', '-')} | {r.get('policy', '-')} | "
                     f"{r['scale']:.3g} | {shown} | {old} | "
                     f"{'pass' if r['passed'] else 'FAIL'} |" if "scale" in r else
                     f"| {r['case']} | **broken** | - | - | - | - | - | FAIL ({r['error'][:60]}) |")
    lines.append("")
    for policy in ("fp32", "fp16"):
        mine = [r for r in rows if r.get("policy") == policy and r.get("scaled_err") is not None]
        faithful = [r["scaled_err"] for r in mine if r["faithful"]]
        broken = [r["scaled_err"] for r in mine if not r["faithful"]]
        limit = POLICIES[policy].scale_tol
        worst = max(faithful)
        line = (f"- **{policy}**: limit {limit:g} of the scale; the worst faithful artifact "
                f"{worst:.2g} ({limit / worst:.0f}× below the limit)")
        if broken:
            best = min(broken)
            line += f", the closest broken one {best:.2g} ({best / limit:.0f}× above it)"
        lines.append(line + ".")
    correct = sum(r["correct"] for r in rows)
    flipped = [r["case"] for r in rows if r.get("passed_old_rule") is not None
               and r["passed_old_rule"] != r["passed"]]
    lines.append(f"- {correct} of {len(rows)} verdicts right under the new rule; the old rule "
                 f"judged differently on {', '.join(flipped) or 'none'}.")
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--cases", nargs="*", help="Only these cases.")
    parser.add_argument("--readme", type=Path, help="Replace the table in this file (no run).")
    args = parser.parse_args()
    if args.readme:
        text = markdown(json.loads(RESULTS.read_text()))
        readme = args.readme.read_text()
        head, rest = readme.split(START, 1)
        _, tail = rest.split(END, 1)
        args.readme.write_text(f"{head}{START}\n{text}{END}{tail}")
        return
    rows = measure(args.cases)
    if args.cases:
        return
    RESULTS.write_text(json.dumps({"machine": platform.processor() or platform.machine(),
                                   "versions": versions(), "cases": rows}, indent=1) + "\n")
    print(f"wrote {RESULTS}")


if __name__ == "__main__":
    main()
