"""``portkit debug`` in the terminal: the first divergence and the worst tensors."""

from __future__ import annotations

from typing import TYPE_CHECKING

from rich.markup import escape
from rich.table import Table
from rich.text import Text

from portkit.cli.render.parity import policy_line
from portkit.cli.render.words import described, num

if TYPE_CHECKING:
    from portkit.debug.report import DebugReport
    from portkit.results import Divergence, Located


def divergence_line(d: Divergence) -> str:
    """``First divergence: source conv2d (Conv) -> artifact node_Conv_3 (Conv): max abs err
    0.0092 = 0.0067 of its scale, cosine 0.999995; inputs agree: relu``."""
    return (f"First divergence: source {d.source_node} ({d.op_type}, tensor {d.source_tensor}) "
            f"-> artifact {d.artifact_node} ({d.artifact_op_type}, tensor {d.artifact_tensor}): "
            f"max abs err {num(d.max_abs_err)} = {num(d.scaled_err)} of its scale, cosine "
            f"{d.cosine:.6f}; its inputs agree: {', '.join(d.last_agreeing) or '(none)'}")


def where_line(where: Located) -> Text:
    """After a parity failure: the first divergence ``convert``/``validate`` found, or the
    ``portkit debug`` command to run."""
    if not where.searched:
        line = f"Where it first goes wrong: run {where.command}"
    elif where.error:
        line = f"Where it first goes wrong: not found here ({where.error}); run {where.command}"
    elif where.divergence is None:
        line = ("Every intermediate tensor matched agrees on the first input; more with "
                f"{where.command}")
    else:
        line = f"{divergence_line(where.divergence)} (more: {where.command})"
    return Text(line)


def debug_tables(report: DebugReport, worst: int = 10) -> list[Table | Text]:
    """The verdict, the first divergence, then the worst matched nodes (and each hop's)."""
    first = report.first_divergence
    head = "[red]DIVERGED[/]" if first is not None else "[green]NO DIVERGENCE[/]"
    out: list[Table | Text] = [Text.from_markup(
        f"{head}  {described(report.artifact)} against {described(report.source)} in "
        f"{report.seconds:.1f} s (exit {int(report.exit_code)}; {policy_line(report.tolerance)})"),
        Text(f"Matched {report.matched} source tensors; unmatched: {report.unmatched_source} "
             f"source, {report.unmatched_artifact} artifact; workers' peak RSS "
             f"{report.peak_rss_mb:.0f} MB")]
    if first is not None:
        table = Table(title="First divergence", title_justify="left")
        for col in ("", "node", "op", "tensor"):
            table.add_column(col)
        table.add_row("source", escape(first.source_node), escape(first.op_type),
                      escape(first.source_tensor))
        table.add_row("artifact", escape(first.artifact_node), escape(first.artifact_op_type),
                      escape(first.artifact_tensor))
        out.append(table)
        out.append(Text(f"max abs err {num(first.max_abs_err)} = {num(first.scaled_err)} of "
                        f"its scale, cosine {first.cosine:.6f}; last agreeing inputs: "
                        f"{', '.join(first.last_agreeing) or '(none)'}"))
    matched = sorted((n for n in report.nodes if n.passed is not None),
                     key=lambda n: -n.scaled_err)[:worst]
    nodes = Table(title=f"Worst matched nodes (top {len(matched)} by err/scale)",
                  title_justify="left")
    for col in ("source node", "op", "artifact node", "artifact op", "by", "layout",
                "max abs", "err/scale", "cosine", "result"):
        nodes.add_column(col, justify="right" if col in ("max abs", "err/scale", "cosine")
                         else "left")
    for n in matched:
        nodes.add_row(escape(n.source_node), escape(n.op_type), escape(n.artifact_node or "-"),
                      escape(n.artifact_op_type or "-"), n.matched_by, n.layout or "same",
                      num(n.max_abs_err), num(n.scaled_err), f"{n.cosine:.6f}",
                      "[green]pass[/]" if n.passed else "[red]FAIL[/]")
    out.append(nodes)
    for i, hop in enumerate(report.hops, 1):
        verdict = "diverged" if hop.first_divergence else "agrees"
        out.append(Text.from_markup(f"[bold]Hop {i}[/]: {described(hop.artifact)} against "
                                    f"{described(hop.source)}: {verdict}"))
        if hop.first_divergence is not None:
            out.append(Text(divergence_line(hop.first_divergence)))
    return out


