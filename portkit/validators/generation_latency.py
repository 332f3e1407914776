"""``portkit bench --generate N``: language models timed as apps use them. Each model (the
source directory and its artifacts) is loaded once in a warm worker of its own; then, in turns,
each generates N tokens after a prompt of each ``--prefill`` length, so a busy spell of the
machine falls on every model alike. An untimed turn goes first: eager PyTorch takes a few
calls per new shape to reach its pace (a 8-token prefill of a tiny Llama: 238 ms on the first
call, 1.6 ms by the fifth). Reported per model: prefill tokens/s per prompt length,
time to the first token, decode tokens/s (medians over the turns), peak RSS and size.
"""

from __future__ import annotations

import statistics
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from portkit.formats import Format, sniff
from portkit.options.generation import Export
from portkit.results.files import FileInfo
from portkit.results.generation import GenerationTiming
from portkit.runtimes.context import RunContext
from portkit.runtimes.decoding import Generated, time_generation
from portkit.validators.generation import RUNTIMES

TURNS = 3
WARMUP = 1  # untimed turns before them


PROMPT_IDS = (3, 256)  # seeded prompt ids: past the usual special tokens, in every vocabulary


def bench_generation(models: Sequence[Path], steps: int, export: Export, ctx: RunContext,
                     seed: int = 0) -> tuple[GenerationTiming, ...]:
    """Time each of ``models`` generating ``steps`` tokens after a seeded prompt of each of
    ``export.prefill``'s lengths, in ``TURNS`` turns (see the module's docstring).

    Raises:
        PortkitError: A model can't be read or can't generate.
    """
    rng = np.random.default_rng(seed)
    prompts = [[int(i) for i in rng.integers(*PROMPT_IDS, n)] for n in export.prefill]
    paths = [Path(m).absolute() for m in models]
    formats = [sniff(p) for p in paths]
    turns: list[list[list[Generated]]] = [[] for _ in paths]
    peaks = [0.0] * len(paths)
    for turn in range(WARMUP + TURNS):
        for i, (path, fmt) in enumerate(zip(paths, formats, strict=True)):
            label = f"Turn {turn - WARMUP + 1}/{TURNS}" if turn >= WARMUP else "Warm-up turn"
            with ctx.progress(f"{label}: {path.name} generating {steps} tokens"):
                runs, peaks[i] = ctx.pool.call(
                    f"bench-generate-{i}", time_generation, timeout=ctx.timeout,
                    what=f"{path.name} generating", path=str(path), fmt=fmt, prompts=prompts,
                    steps=steps, export=export)
            if turn >= WARMUP:
                turns[i].append(runs)
    return tuple(_timing(p, f, t, peak, steps)
                 for p, f, t, peak in zip(paths, formats, turns, peaks, strict=True))


def _timing(path: Path, fmt: Format, turns: list[list[Generated]], peak: float,
            steps: int) -> GenerationTiming:
    prefill = tuple(
        (len(turns[0][k].prompt),
         len(turns[0][k].prompt) / statistics.median(t[k].prefill_seconds for t in turns))
        for k in range(len(turns[0])))
    decode = statistics.median(s for t in turns for g in t for s in g.decode_seconds)
    ttft = statistics.median(t[0].prefill_seconds for t in turns)
    return GenerationTiming(
        path=str(path), format=fmt.value, runtime=RUNTIMES[fmt], prefill=prefill,
        ttft_ms=1000 * ttft, decode_tokens_per_s=1 / decode if decode else 0.0, steps=steps,
        turns=len(turns), peak_rss_mb=peak, size_bytes=FileInfo.of(path, fmt.value).size_bytes)
