"""``portkit validate``, ``bench`` and ``check`` in the terminal, and per-op profiles."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from rich.markup import escape
from rich.table import Table
from rich.text import Text

from portkit.cli.ci import failure_lines
from portkit.cli.render.debug import where_line
from portkit.cli.render.generation import generation_tables
from portkit.cli.render.parity import (
    accuracy_head,
    accuracy_line,
    constants_line,
    dynamic_line,
    notes_lines,
    parity_table,
    steps_line,
)
from portkit.cli.render.words import described, short

if TYPE_CHECKING:
    from portkit.gate import CheckReport
    from portkit.results import (
        BenchReport,
        OpTime,
        ValidateReport,
    )


def validate_tables(report: ValidateReport) -> list[Table | Text]:
    """The verdict line and the parity rows of ``portkit validate``."""
    head = accuracy_head(report) or (
        "[green]PASSED[/]" if report.passed else "[red]PARITY FAILED[/]")
    ran = f" (run on {escape(report.reference_runtime)})" if report.reference_runtime else ""
    out: list[Table | Text] = [Text.from_markup(
        f"{head}  {described(report.artifact)} against {described(report.reference)}{ran} in "
        f"{report.seconds:.1f} s (exit {int(report.exit_code)})")]
    if report.constants:
        out.append(constants_line(report.constants))
    if report.state:
        out.append(steps_line(report.steps, report.state))
    if any(s.dims for s in report.inputs):
        out.append(dynamic_line(report.inputs, report.checks))
    out += notes_lines(report.notes)
    if report.generation is not None:
        return out + generation_tables(report.generation)
    out.append(parity_table(report.checks, report.tolerance, report.reference_runtime))
    out += [accuracy_line(report.accuracy)] if report.accuracy is not None else []
    out += op_tables(report.profile, Path(report.artifact.path).name)
    return out + ([where_line(report.where)] if report.where is not None else [])


PROFILE_ROWS = 15


def profile_tables(report: BenchReport) -> list[Table]:
    """``bench --profile``: per row, its ops and op types, worst first."""
    return [t for row in report.rows for t in op_tables(
        row.latency.profile, f"{Path(row.path).name} on {row.latency.runtime}"
        + (f" at {row.inputs}" if row.inputs else ""))]


def op_tables(ops: tuple[OpTime, ...], where: str) -> list[Table]:
    """The worst ``PROFILE_ROWS`` ops, and every op type with its summed time (none when
    ``ops`` is empty)."""
    from portkit.profiles import op_kinds

    if not ops:
        return []
    total = sum(o.ms for o in ops)
    shown = ops[:PROFILE_ROWS]
    rest = f"; the {len(ops) - len(shown)} others {1 - sum(o.share for o in shown):.1%}" \
        if len(ops) > len(shown) else ""
    tables = []
    for title, rows, first in (
            (f"Time per op, {escape(where)}: {total:.3f} ms per run summed over "
             f"{len(ops)} ops{rest}", shown, "op"),
            (f"Time per op type, {escape(where)}", op_kinds(ops), "ops")):
        table = Table(title=title, title_justify="left")
        for col in (first, "type", "ms", "share", "calls", "run by"):
            table.add_column(col, justify="right" if col in ("ms", "share", "calls") else "left",
                             no_wrap=col != "type")
        for o in rows:
            table.add_row(escape(o.op), escape(o.kind), f"{o.ms:.3f}", f"{o.share:.1%}",
                          f"{o.calls:g}", _provider(o))
        tables.append(table)
    return tables


def _provider(op: OpTime) -> str:
    """Green for an accelerator, yellow for TFLite's builtin kernels (XNNPACK left it)."""
    style = "green" if op.delegated else "yellow" if op.provider == "builtin" else ""
    name = escape(op.provider or "-")
    return f"[{style}]{name}[/]" if style else name


def bench_table(report: BenchReport) -> Table:
    """Latency per model and runtime, with p50 ratios against the first row."""
    table = Table(title="Latency in ms (cold = load + first run; per s = samples per second; "
                        "ratio = p50 / the first row's at that size)", title_justify="left")
    sized = any(row.inputs for row in report.rows)  # --shape: a row per size
    for col in ("model", "runtime", *(("inputs",) if sized else ()), "threads", "batch", "cold",
                "runs", "p50", "p90", "p99", "mean", "CV", "per s", "RSS MB", "ratio"):
        table.add_column(col, justify="left" if col in ("model", "runtime", "inputs")
                         else "right", no_wrap=True)
    for row, ratio in zip(report.rows, report.ratios()):
        t = row.latency
        table.add_row(Path(row.path).name, t.runtime, *((row.inputs,) if sized else ()),
                      str(t.threads or "default"), str(t.batch),
                      f"{t.cold_start_ms:.1f}", str(t.runs), f"{t.p50_ms:.3f}",
                      f"{t.p90_ms:.3f}", f"{t.p99_ms:.3f}", f"{t.mean_ms:.3f}", f"{t.cv:.1%}",
                      f"{t.throughput:,.0f}", f"{t.peak_rss_mb:.0f}", f"{ratio:.2f}x")
    return table


def check_tables(report: CheckReport) -> list[Table | Text]:
    """The verdict line and one row per case of ``portkit check``."""
    failed = [r for r in report.results if not r.passed]
    head = "[green]PASSED[/]" if report.passed else "[red]FAILED[/]"
    table = Table(title="Cases", title_justify="left")
    for col in ("model", "target", "runtime", "result", "p50 ms", "route", "why"):
        table.add_column(col)
    for r in report.results:
        table.add_row(r.case.model, r.case.target, r.case.runtime,
                      "[green]pass[/]" if r.passed else "[red]FAIL[/]",
                      f"{r.latency.p50_ms:.3g}" if r.latency else "-", escape(r.route or "-"),
                      escape(short("; ".join(failure_lines(r)))) if not r.passed else "")
    return [Text.from_markup(f"{head}  {len(report.results) - len(failed)}/{len(report.results)} "
                             f"cases passed in {report.seconds:.1f} s (exit {report.exit_code})"),
            table]


