"""Terminal rendering of reports as tables (rich)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from rich.table import Table
from rich.text import Text

if TYPE_CHECKING:
    from portkit.api import Inspection
    from portkit.validators.report import ConvertReport


def _num(x: float) -> str:
    return f"{x:.3g}"


def _short(text: str, limit: int = 160) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"


def convert_tables(report: ConvertReport) -> list[Table | Text]:
    """The summary line, the routes tried and the parity rows of a convert report."""
    verdict = {0: "[green]PASSED[/]", 1: "[red]PARITY FAILED[/]", 3: "[red]NOT CONVERTED[/]"}
    if not report.validated and report.artifact is not None:
        head = "[yellow]CONVERTED, NOT VALIDATED[/] (--no-validate)"
    else:
        head = verdict.get(int(report.exit_code), str(report.exit_code))
    art = report.artifact
    where = f" -> {art.path} ({art.size_bytes:,} bytes)" if art else ""
    out: list[Table | Text] = [
        Text.from_markup(f"{head}  {report.source.path} [{report.source.format}]{where}  "
                         f"in {report.seconds:.1f} s (exit {int(report.exit_code)})")
    ]
    routes = Table(title="Routes tried", title_justify="left")
    for col in ("route", "converted", "parity", "seconds", "note"):
        routes.add_column(col)
    for a in report.routes_tried:
        parity = "-" if not a.converted or not report.validated else ("pass" if a.passed else "FAIL")
        note = a.error or "; ".join(h.detail for h in a.hops)
        routes.add_row(a.route, "yes" if a.converted else "no", parity,
                       f"{sum(h.seconds for h in a.hops):.1f}", _short(note))
    out.append(routes)
    if report.checks:
        tol = report.tolerance
        parity = Table(title=f"Parity against the source (atol {tol.atol:g}, rtol {tol.rtol:g})",
                       title_justify="left")
        for col in ("runtime", "device", "output", "shape", "max abs", "max rel", "cosine",
                    "min atol", "layout", "result"):
            parity.add_column(col, justify="right" if col.startswith(("max", "min", "cos")) else "left")
        for c in report.checks:
            if c.error:
                parity.add_row(c.runtime, c.device, "-", "-", "-", "-", "-", "-", "-",
                               f"[red]ERROR[/] {c.error}")
            for o in c.outputs:
                notes = [f"in {n}" for n in c.input_layouts]
                notes += [f"out {o.layout}"] if o.layout else []
                layout = "; ".join(notes) or "same"
                parity.add_row(c.runtime, c.device, o.name, "x".join(map(str, o.shape)),
                               _num(o.max_abs_err), _num(o.max_rel_err), f"{o.cosine:.6f}",
                               _num(o.min_atol_to_pass), layout,
                               "[green]pass[/]" if o.passed else "[red]FAIL[/]")
        out.append(parity)
    return out


def inspect_tables(ins: Inspection, top: int = 15) -> list[Table | Text]:
    """Format, size, inputs/outputs and the most frequent ops of a model."""
    info = ins.info
    out: list[Table | Text] = [
        Text(f"{ins.path}: {info.format.value}, {ins.size_bytes:,} bytes")
    ]
    io = Table(title="Inputs and outputs", title_justify="left")
    for col in ("kind", "name", "shape", "dtype"):
        io.add_column(col)
    for kind, specs in (("input", info.inputs), ("output", info.outputs)):
        for s in specs:
            shape = "?" if s.shape is None else "x".join("?" if d is None else str(d) for d in s.shape)
            io.add_row(kind, s.name, shape or "scalar", s.dtype or "?")
    out.append(io)
    if info.op_counts:
        ops = Table(title=f"Ops ({sum(info.op_counts.values())} in all, "
                          f"{len(info.op_counts)} kinds)", title_justify="left")
        ops.add_column("op")
        ops.add_column("count", justify="right")
        for name, n in list(info.op_counts.items())[:top]:
            ops.add_row(name, str(n))
        out.append(ops)
    return out
