"""The labelled corpus that calibrates the int4 generation policy (``policies.GENERATION_INT4``):
trained tiny decoders (``fixtures.decoders``, ``trained=True``) exported with int4 weights
(``--quantize int4``, each format's real recipe) to ONNX, ``.pte`` and TFLite; each artifact fed
its source's greedy tokens from three prompts (teacher forcing) and judged by
``validators.generation.compare`` under candidate policies: a logit cosine floor at every step
and the share of steps whose greedy token is the source's.

    python -m benchmarks.generation_policy_int4          # writes the results JSON
    python -m benchmarks.generation_policy_int4 --quick  # llama only, nothing written

Broken cases are the int8 corpus's edits of one weight of layer 1
(``generation_policy.QUANTIZED_EDITS``): in a copy of the source the faithful int4 artifact is
judged against (fed that copy's tokens); for ONNX also in the artifact itself, quantized to int4
from the edited float32 graph by the converter's own quantizer. An edit that moves the source's
own logits less than int4 rounding moves the faithful artifacts is counted apart, as in the int8
corpus. Of the candidates that fail no faithful case and pass the fewest broken ones, the chosen
policy has the middle one of their cosine floors (away from both edges of the gap, not its
midpoint) and the lowest share of agreeing tokens: the tiny decoders agree on every token, where
real models' 4-bit quantizations part from their float model on 10-30% of tokens fed the same text
(llama.cpp's KL-divergence runs report a "same top p" of 70-90%), so no share floor higher than
the corpus needs.
"""

from __future__ import annotations

import argparse
import shutil
import sys
import tempfile
from dataclasses import replace
from pathlib import Path
from typing import Any

from benchmarks import generation_policy as gp
from benchmarks import generation_policy_quantized as q8
from portkit.formats import Format
from portkit.policies import GENERATION_INT4, Quantize
from portkit.runtimes.decoding import Generated

RESULTS = gp.RESULTS.with_name("generation_policy_int4.json")
START = "<!-- generation_policy_int4:start -->"
END = "<!-- generation_policy_int4:end -->"
FAMILIES = q8.FAMILIES
SHAPE = replace(gp.EXPORT, quantize=Quantize.INT4)
COSINES = (0.8, 0.85, 0.9, 0.93, 0.95, 0.96, 0.97, 0.98, 0.99)
SHARES = (0.5, 0.6, 0.7, 0.75, 0.8, 0.85, 0.9, 0.95, 1.0)  # min_top1: steps whose tokens agree


def sources(work: Path, families: list[str]) -> None:
    """Each family's trained directory where ``generation_policy.source_dir`` looks for it
    (its edits and exports are then made from it)."""
    from portkit.fixtures.decoders import save_decoder

    for family in families:
        folder = work / family / "source"
        if not (folder / "config.json").is_file():
            stage = folder.with_name("source.partial")
            shutil.rmtree(stage, ignore_errors=True)
            save_decoder(family, stage, seed=0, trained=True)
            stage.rename(folder)


def judged(source: Generated, artifact: Generated, fmt: Format) -> dict[str, Any]:
    """One case's numbers, and its verdict under each candidate (cosine floor, share)."""
    from portkit.validators.generation import RUNTIMES, compare

    checks = {(c, a): compare(source, artifact, runtime=RUNTIMES[fmt],
                              tolerance=replace(GENERATION_INT4, min_cosine=c, min_top1=a))
              for c in COSINES for a in SHARES}
    check = checks[(COSINES[0], SHARES[0])]  # the same steps under any candidate
    steps = check.steps
    return {"prompt_length": len(source.prompt), "generated": check.generated,
            "agreed": check.agreed, "share": check.agreed / check.generated,
            "first_disagreement": check.first_disagreement,
            "min_cosine": min(s.cosine for s in steps), "step0_cosine": steps[0].cosine,
            "max_scaled_err": max(s.scaled_err for s in steps),
            "passed": {q8.key(c, a): v.passed for (c, a), v in checks.items()}}


def measure(work: Path, families: list[str]
            ) -> tuple[list[dict[str, Any]], list[dict[str, Any]], list[dict[str, Any]]]:
    """The int8 corpus's ``measure`` on the trained directories (``sources``), each artifact
    fed the tokens of the source it is judged against (the int4 policy is ``forced``)."""
    sources(work, families)
    return q8.measure(work, families, sys.modules[__name__])


def summary(rows: list[dict[str, Any]]) -> dict[str, Any]:
    """The candidate table (false fails, false passes), the chosen candidate and its
    margins."""
    faithful = [r for r in rows if r["faithful"] is True]
    broken = [r for r in rows if r["faithful"] is False]
    table = q8.candidates(rows, ("min_cosine", COSINES), ("min_top1", SHARES))
    fair = [t for t in table if not t["false_fails"]]
    fewest = min((t["false_passes"] for t in fair), default=None)
    best = [t for t in fair if t["false_passes"] == fewest]
    floors = sorted({t["min_cosine"] for t in best})
    chosen = min((t for t in best if floors and t["min_cosine"] == floors[len(floors) // 2]),
                 key=lambda t: t["min_top1"], default=None)
    passing = ([r for r in broken if r["passed"][q8.key(chosen["min_cosine"],
                                                         chosen["min_top1"])]] if chosen else [])
    fields = ("family", "format", "case", "edited", "prompt_length")
    return {
        "faithful_cases": len(faithful), "broken_cases": len(broken),
        "within_rounding_cases": sum(r["faithful"] is None for r in rows),
        "candidates": table, "chosen": chosen,
        "faithful_min_cosine": min(r["min_cosine"] for r in faithful),
        "faithful_min_share": min(r["share"] for r in faithful),
        "broken_max_min_cosine": max((r["min_cosine"] for r in broken), default=None),
        "broken_max_share": max((r["share"] for r in broken), default=None),
        "broken_passed": [{k: r[k] for k in fields} for r in passing],
    }


def markdown(results: dict[str, Any]) -> str:
    """The docs block: each artifact's worst cosine and fewest agreeing tokens as exported,
    each edit's closest call, the candidates around the chosen policy."""
    s = results["summary"]
    lines = [f"Int4 artifacts as exported (trained {', '.join(results['families'])}; prompts of "
             f"{', '.join(map(str, results['prompt_lengths']))} tokens, {results['steps']} "
             "steps, fed the source's tokens): the lowest logit cosine over the steps, and the "
             "fewest steps whose tokens agree (over the prompts):", "", *q8.as_exported(results),
             "", "Broken ones (layer 1 edited in the source the int4 artifact is judged "
             "against, or, for ONNX, in the float graph before quantizing): the highest "
             "lowest-cosine and the most agreeing steps over families and prompts:", "",
             *q8.broken_table(results, lambda mine: (
                 f"{max(r['min_cosine'] for r in mine):.4f} "
                 f"({max(r['agreed'] for r in mine)}/{mine[0]['generated']})"))]
    chosen = s["chosen"]
    lines += ["", "| min cosine | tokens agreeing | false fails (of faithful) "
              "| false passes (of broken) | within rounding passed |", "|--:|--:|--:|--:|--:|"]
    for t in s["candidates"]:
        if chosen and not (t["min_top1"] == chosen["min_top1"] or (
                t["min_cosine"] == chosen["min_cosine"] and t["min_top1"] == SHARES[-1])):
            continue  # every floor at the chosen share; the chosen floor at every token
        mark = " **chosen**" if t == chosen else ""
        lines.append(f"| {t['min_cosine']:g}{mark} | {t['min_top1']:.0%} "
                     f"| {t['false_fails']} of {s['faithful_cases']} "
                     f"| {t['false_passes']} of {s['broken_cases']} "
                     f"| {t['within_rounding_passed']} of {s['within_rounding_cases']} |")
    lines.append("")
    if chosen is None:
        lines.append("- No candidate passes every faithful case.")
    else:
        lines.append(f"- **chosen**: cosine >= {chosen['min_cosine']:g} at every step and at "
                     f"least {chosen['min_top1']:.0%} of the tokens the source's; the faithful "
                     f"cases' lowest cosine {s['faithful_min_cosine']:.4f} and fewest agreeing "
                     f"{s['faithful_min_share']:.0%}; the broken ones' highest "
                     f"{s['broken_max_min_cosine']:.4f} and most "
                     f"{s['broken_max_share']:.0%}.")
    lines += q8.notes(results, "int4")
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--work", type=Path, help="Keep (and reuse) the exports here.")
    parser.add_argument("--quick", action="store_true", help="llama only (nothing written).")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        work = args.work or Path(tmp)
        work.mkdir(parents=True, exist_ok=True)
        q8.run(work, ["llama"] if args.quick else list(FAMILIES), sys.modules[__name__])


if __name__ == "__main__":
    main()
