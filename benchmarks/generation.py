"""Language models on the phone's runtimes: each artifact portkit makes of a causal-LM directory
(ONNX with ``past_key_values``, TFLite with prefill/decode signatures, an ExecuTorch program
with a static cache), converted with the defaults, judged by generating, then timed generating
beside the eager source.

    python -m benchmarks.generation                      # the tiny families (seconds each)
    python -m benchmarks.generation --models smollm-135m # a SmolLM-135M-shaped model (random)
    python -m benchmarks.generation --keep kept          # keep the directories and artifacts
    python -m benchmarks.generation --retime kept        # only the timing, on kept artifacts

For each model: ``portkit.api.convert`` to each target (fresh workers; the report's converter
time, whole time, and the generation verdict: tokens agreed of 16), then ``portkit.api.bench``
with ``generate=64`` on the directory and the artifacts that passed: each loaded once in a
warm worker of its own, then in three turns each generates 64 tokens after a prompt of 8 and of
32 seeded ids (prefill tokens/s per length, time to the first token at 8, decode tokens/s:
medians over the turns; peak RSS of the worker; size on disk). No peer makes these artifacts
and checks them in one step, so the ratios are against the eager source. Results merge into
``benchmarks/results/generation.json`` model by model.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import tempfile
import time
from pathlib import Path
from typing import Any

from benchmarks.run import machine, measured_on, merge_result
from portkit import api
from portkit.results import versions

RESULTS = Path(__file__).with_name("results") / "generation.json"
START, END = "<!-- generation:start -->", "<!-- generation:end -->"
TARGETS = ("onnx", "tflite", "executorch")
SUFFIXES = {"onnx": "onnx", "tflite": "tflite", "executorch": "pte"}
STEPS = 64
PREFILL = "8,32"
MAX_SEQ = 128
# name -> (family, config overrides): the tiny fixtures, and one model of a real small LM's shape
MODELS: dict[str, tuple[str, dict[str, Any]]] = {
    "llama-tiny": ("llama", {}),
    "qwen3-tiny": ("qwen3", {}),
    "gemma3-tiny": ("gemma3", {}),
    "phi3-tiny": ("phi3", {}),
    "smollm-135m": ("llama", dict(vocab_size=49152, hidden_size=576, intermediate_size=1536,
                                  num_hidden_layers=30, num_attention_heads=9,
                                  num_key_value_heads=3, initializer_range=0.02,
                                  tie_word_embeddings=True)),
}
DEFAULT = ("llama-tiny", "qwen3-tiny", "gemma3-tiny", "phi3-tiny")


def build(name: str, folder: Path) -> Path:
    """The model ``name`` saved as a directory (random weights, seed 0)."""
    import torch
    import transformers

    from portkit.fixtures.decoders import config, save_tokenizer

    family, overrides = MODELS[name]
    torch.manual_seed(0)
    model = transformers.AutoModelForCausalLM.from_config(config(family, **overrides),
                                                          dtype=torch.float32).eval()
    model.save_pretrained(folder, safe_serialization=True)
    if model.config.vocab_size >= 256:
        save_tokenizer(folder)
    return folder


def retime(name: str, work: Path) -> dict[str, Any]:
    """Time ``name``'s kept directory and artifacts again (its conversions as last recorded)."""
    result = next(m for m in json.loads(RESULTS.read_text())["models"] if m["name"] == name)
    passed = [work / name] + [work / f"{name}.{SUFFIXES[t]}" for t, c in
                              result["conversions"].items() if c.get("exit_code") == 0]
    return {**result, **timed(passed)}


def timed(passed: list[Path]) -> dict[str, Any]:
    """``passed`` generating in turns (``api.bench``), with the machine's load around it."""
    load = os.getloadavg()[0]
    bench = api.bench(passed, generate=STEPS, prefill=PREFILL, max_seq=MAX_SEQ)
    return {"date": time.strftime("%Y-%m-%d"), "machine": machine(), "versions": versions(),
            "load_before": load, "load_after": os.getloadavg()[0],
            "timings": [json.loads(json.dumps(t.__dict__)) for t in bench.generation]}


def run(name: str, work: Path) -> dict[str, Any]:
    """Convert ``name`` to every target, then time the source and what passed."""
    src = work / name
    if not (src / "config.json").exists():
        build(name, src)
    conversions: dict[str, Any] = {}
    passed = [src]
    for target in TARGETS:
        out = work / f"{name}.{SUFFIXES[target]}"
        started = time.perf_counter()
        try:
            report = api.convert(src, target, out, max_seq=MAX_SEQ, prefill=PREFILL)
        except Exception as e:  # noqa: BLE001 - a refusal is a result here
            conversions[target] = {"error": f"{type(e).__name__}: {e}"[:300]}
            continue
        g = report.generation
        conversions[target] = {
            "exit_code": int(report.exit_code), "seconds": time.perf_counter() - started,
            "converter_seconds": report.converter_seconds, "route": report.route_name,
            "agreed": g.agreed if g else None, "generated": g.generated if g else None,
            "max_scaled_err": max((s.scaled_err for s in g.steps), default=0.0) if g else None,
            "size_bytes": report.artifact.size_bytes if report.artifact else None}
        if report.exit_code == 0:
            passed.append(out)
    return {"name": name, "steps": STEPS, "conversions": conversions, **timed(passed)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--models", nargs="+", default=list(DEFAULT), choices=list(MODELS))
    parser.add_argument("--keep", type=Path, help="Keep directories and artifacts here.")
    parser.add_argument("--retime", type=Path, help="Only time the artifacts kept here.")
    args = parser.parse_args()
    if args.retime is not None:
        for name in args.models:
            merge_result(RESULTS, retime(name, args.retime))
        print(markdown(RESULTS))
        return
    work = args.keep or Path(tempfile.mkdtemp(prefix="portkit-generation-"))
    work.mkdir(parents=True, exist_ok=True)
    try:
        for name in args.models:
            result = run(name, work)
            merge_result(RESULTS, result)
            print(json.dumps(result["conversions"], indent=1))
    finally:
        if args.keep is None:
            shutil.rmtree(work, ignore_errors=True)
    print(markdown(RESULTS))


_RUNTIME = {"transformers": "eager (source)", "onnxruntime": "ONNX Runtime",
            "tflite": "LiteRT", "executorch": "ExecuTorch"}


def markdown(path: Path) -> str:
    """The conversions and the generation timings, one table each."""
    models = json.loads(path.read_text())["models"]
    lines = ["| model | target | exit | tokens agreed | max error / scale | converter s | "
             "total s | size MB |", "|---|---|---|---|---|---|---|---|"]
    for m in models:
        for target, c in m["conversions"].items():
            if "error" in c:
                lines.append(f"| {m['name']} | {target} | - | {c['error'][:80]} | | | | |")
                continue
            lines.append(
                f"| {m['name']} | {target} | {c['exit_code']} | {c['agreed']}/{c['generated']} "
                f"| {c['max_scaled_err']:.1e} | {c['converter_seconds']:.1f} | "
                f"{c['seconds']:.1f} | {c['size_bytes'] / 1e6:.1f} |")
    lines += ["", "| model | runtime | prefill 8 tok/s | prefill 32 tok/s | TTFT ms | "
              "decode tok/s | x eager | RSS MB |", "|---|---|---|---|---|---|---|---|"]
    for m in models:
        eager = next((t["decode_tokens_per_s"] for t in m["timings"]
                      if t["runtime"] == "transformers"), None)
        for t in m["timings"]:
            rates = {n: r for n, r in t["prefill"]}
            ratio = f"{t['decode_tokens_per_s'] / eager:.2f}x" if eager else "-"
            lines.append(
                f"| {m['name']} | {_RUNTIME.get(t['runtime'], t['runtime'])} | "
                f"{rates.get(8, 0):,.0f} | {rates.get(32, 0):,.0f} | {t['ttft_ms']:.1f} | "
                f"{t['decode_tokens_per_s']:,.0f} | {ratio} | {t['peak_rss_mb']:.0f} |")
    how = (f"each model generating {models[0]['steps']} tokens in 3 turns, medians; "
           "prompts of 8 and 32 seeded ids")
    return "\n".join(lines) + "\n" + measured_on(models, how) + "\n"


if __name__ == "__main__":
    main()
