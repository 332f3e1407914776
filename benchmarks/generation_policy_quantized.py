"""The labelled corpus that calibrates the quantized generation policy
(``policies.GENERATION_QUANTIZED``): fixture families exported with int8 weights
(``--quantize dynamic``, each format's real recipe) to ONNX, ``.pte`` and TFLite, each artifact
generating from three prompts next to its float32 source, faithful as exported and broken by
known edits, and judged by ``validators.generation.compare`` under candidate policies (a logit
cosine floor per step and a tie margin for a first disagreement).

    python -m benchmarks.generation_policy --quantized          # writes the results JSON
    python -m benchmarks.generation_policy --quantized --quick  # llama only, nothing written

Broken cases are one weight of layer 1 edited (``generation_policy.QUANTIZED_EDITS``: the MLP
down-projection x1.05 or x1.25, the gate projection x1.05, the attention output projection's
inputs permuted, the down-projection's output rows permuted): for every format, in a copy of
the source the faithful int8 artifact is judged against (the two then differ by the edit and
the rounding); for ONNX also in the artifact itself, quantized from the edited float32 graph
with the converter's own quantizer (``hf_to_onnx.quantize``): the same int8 artifact made from a
broken model. An edit that does not move the source's own logits (``INVISIBLE``) makes no
broken case. The chosen policy is, of the candidates that fail no faithful case, the one that
passes the fewest broken ones (then the highest floor, then the smallest tie margin).
"""

from __future__ import annotations

import json
import platform
import shutil
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import replace
from importlib import metadata
from pathlib import Path
from types import ModuleType
from typing import Any

from benchmarks import generation_policy as gp
from portkit.errors import PortkitError
from portkit.formats import Format
from portkit.policies import GENERATION_POLICIES, GENERATION_QUANTIZED, Quantize
from portkit.results import versions
from portkit.runtimes.decoding import Generated
from portkit.runtimes.worker import Pool

RESULTS = gp.RESULTS.with_name("generation_policy_quantized.json")
START = "<!-- generation_policy_quantized:start -->"
END = "<!-- generation_policy_quantized:end -->"
FAMILIES = ("llama", "qwen3", "gemma3")  # three of the six: each export takes ~1 min on 2 cores
SHAPE = replace(gp.EXPORT, quantize=Quantize.DYNAMIC)
COSINES = (0.99, 0.995, 0.997, 0.998, 0.999, 0.9995)
TIES = (0.0, 0.01, 0.02, 0.03, 0.05)  # scale_tol: a first disagreement within 2x passes


def key(cosine: float, tie: float) -> str:
    return f"{cosine:g}/{tie:g}"


def judged(source: Generated, artifact: Generated, fmt: Format) -> dict[str, Any]:
    """One case's numbers, and its verdict under each candidate (cosine floor, tie margin)."""
    from portkit.validators.generation import RUNTIMES, compare

    checks = {(c, t): compare(source, artifact, runtime=RUNTIMES[fmt],
                              tolerance=replace(GENERATION_QUANTIZED, min_cosine=c, scale_tol=t))
              for c in COSINES for t in TIES}
    check = checks[(COSINES[0], TIES[-1])]  # the same steps under any candidate
    steps, first = check.steps, check.first_disagreement
    gap = None
    if first is not None:
        ref = source.logits[first]
        gap = float(ref[steps[-1].source_token] - ref[steps[-1].artifact_token]) / steps[-1].scale
    return {"prompt_length": len(source.prompt), "generated": check.generated,
            "agreed": check.agreed, "first_disagreement": first, "tie_gap": gap,
            "min_cosine": min(s.cosine for s in steps), "step0_cosine": steps[0].cosine,
            "max_scaled_err": max(s.scaled_err for s in steps),
            "passed": {key(c, t): v.passed for (c, t), v in checks.items()}}


def broken_onnx(work: Path, family: str, edit: str, pool: Pool,
                mode: Quantize = Quantize.DYNAMIC) -> Path:
    """``family``'s float32 ONNX with ``edit`` applied, quantized (``mode``) as the converter
    does."""
    from portkit.convert.hf_to_onnx import quantize

    out = work / family / f"{edit}-{mode.value}.onnx"
    if not out.is_file():
        fp32, _ = gp.exported(work, family, Format.ONNX, pool)
        edited = gp.edited_onnx(fp32, gp.source_dir(work, family), edit)
        shutil.copyfile(edited, out)
        quantize(out, mode)
    return out


def broken_sources(work: Path, family: str, truth: list[Generated], pool: Pool,
                   effects: list[dict[str, Any]]) -> dict[str, list[Generated]]:
    """Each edit's source (``generation_policy.QUANTIZED_EDITS``) generating, by edit, for the
    edits that move the source's own logits; each edit's effect against ``truth`` (the
    unedited source's runs) is appended to ``effects``."""
    broken = {}
    for edit in gp.QUANTIZED_EDITS:
        runs = gp.generations(gp.source_dir(work, family, edit), Format.HUGGINGFACE, pool)
        effect = [gp.judged(t, b, Format.HUGGINGFACE) for t, b in zip(truth, runs, strict=True)]
        visible = any(e["agreed"] < e["generated"] or e["max_scaled_err"] >= gp.INVISIBLE
                      for e in effect)
        effects.append({"family": family, "edit": edit, "visible": visible,
                        "max_scaled_err": max(e["max_scaled_err"] for e in effect),
                        "agreed": min(e["agreed"] for e in effect)})
        print(json.dumps(effects[-1]), flush=True)
        if visible:
            broken[edit] = runs
    return broken


def measure(work: Path, families: list[str], corpus: ModuleType | None = None
            ) -> tuple[list[dict[str, Any]], list[dict[str, Any]], list[dict[str, Any]]]:
    """Every case's row, every export's seconds (or its error), each edit's effect on the
    source (the edited directory against the original, both in transformers), for ``corpus``
    (this module, or ``generation_policy_int4``: its ``SHAPE`` and ``judged``). Where its
    policy is ``forced``, each artifact is fed the tokens of the source it is judged against;
    else it generates once, on its own."""
    c = corpus or sys.modules[__name__]
    mode = c.SHAPE.quantize
    forced = GENERATION_POLICIES[mode].forced
    rows: list[dict[str, Any]] = []
    exports: list[dict[str, Any]] = []
    effects: list[dict[str, Any]] = []
    with Pool() as pool:
        for family in families:
            truth = gp.generations(gp.source_dir(work, family), Format.HUGGINGFACE, pool)
            broken = broken_sources(work, family, truth, pool, effects)
            for fmt in gp.FORMATS:
                head = {"family": family, "format": fmt.value}
                own: dict[Path, list[Generated]] = {}

                def runs(path: Path, refs: list[Generated]) -> list[Generated]:
                    """``path``'s runs judged against ``refs``."""
                    if forced:
                        return gp.generations(path, fmt, pool, refs)
                    if path not in own:
                        own[path] = gp.generations(path, fmt, pool)
                    return own[path]

                try:
                    path, seconds = gp.exported(work, family, fmt, pool, c.SHAPE)
                    exported = runs(path, truth)
                except PortkitError as e:
                    exports.append({**head, "error": str(e).splitlines()[0]})
                    print(json.dumps(exports[-1]), flush=True)
                    continue
                exports.append({**head, "seconds": round(seconds, 1),
                                "bytes": path.stat().st_size})
                cases = [("as-exported", None, True, truth, exported)]
                for edit, edited_runs in broken.items():
                    cases.append((edit, "source", False, edited_runs, runs(path, edited_runs)))
                    if fmt is Format.ONNX:
                        edited = broken_onnx(work, family, edit, pool, mode)
                        cases.append((edit, "artifact", False, truth, runs(edited, truth)))
                for case, edited_in, faithful, sources, artifacts in cases:
                    for source, artifact in zip(sources, artifacts, strict=True):
                        rows.append({**head, "case": case, "edited": edited_in,
                                     "faithful": faithful, **c.judged(source, artifact, fmt)})
                        print(json.dumps({k: v for k, v in rows[-1].items() if k != "passed"}),
                              flush=True)
            within_rounding([r for r in rows if r["family"] == family],
                            [e for e in effects if e["family"] == family])
    return rows, exports, effects


def within_rounding(rows: list[dict[str, Any]], effects: list[dict[str, Any]]) -> None:
    """Set apart (``faithful`` None) the cases of an edit that moves the source's own logits
    less than rounding (int8 or int4) moves the family's faithful artifacts: a quantized
    artifact of that edited model is as close to the float source as a faithful one, which no
    check against the source can tell apart."""
    faithful = [r["max_scaled_err"] for r in rows if r["faithful"]]
    if not faithful:
        return
    rounding = max(faithful)
    for effect in effects:
        effect["within_rounding"] = effect["visible"] and effect["max_scaled_err"] <= rounding
        effect["rounding"] = rounding
        if effect["within_rounding"]:
            for r in rows:
                if r["case"] == effect["edit"]:
                    r["faithful"] = None


def candidates(rows: list[dict[str, Any]], first: tuple[str, Sequence[float]],
               second: tuple[str, Sequence[float]]) -> list[dict[str, Any]]:
    """Each candidate policy, a value of ``first``'s and one of ``second``'s (each a name and
    its values; a case's verdicts are keyed ``"a/b"``), with the faithful cases it fails, the
    broken ones it passes, and the cases within rounding it passes."""
    def count(faithful: bool | None, name: str, verdict: bool) -> int:
        return sum(r["passed"][name] is verdict for r in rows if r["faithful"] is faithful)

    return [{first[0]: a, second[0]: b, "false_fails": count(True, key(a, b), False),
             "false_passes": count(False, key(a, b), True),
             "within_rounding_passed": count(None, key(a, b), True)}
            for a in first[1] for b in second[1]]


def summary(rows: list[dict[str, Any]]) -> dict[str, Any]:
    """The candidate table (false fails, false passes), the chosen candidate and its
    margins."""
    faithful = [r for r in rows if r["faithful"] is True]
    broken = [r for r in rows if r["faithful"] is False]
    table = candidates(rows, ("min_cosine", COSINES), ("tie", TIES))
    fair = [t for t in table if not t["false_fails"]]
    chosen = min(fair, key=lambda t: (t["false_passes"], -t["min_cosine"], t["tie"]),
                 default=None)
    passing = ([r for r in broken if r["passed"][key(chosen["min_cosine"], chosen["tie"])]]
               if chosen else [])
    fields = ("family", "format", "case", "edited", "prompt_length")
    ties = [r["tie_gap"] for r in faithful if r["tie_gap"] is not None]
    return {
        "faithful_cases": len(faithful), "broken_cases": len(broken),
        "within_rounding_cases": sum(r["faithful"] is None for r in rows), "candidates": table,
        "chosen": chosen,
        "faithful_min_cosine": min(r["min_cosine"] for r in faithful),
        "faithful_all_agreed": sum(r["agreed"] == r["generated"] for r in faithful),
        "faithful_largest_tie_gap": max(ties, default=None),
        "broken_max_step0_cosine": max((r["step0_cosine"] for r in broken), default=None),
        # the broken case closest to passing over all its compared steps
        "broken_max_min_cosine": max((r["min_cosine"] for r in broken), default=None),
        "broken_passed": [{k: r[k] for k in fields} for r in passing],
    }


def markdown(results: dict[str, Any]) -> str:
    """The docs block: each artifact's size and worst cosine as exported, each edit's
    closest call, the candidate table around the chosen policy."""
    s = results["summary"]
    lines = [f"Int8 artifacts as exported ({', '.join(results['families'])}; prompts of "
             f"{', '.join(map(str, results['prompt_lengths']))} tokens, {results['steps']} "
             "steps): the lowest logit cosine over the compared steps, and tokens agreed before "
             "the first disagreement (fewest over the prompts):", "", *as_exported(results),
             "", "Broken ones (layer 1 edited in the source the int8 artifact is judged "
             "against, or, for ONNX, in the float graph before quantizing): the highest "
             "cosine at step 0 over families and prompts:", "",
             *broken_table(results, lambda mine: f"{max(r['step0_cosine'] for r in mine):.4f}")]
    lines += ["", "| min cosine | tie within (of scale) | false fails (of faithful) "
              "| false passes (of broken) | within rounding passed |", "|--:|--:|--:|--:|--:|"]
    chosen = s["chosen"] or {"min_cosine": None, "tie": 0.0}
    for t in s["candidates"]:
        if t["tie"] not in (0.0, chosen["tie"]) and t["min_cosine"] != chosen["min_cosine"]:
            continue  # the table: no tie, the chosen margin, the chosen floor's every margin
        mark = " **chosen**" if t == chosen else ""
        lines.append(f"| {t['min_cosine']:g}{mark} | {2 * t['tie']:g} "
                     f"| {t['false_fails']} of {s['faithful_cases']} "
                     f"| {t['false_passes']} of {s['broken_cases']} "
                     f"| {t['within_rounding_passed']} of {s['within_rounding_cases']} |")
    lines.append("")
    chosen = s["chosen"]
    if chosen is None:
        lines.append("- No candidate passes every faithful case.")
    else:
        lines.append(f"- **chosen**: cosine >= {chosen['min_cosine']:g} at every compared step, "
                     f"a first disagreement a tie within {2 * chosen['tie']:g} of the scale; "
                     f"the lowest faithful cosine {s['faithful_min_cosine']:.4f}; the broken "
                     f"case closest to passing has its lowest step at "
                     f"{s['broken_max_min_cosine']:.4f} (step 0 at most "
                     f"{s['broken_max_step0_cosine']:.4f}); "
                     f"{s['faithful_all_agreed']} of {s['faithful_cases']} faithful cases agree "
                     f"on every token (the others part at a tie, widest "
                     f"{s['faithful_largest_tie_gap'] or 0:.3f} of the scale).")
    lines += notes(results, "int8")
    return "\n".join(lines) + "\n"


def _formats(results: dict[str, Any]) -> list[str]:
    return [f.value for f in gp.FORMATS if any(r["format"] == f.value for r in results["cases"])]


def as_exported(results: dict[str, Any]) -> list[str]:
    """A table of each family's artifact in each format as exported: its lowest step cosine
    and fewest agreeing tokens over the prompts."""
    formats = _formats(results)
    lines = ["| family | " + " | ".join(formats) + " |", "|---|" + "--:|" * len(formats)]
    for family in results["families"]:
        cells = []
        for fmt in formats:
            mine = [r for r in results["cases"] if (r["family"], r["format"], r["case"])
                    == (family, fmt, "as-exported")]
            cells.append("-" if not mine else f"{min(r['min_cosine'] for r in mine):.4f} "
                         f"({min(r['agreed'] for r in mine)}/{mine[0]['generated']})")
        lines.append(f"| {family} | " + " | ".join(cells) + " |")
    return lines


def broken_table(results: dict[str, Any], cell: Callable[[list[dict[str, Any]]], str]
                 ) -> list[str]:
    """A table of each edit, where it was made (the artifact, the source) and, per format,
    ``cell`` of its broken cases."""
    formats = _formats(results)
    lines = ["| edit | edited | " + " | ".join(formats) + " |",
             "|---|---|" + "--:|" * len(formats)]
    for edit, (_, _, why) in gp.QUANTIZED_EDITS.items():
        for edited in ("artifact", "source"):
            cells = []
            for fmt in formats:
                mine = [r for r in results["cases"] if (r["format"], r["case"], r["edited"])
                        == (fmt, edit, edited) and r["faithful"] is not True]
                cells.append(cell(mine) if mine else "-")
            if any(c != "-" for c in cells):
                lines.append(f"| {why} | {edited} | " + " | ".join(cells) + " |")
    return lines


def notes(results: dict[str, Any], precision: str) -> list[str]:
    """The corpus's notes under its candidate table: the broken cases the chosen policy
    passes, the edits counted apart as within ``precision``'s rounding or not moving the
    source at all, the artifacts' sizes, the exports that failed."""
    lines = []
    if passed := results["summary"]["broken_passed"]:
        lines.append("- Broken cases the chosen policy passes: " + "; ".join(
            f"{r['family']} {r['format']} {r['case']} ({r['edited']}, "
            f"{r['prompt_length']}-token prompt)" for r in passed) + ".")
    rounded = [f"{e['edit']} on {e['family']} ({e['max_scaled_err']:.3f} of the scale, "
               f"{precision} rounding {e['rounding']:.3f})" for e in results["edit_effects"]
               if e.get("within_rounding")]
    if rounded:
        lines.append(f"- Counted apart, as within {precision} rounding (the edit moves the float "
                     f"source's own logits less than rounding moves the faithful {precision} "
                     f"artifacts, so an {precision} artifact of the edited model is as close to "
                     f"the source as a faithful one): {'; '.join(rounded)}.")
    invisible = [f"{e['edit']} on {e['family']}" for e in results["edit_effects"]
                 if not e["visible"]]
    if invisible:
        lines.append(f"- No broken case (the source's own logits don't move): "
                     f"{', '.join(invisible)}.")
    if sizes := [e for e in results["exports"] if "bytes" in e]:
        lines.append(f"- Sizes ({precision} weights): " + "; ".join(
            f"{e['family']} {e['format']} {e['bytes']:,} bytes" for e in sizes) + ".")
    failed = [f"{e['family']} {e['format']} ({e['error']})" for e in results["exports"]
              if "error" in e]
    if failed:
        lines.append(f"- Not in the corpus: {'; '.join(failed)}.")
    return lines


def run(work: Path, families: list[str], corpus: ModuleType | None = None) -> dict[str, Any]:
    """Measure ``families`` in ``work`` with ``corpus``'s ``measure``, ``summary``, ``markdown``
    and ``SHAPE`` (this module's, or ``generation_policy_int4``'s) and write its ``RESULTS`` when
    all of its ``FAMILIES`` ran."""
    c = corpus or sys.modules[__name__]
    started = time.perf_counter()
    rows, exports, effects = c.measure(work, families)
    results = {
        "machine": platform.processor() or platform.machine(),
        "versions": {**versions(), **{d: metadata.version(d) for d in
                                      ("transformers", "torchao", "ai-edge-quantizer")}},
        "families": families, "prompt_lengths": list(gp.PROMPT_LENGTHS), "steps": gp.STEPS,
        "max_seq": c.SHAPE.max_seq, "prefill": list(c.SHAPE.prefill),
        "edits": {k: why for k, (_, _, why) in gp.QUANTIZED_EDITS.items()},
        "seconds": round(time.perf_counter() - started), "exports": exports,
        "edit_effects": effects, "summary": c.summary(rows), "cases": rows,
    }
    print(json.dumps(results["summary"], indent=1))
    print(c.markdown(results))
    if set(families) == set(c.FAMILIES):
        c.RESULTS.write_text(json.dumps(results, indent=1) + "\n")
        print(f"wrote {c.RESULTS}")
    return results
