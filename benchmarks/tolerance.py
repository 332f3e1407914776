"""The labelled corpus (``tests/validators/corpus.py``) under portkit's float policies: each
artifact's error as a fraction of its output's scale, its verdict under the scale-aware rule
and under the old per-element rule (atol 1e-4 + rtol 1e-3), and the margins between the worst
faithful artifact and the best broken one.

    python -m benchmarks.tolerance                # writes benchmarks/results/tolerance.json
    python -m benchmarks.tolerance --cases flip-onnx2tf segmenter-onnx
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
from tests.validators.corpus import CASES, make_artifact

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
            artifact, source = make_artifact(case, folder, pool)
            policy = {"quantize": case.quantize} if case.quantize else {}
            kw: dict[str, Any] = dict(inputs=case.inputs, workers=pool)
            new = api.validate(artifact, source, **kw, **_policy(case))
            old = api.validate(artifact, source, **kw, **OLD_RULE) if not policy else None
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


def _policy(case: Any) -> dict[str, Any]:
    """fp16 artifacts are judged by the fp16 policy (``validate`` takes its numbers)."""
    if case.quantize != "fp16":
        return {}
    from portkit.options import POLICIES

    fp16 = POLICIES["fp16"]
    return {"atol": fp16.atol, "rtol": fp16.rtol, "scale_tol": fp16.scale_tol,
            "min_cosine": fp16.min_cosine}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--cases", nargs="*", help="Only these cases.")
    args = parser.parse_args()
    rows = measure(args.cases)
    if args.cases:
        return
    RESULTS.write_text(json.dumps({"machine": platform.processor() or platform.machine(),
                                   "versions": versions(), "cases": rows}, indent=1) + "\n")
    print(f"wrote {RESULTS}")


if __name__ == "__main__":
    main()
