"""A language model's generation check in the terminal: the verdict line, each step compared
(both tokens, the logits' error against their scale, cosine), the continuations side by side,
and the cache's drift per layer."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from rich.markup import escape
from rich.table import Table
from rich.text import Text

from portkit.cli.render.words import num

if TYPE_CHECKING:
    from portkit.results import BenchReport, GenerationCheck


def generation_tables(g: GenerationCheck) -> list[Table | Text]:
    """The check's verdict, its steps table, the texts and the cache drift."""
    mark = "[green]pass[/]" if g.passed else "[red]FAIL[/]"
    out: list[Table | Text] = [Text.from_markup(
        f"Generation on {g.runtime}/{g.device}, its own cache: {mark}: {escape(g.verdict)}")]
    if g.error or not g.steps:
        return out
    out.append(Text(f"Policy {g.policy}; prompt {len(g.prompt)} tokens"
                    + (f": {g.prompt_text!r}" if g.prompt_text else "")))
    steps = Table(title=f"Steps compared ({len(g.steps)} of {g.generated})", title_justify="left")
    for col in ("step", "source", "artifact", "max abs err", "of scale", "cosine", "ok"):
        steps.add_column(col, justify="left" if col in ("source", "artifact", "ok") else "right")
    for s in g.steps:
        steps.add_row(str(s.index), escape(_token(s.source_token, s.source_text)),
                      escape(_token(s.artifact_token, s.artifact_text)), num(s.max_abs_err),
                      f"{num(s.scaled_err)} of {num(s.scale)}", f"{s.cosine:.6f}",
                      "yes" if s.passed else "NO")
    out.append(steps)
    if g.source_text or g.artifact_text:
        texts = Table(title="Continuations", title_justify="left")
        texts.add_column("side")
        texts.add_column("text")
        texts.add_row("source", escape(g.source_text))
        # fed the source's text, the artifact's tokens are its pick at each step of it
        texts.add_row(f"{g.runtime}'s pick at each step" if g.forced else g.runtime,
                      escape(g.artifact_text))
        out.append(texts)
    if g.cache:
        drift = Table(title="Cache at the end, per layer (keys and values)", title_justify="left")
        for col in ("layer", "positions", "max abs err", "of scale"):
            drift.add_column(col, justify="right")
        for d in g.cache:
            drift.add_row(str(d.layer), str(d.positions), num(d.max_abs_err), num(d.scaled_err))
        out.append(drift)
    if g.decode_ms:
        out.append(Text(f"Artifact: prefill {g.prefill_seconds * 1000:.1f} ms, decode "
                        f"{g.decode_ms:.2f} ms/token (median)"))
    return out


def _token(token: int, text: str) -> str:
    return f"{token} {text!r}" if text else str(token)


def generation_table(report: BenchReport) -> Table:
    """``bench --generate``: tokens per second per model, with the decode ratio against the
    first row."""
    rows = report.generation
    lengths = sorted({n for t in rows for n, _ in t.prefill})
    table = Table(title=f"Generating {rows[0].steps} tokens, medians of {rows[0].turns} turns "
                        "(tok/s = tokens per second; ratio = decode tok/s / the first row's)",
                  title_justify="left")
    for col in ("model", "runtime", *(f"prefill {n} tok/s" for n in lengths), "TTFT ms",
                "decode tok/s", "ratio", "RSS MB", "size MB"):
        table.add_column(col, justify="left" if col in ("model", "runtime") else "right")
    first = rows[0].decode_tokens_per_s or 1.0
    for t in rows:
        rates = dict(t.prefill)
        table.add_row(Path(t.path).name, t.runtime,
                      *(f"{rates[n]:,.0f}" if n in rates else "-" for n in lengths),
                      f"{t.ttft_ms:.1f}", f"{t.decode_tokens_per_s:,.1f}",
                      f"{t.decode_tokens_per_s / first:.2f}x", f"{t.peak_rss_mb:.0f}",
                      f"{t.size_bytes / 1e6:.1f}")
    return table
