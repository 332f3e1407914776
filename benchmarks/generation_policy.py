"""The labelled corpus that calibrates the generation policy (``policies.GENERATION``): every
fixture family's tiny decoder exported to ONNX, ``.pte`` and TFLite, each artifact generating
from three prompts next to its source, faithful as exported and broken by known edits, and
judged by ``validators.generation.compare`` under candidate ``scale_tol`` values.

    python -m benchmarks.generation_policy                 # writes results/generation_policy.json
    python -m benchmarks.generation_policy --quick         # llama only, printed, nothing written
    python -m benchmarks.generation_policy --work /tmp/gp  # keep the exports for the next run
    python -m benchmarks.generation_policy --readme docs/language-models.md  # the block, no run
    python -m benchmarks.generation_policy --quantized     # the int8 corpus (its own module)

Each family's directory (``fixtures.decoders``, seed 0) is exported once per format into the
work folder (existing files are reused). Broken cases are one weight of layer 1 edited (the MLP
down-projection scaled by 1.02 or 1.25, the MLP gate projection by 1.02, the attention output
projection's input columns permuted): in the ONNX file itself (the initializer holding that
weight, found by its values), and, for every format, in a copy of the source directory judged
against the faithful artifact (the two then differ by exactly that edit). An edit that does not
move the source's own logits (``INVISIBLE``: Gemma's post-feedforward norm divides out a scale
of the down-projection) makes no broken case; an artifact that computes a known other function
(``DEVIATIONS``) is counted apart. Every case is a greedy generation of ``STEPS`` tokens on the
artifact's own cache; its numbers are over the steps ``compare`` compares (up to the first token
disagreement). The chosen ``scale_tol`` is the smallest candidate that fails no faithful case.
"""

from __future__ import annotations

import argparse
import json
import platform
import shutil
import tempfile
import time
from collections.abc import Callable
from dataclasses import replace
from importlib import metadata
from pathlib import Path
from typing import Any

import numpy as np

from benchmarks.report import replace_block
from portkit.errors import PortkitError
from portkit.formats import Format
from portkit.options.generation import Export
from portkit.policies import POLICIES
from portkit.results import versions
from portkit.runtimes.decoding import Generated, generate_task
from portkit.runtimes.worker import Pool

RESULTS = Path(__file__).parent / "results" / "generation_policy.json"
START, END = "<!-- generation_policy:start -->", "<!-- generation_policy:end -->"
FAMILIES = ("llama", "qwen2", "qwen3", "gemma2", "gemma3", "phi3")
FORMATS = (Format.ONNX, Format.EXECUTORCH, Format.TFLITE)
EXPORT = Export(max_seq=64, prefill=(8, 32))  # .pte and ONNX take any prompt length
PROMPT_LENGTHS = (5, 13, 24)  # prompt k: np.random.default_rng(k), ids in [3, 256)
STEPS = 32
CANDIDATES = (1e-4, 3e-4, 1e-3, 3e-3, 1e-2)
TIMEOUT = 900.0
LAYER = 1


def _permuted(w: np.ndarray) -> np.ndarray:
    """``w`` (torch layout ``[out, in]``) with its input columns in a seeded order."""
    return w[:, np.random.default_rng(0).permutation(w.shape[1])]


# edit -> (the weight it changes: the first of these modules the family has, in layer LAYER;
# what it does to the weight in torch's [out, in] layout; in words)
EDITS: dict[str, tuple[tuple[str, ...], Callable[[np.ndarray], np.ndarray], str]] = {
    "down-x1.02": (("mlp.down_proj",), lambda w: w * 1.02,
                   "MLP down-projection x1.02"),
    "down-x1.25": (("mlp.down_proj",), lambda w: w * 1.25,
                   "MLP down-projection x1.25"),
    "gate-x1.02": (("mlp.gate_proj", "mlp.gate_up_proj"), lambda w: w * 1.02,
                   "MLP gate projection x1.02 (Phi-3: the fused gate/up one)"),
    "o-permuted": (("self_attn.o_proj",), _permuted,
                   "attention output projection's inputs permuted"),
}
# The quantized corpus's edits (benchmarks/generation_policy_quantized.py): int8 rounding
# moves a tiny decoder's logits by a few percent of their scale, so its wrong scales are 5% and
# 25%, and a scrambled layer has its output rows permuted as well as its inputs.
QUANTIZED_EDITS: dict[str, tuple[tuple[str, ...], Callable[[np.ndarray], np.ndarray], str]] = {
    "down-x1.05": (("mlp.down_proj",), lambda w: w * 1.05, "MLP down-projection x1.05"),
    "down-x1.25": (("mlp.down_proj",), lambda w: w * 1.25, "MLP down-projection x1.25"),
    "gate-x1.05": (("mlp.gate_proj", "mlp.gate_up_proj"), lambda w: w * 1.05,
                   "MLP gate projection x1.05 (Phi-3: the fused gate/up one)"),
    "o-permuted": EDITS["o-permuted"],
    "down-rows-permuted": (("mlp.down_proj",),
                           lambda w: w[np.random.default_rng(0).permutation(w.shape[0])],
                           "MLP down-projection's output rows permuted"),
}


def edit_of(edit: str) -> tuple[tuple[str, ...], Callable[[np.ndarray], np.ndarray], str]:
    """An edit of either corpus by name."""
    return EDITS[edit] if edit in EDITS else QUANTIZED_EDITS[edit]


# An edit that moves the edited source's own logits (transformers against transformers) by
# less than this share of their scale, every token equal, changes nothing a runtime could be
# blamed for: it is no broken case (Gemma's post-feedforward norm divides a scale of the MLP's
# output out). Far below every candidate, far above float32 rounding of the same computation.
INVISIBLE = 1e-5
# Known ways an exporter changes the function, by format and the config's activation: the
# activation the artifact computes instead, and why. Such an artifact is neither faithful nor
# broken on purpose: its cases are reported apart ("deviation"), with its error against the
# source set to the activation it computes (config.json edited), which says whether that
# explains all of it.
DEVIATIONS: dict[tuple[Format, str], tuple[str, str]] = {
    # Was (Format.EXECUTORCH, "gelu_pytorch_tanh"): XNNPACK lowers gelu(approximate='tanh') as
    # the exact erf GELU (Gemma's .pte 2e-4 of scale off); hf_to_executorch now writes the
    # tanh GELU out as its formula, and those programs are faithful cases again.
}


def edited_weight(src: Path, edit: str) -> tuple[str, np.ndarray]:
    """The name and value (torch layout) of the weight ``edit`` changes in ``src``.

    Raises:
        SystemExit: ``src`` has none of the edit's modules.
    """
    from safetensors.numpy import load_file

    modules, _, _ = edit_of(edit)
    for shard in sorted(src.glob("*.safetensors")):
        tensors = load_file(shard)
        for module in modules:
            if (name := f"model.layers.{LAYER}.{module}.weight") in tensors:
                return name, tensors[name]
    raise SystemExit(f"{src}: no layer-{LAYER} weight of {' or '.join(modules)} to edit")


# --- the work folder ---------------------------------------------------------------------


def activation(src: Path) -> tuple[str, str]:
    """The config key naming ``src``'s MLP activation and its value."""
    config = json.loads((src / "config.json").read_text())
    key = next((k for k in ("hidden_activation", "hidden_act") if config.get(k)), "hidden_act")
    return key, str(config.get(key))


def variant_dir(work: Path, family: str, act: str) -> Path:
    """A copy of ``family``'s directory whose config names ``act`` as its MLP activation."""
    folder = work / family / f"act-{act}"
    if not (folder / "config.json").is_file():
        original = source_dir(work, family)
        shutil.copytree(original, folder, dirs_exist_ok=True)
        key, _ = activation(original)
        config = json.loads((folder / "config.json").read_text())
        (folder / "config.json").write_text(json.dumps({**config, key: act}, indent=2))
    return folder


def source_dir(work: Path, family: str, edit: str | None = None) -> Path:
    """``family``'s directory (seed 0), or a copy with ``edit`` applied to its safetensors."""
    from safetensors.numpy import load_file, save_file

    from portkit.fixtures.decoders import save_decoder

    folder = work / family / (edit or "source")
    if (folder / "config.json").is_file():
        return folder
    if edit is None:
        return save_decoder(family, folder, seed=0)
    original = source_dir(work, family)
    name, _ = edited_weight(original, edit)
    change = edit_of(edit)[1]
    stage = folder.with_name(folder.name + ".partial")
    shutil.rmtree(stage, ignore_errors=True)
    shutil.copytree(original, stage)
    for shard in sorted(stage.glob("*.safetensors")):
        tensors = load_file(shard)
        if name in tensors:
            tensors[name] = np.ascontiguousarray(change(tensors[name]))
            save_file(tensors, shard, metadata={"format": "pt"})
            break
    else:
        raise SystemExit(f"{original}: no safetensors file holds {name}")
    stage.rename(folder)
    return folder


def exported(work: Path, family: str, fmt: Format, pool: Pool, shape: Export = EXPORT
             ) -> tuple[Path, float]:
    """``family``'s faithful artifact in ``fmt`` exported as ``shape`` says (unless the work
    folder has it) and the export's seconds (0 when reused).

    Raises:
        PortkitError: The exporter failed (its error).
    """
    from portkit.convert.decoders import EXPORTERS, export

    mode = f"-{shape.quantize.value}" if shape.quantize else ""
    path = work / family / f"model{mode}{fmt.suffix}"
    if path.is_file():
        return path, 0.0
    src = source_dir(work, family)
    tool, _ = EXPORTERS[fmt]
    started = time.perf_counter()
    worker = f"export-{fmt.value}"  # litert-torch's export leaves its ops in transformers's
    try:                             # models: a torch.onnx export after it fails
        pool.call(worker, export, timeout=TIMEOUT, what=f"{tool} on {family}", target=fmt,
                  src=str(src), dst=str(path), export=shape)
    except PortkitError:
        pool.discard(worker)
        raise
    return path, time.perf_counter() - started


def edited_onnx(onnx_path: Path, src: Path, edit: str) -> Path:
    """A copy of the ONNX file with ``edit`` applied to the initializer that holds the edited
    weight (found by value: torch.onnx names the weights of a MatMul ``val_N``, transposed).

    Raises:
        SystemExit: No initializer, or several, hold the weight.
    """
    import onnx
    from onnx import numpy_helper

    out = onnx_path.with_name(f"{edit}.onnx")
    if out.is_file():
        return out
    name, weight = edited_weight(src, edit)
    change = edit_of(edit)[1]
    model = onnx.load(str(onnx_path))
    found = []
    for init in model.graph.initializer:
        value = numpy_helper.to_array(init)
        if value.shape == weight.T.shape and np.array_equal(value, weight.T):
            found.append((init, True))
        elif value.shape == weight.shape and np.array_equal(value, weight):
            found.append((init, False))
    if len(found) != 1:
        raise SystemExit(f"{onnx_path}: {len(found)} initializers hold {name} (want one)")
    init, transposed = found[0]
    new = change(weight).T if transposed else change(weight)
    init.CopyFrom(numpy_helper.from_array(np.ascontiguousarray(new, dtype=weight.dtype),
                                          init.name))
    onnx.save(model, str(out))
    return out


# --- the cases ---------------------------------------------------------------------------


def prompts() -> list[list[int]]:
    """The seeded prompts, one per length in ``PROMPT_LENGTHS``."""
    return [[int(i) for i in np.random.default_rng(k).integers(3, 256, n)]
            for k, n in enumerate(PROMPT_LENGTHS)]


def generations(path: Path, fmt: Format, pool: Pool,
                fed: list[Generated] | None = None) -> list[Generated]:
    """``path`` generating ``STEPS`` tokens from each prompt, in its format's worker; with
    ``fed`` (another side's runs, one a prompt), fed that run's tokens (teacher forcing)."""
    runs = []
    for k, prompt in enumerate(prompts()):
        forced = list(fed[k].tokens) if fed else []
        try:
            runs.append(pool.call(f"generate-{fmt.value}", generate_task, timeout=TIMEOUT,
                                  what=str(path), path=str(path), fmt=fmt, prompt=prompt,
                                  steps=STEPS, export=EXPORT, forced=forced))
        except PortkitError:
            pool.discard(f"generate-{fmt.value}")
            raise
    return runs


def judged(source: Generated, artifact: Generated, fmt: Format) -> dict[str, Any]:
    """One case's numbers, and its verdict under each candidate ``scale_tol``."""
    from portkit.validators.generation import RUNTIMES, compare

    base = POLICIES["fp32"]
    checks = {tol: compare(source, artifact, runtime=RUNTIMES[fmt],
                           tolerance=replace(base, scale_tol=tol, policy="fp32-generation"))
              for tol in CANDIDATES}
    check = checks[CANDIDATES[-1]]  # the same steps under any candidate
    steps = check.steps
    return {"prompt_length": len(source.prompt), "generated": check.generated,
            "agreed": check.agreed, "first_disagreement": check.first_disagreement,
            "tie": any(c.tie for c in checks.values()),
            "max_scaled_err": max(s.scaled_err for s in steps),
            "step0_scaled_err": steps[0].scaled_err, "step0_scale": steps[0].scale,
            "max_abs_err": max(s.max_abs_err for s in steps),
            "min_cosine": min(s.cosine for s in steps),
            "passed": {f"{tol:g}": c.passed for tol, c in checks.items()}}


def measure(work: Path, families: list[str]
            ) -> tuple[list[dict[str, Any]], list[dict[str, Any]], list[dict[str, Any]]]:
    """Every case's row; every export's (seconds, or the exporter's error); and each edit's
    effect on its family's source (the edited directory against the original, both in
    transformers), an edit under ``INVISIBLE`` being left out of the broken cases."""
    rows: list[dict[str, Any]] = []
    exports: list[dict[str, Any]] = []
    effects: list[dict[str, Any]] = []
    with Pool() as pool:
        for family in families:
            src = source_dir(work, family)
            truth = generations(src, Format.HUGGINGFACE, pool)
            broken = {}
            for edit in EDITS:
                runs = generations(source_dir(work, family, edit), Format.HUGGINGFACE, pool)
                effect = [judged(t, b, Format.HUGGINGFACE)
                          for t, b in zip(truth, runs, strict=True)]
                visible = any(e["agreed"] < e["generated"] or e["max_scaled_err"] >= INVISIBLE
                              for e in effect)
                effects.append({"family": family, "edit": edit,
                                "weight": edited_weight(src, edit)[0], "visible": visible,
                                "max_scaled_err": max(e["max_scaled_err"] for e in effect),
                                "agreed": min(e["agreed"] for e in effect)})
                print(json.dumps(effects[-1]), flush=True)
                if visible:
                    broken[edit] = runs
            for fmt in FORMATS:
                head = {"family": family, "format": fmt.value}
                try:
                    path, seconds = exported(work, family, fmt, pool)
                except PortkitError as e:
                    exports.append({**head, "error": f"export: {str(e).splitlines()[0]}"})
                    print(json.dumps(exports[-1]), flush=True)
                    continue
                exports.append({**head, "seconds": round(seconds, 1)})
                try:
                    runs = generations(path, fmt, pool)
                except PortkitError as e:
                    exports[-1]["error"] = f"generate: {str(e).splitlines()[0]}"
                    print(json.dumps(exports[-1]), flush=True)
                    continue
                deviation = DEVIATIONS.get((fmt, activation(src)[1]))
                explained: list[Generated | None] = [None] * len(runs)
                if deviation:
                    explained = generations(variant_dir(work, family, deviation[0]),
                                            Format.HUGGINGFACE, pool)
                for source, artifact, alt in zip(truth, runs, explained, strict=True):
                    rows.append({**head, "case": "as-exported", "edited": None,
                                 "faithful": None if deviation else True,
                                 **judged(source, artifact, fmt)})
                    if deviation and alt is not None:
                        rows[-1]["deviation"] = deviation[1]
                        rows[-1]["explained_scaled_err"] = judged(
                            alt, artifact, fmt)["max_scaled_err"]
                    print(json.dumps(rows[-1]), flush=True)
                cases = []
                for edit in broken:
                    cases.append((edit, "source", broken[edit], runs))
                    if fmt is Format.ONNX:
                        onnx_runs = generations(edited_onnx(path, src, edit), fmt, pool)
                        cases.append((edit, "artifact", truth, onnx_runs))
                for case, edited, sources, artifacts in cases:
                    for source, artifact in zip(sources, artifacts, strict=True):
                        rows.append({**head, "case": case, "edited": edited, "faithful": False,
                                     **judged(source, artifact, fmt)})
                        print(json.dumps(rows[-1]), flush=True)
    return rows, exports, effects


def summary(rows: list[dict[str, Any]]) -> dict[str, Any]:
    """The candidate table (false fails, false passes, deviations passed), the chosen
    ``scale_tol`` (the smallest with no false fail) and its margins; and the one chosen if the
    deviations counted as faithful."""
    faithful = [r for r in rows if r["faithful"] is True]
    broken = [r for r in rows if r["faithful"] is False]
    deviations = [r for r in rows if r["faithful"] is None]
    table = [{"scale_tol": tol,
              "false_fails": sum(not r["passed"][f"{tol:g}"] for r in faithful),
              "false_passes": sum(r["passed"][f"{tol:g}"] for r in broken),
              "deviations_passed": sum(r["passed"][f"{tol:g}"] for r in deviations)}
             for tol in CANDIDATES]
    chosen = next((t["scale_tol"] for t in table if not t["false_fails"]), None)
    lenient = next((t["scale_tol"] for t in table
                    if not t["false_fails"] and t["deviations_passed"] == len(deviations)), None)
    worst = max(faithful, key=lambda r: r["max_scaled_err"])
    closest = min(broken, key=lambda r: r["step0_scaled_err"]) if broken else None
    key = ("family", "format", "case", "edited", "prompt_length")
    return {
        "faithful_cases": len(faithful), "broken_cases": len(broken),
        "deviation_cases": len(deviations), "candidates": table, "chosen_scale_tol": chosen,
        "chosen_if_deviations_passed": lenient,
        "worst_deviation": max((r["max_scaled_err"] for r in deviations), default=None),
        "worst_deviation_explained": max((r["explained_scaled_err"] for r in deviations),
                                         default=None),
        "worst_faithful": {**{k: worst[k] for k in key}, "scaled_err": worst["max_scaled_err"]},
        "closest_broken": closest and {**{k: closest[k] for k in key},
                                       "step0_scaled_err": closest["step0_scaled_err"],
                                       "agreed": closest["agreed"]},
        # the broken case closest to passing over all its compared steps (what compare judges)
        "closest_broken_any_step": broken and min(r["max_scaled_err"] for r in broken),
        "headroom": chosen and chosen / worst["max_scaled_err"],  # limit / worst faithful
        "margin": closest and chosen and closest["step0_scaled_err"] / chosen,  # broken / limit
        "broken_with_every_token_equal": sum(r["agreed"] == r["generated"] for r in broken),
    }


# --- the docs block ----------------------------------------------------------------------


def _as_exported(rows: list[dict[str, Any]], family: str, fmt: str) -> str:
    """The largest error of the artifact as exported over its prompts (marked if a deviation)."""
    mine = [r for r in rows if (r["family"], r["format"], r["case"])
            == (family, fmt, "as-exported")]
    if not mine:
        return "-"
    cell = f"{max(r['max_scaled_err'] for r in mine):.1e}"
    return cell + " *" if mine[0]["faithful"] is None else cell


def markdown(results: dict[str, Any]) -> str:
    """The docs block: each artifact's largest error as exported, the smallest broken error
    per edit, the candidate table and the chosen ``scale_tol``."""
    rows, s = results["cases"], results["summary"]
    families = list(dict.fromkeys(r["family"] for r in rows))
    formats = [f.value for f in FORMATS if any(r["format"] == f.value for r in rows)]
    lines = ["Artifacts as exported: the largest error over every compared step of three "
             f"prompts ({', '.join(map(str, results['prompt_lengths']))} tokens, "
             f"{results['steps']} steps), as a share of the step's largest source logit:", "",
             "| family | " + " | ".join(formats) + " |", "|---|" + "--:|" * len(formats)]
    for family in families:
        lines.append(f"| {family} | " + " | ".join(
            _as_exported(rows, family, fmt) for fmt in formats) + " |")
    deviations = [r for r in rows if r["faithful"] is None]
    if deviations:
        lines.append("")
        for why in dict.fromkeys(r["deviation"] for r in deviations):
            mine = [r for r in deviations if r["deviation"] == why]
            lines.append(f"\\* Not counted as faithful: {why}; against a source set to "
                         "that activation the same artifacts are within "
                         f"{max(r['explained_scaled_err'] for r in mine):.1e}.")
    lines += ["", f"Broken ones (layer {LAYER} edited in the artifact, or in the source the "
              "faithful artifact is judged against): the smallest step-0 error over families "
              "and prompts, and the fewest tokens agreed:", "",
              "| edit | edited | " + " | ".join(formats) + " |",
              "|---|---|" + "--:|" * len(formats)]
    for edit, (_, _, why) in EDITS.items():
        for edited in ("artifact", "source"):
            cells = []
            for fmt in formats:
                mine = [r for r in rows if (r["format"], r["case"], r["edited"])
                        == (fmt, edit, edited)]
                cells.append("-" if not mine else
                             f"{min(r['step0_scaled_err'] for r in mine):.1e} "
                             f"({min(r['agreed'] for r in mine)}/{mine[0]['generated']})")
            if any(c != "-" for c in cells):
                lines.append(f"| {why} | {edited} | " + " | ".join(cells) + " |")
    lines += ["", "| scale_tol | false fails (of faithful) | false passes (of broken) "
              "| deviations passed |", "|--:|--:|--:|--:|"]
    for t in s["candidates"]:
        mark = " **chosen**" if t["scale_tol"] == s["chosen_scale_tol"] else ""
        lines.append(f"| {t['scale_tol']:g}{mark} | {t['false_fails']} of {s['faithful_cases']} "
                     f"| {t['false_passes']} of {s['broken_cases']} "
                     f"| {t['deviations_passed']} of {s['deviation_cases']} |")
    w, c = s["worst_faithful"], s["closest_broken"]
    lines.append("")
    if s["chosen_scale_tol"] is None:
        lines.append("- No candidate passes every faithful case.")
    else:
        lines.append(f"- **chosen**: {s['chosen_scale_tol']:g} of the scale, the smallest "
                     f"candidate that fails no faithful case; the worst faithful case "
                     f"{w['scaled_err']:.2g} ({w['family']} {w['format']}, "
                     f"{w['prompt_length']}-token prompt), {s['headroom']:.0f}x below it"
                     + (f"; the closest broken one {c['step0_scaled_err']:.2g} at step 0 "
                        f"({c['family']} {c['format']} {c['case']}, {c['edited']} edited), "
                        f"{s['margin']:.1f}x above it." if c else "."))
    if s["deviation_cases"] and s["chosen_if_deviations_passed"] != s["chosen_scale_tol"]:
        lenient = s["chosen_if_deviations_passed"]
        lines.append(f"- Passing the deviations too (worst {s['worst_deviation']:.2g}) takes "
                     + (f"{lenient:g}." if lenient else "no candidate."))
    invisible = [f"{e['edit']} on {e['family']} ({e['max_scaled_err']:.1e})"
                 for e in results["edit_effects"] if not e["visible"]]
    if invisible:
        lines.append(f"- Edits that move the source's own logits by no more than rounding, so "
                     f"no broken case: {', '.join(invisible)}.")
    failed = [f"{e['family']} {e['format']} ({e['error']})" for e in results["exports"]
              if "error" in e]
    if failed:
        lines.append(f"- Not in the corpus: {'; '.join(failed)}.")
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--work", type=Path, help="Keep (and reuse) the exports here.")
    parser.add_argument("--families", help="Only these, comma-separated (nothing written).")
    parser.add_argument("--quick", action="store_true", help="llama only (nothing written).")
    parser.add_argument("--readme", type=Path, help="Replace the block in this file (no run).")
    parser.add_argument("--quantized", action="store_true",
                        help="The int8-weight corpus (benchmarks/generation_policy_quantized.py).")
    args = parser.parse_args()
    from benchmarks import generation_policy_quantized as quantized

    if args.readme:
        if args.quantized:
            replace_block(args.readme, quantized.START, quantized.END,
                          quantized.markdown(json.loads(quantized.RESULTS.read_text())))
        else:
            replace_block(args.readme, START, END, markdown(json.loads(RESULTS.read_text())))
        return
    known = quantized.FAMILIES if args.quantized else FAMILIES
    families = ["llama"] if args.quick else (args.families.split(",") if args.families
                                             else list(known))
    if unknown := sorted(set(families) - set(FAMILIES)):
        raise SystemExit(f"--families: unknown {', '.join(unknown)} (from {', '.join(FAMILIES)})")
    started = time.perf_counter()
    with tempfile.TemporaryDirectory() as tmp:
        work = args.work or Path(tmp)
        work.mkdir(parents=True, exist_ok=True)
        if args.quantized:
            quantized.run(work, families)
            return
        rows, exports, effects = measure(work, families)
    results = {
        "machine": platform.processor() or platform.machine(),
        "versions": {**versions(), **{d: metadata.version(d) for d in ("transformers",)}},
        "families": families, "prompt_lengths": list(PROMPT_LENGTHS), "steps": STEPS,
        "max_seq": EXPORT.max_seq, "prefill": list(EXPORT.prefill),
        "edits": {k: why for k, (_, _, why) in EDITS.items()},
        "seconds": round(time.perf_counter() - started), "exports": exports,
        "edit_effects": effects,
        "summary": summary(rows), "cases": rows,
    }
    print(json.dumps(results["summary"], indent=1))
    print(markdown(results))
    if set(families) == set(FAMILIES):
        RESULTS.write_text(json.dumps(results, indent=1) + "\n")
        print(f"wrote {RESULTS}")


if __name__ == "__main__":
    main()
