"""What a model file is, in the terminal: ``portkit inspect`` and the mobile report."""

from __future__ import annotations

from typing import TYPE_CHECKING

from rich.table import Table
from rich.text import Text

if TYPE_CHECKING:
    from portkit.formats.pte import ProgramReport
    from portkit.formats.tflite import MobileReport
    from portkit.results import (
        Inspection,
    )


def mobile_tables(m: MobileReport) -> list[Table | Text]:
    """The mobile report of a ``.tflite``: runtime needs, precision and tensors."""
    runs = ("[green]yes[/]" if m.builtin_only else
            "[red]no[/]: needs " + ", ".join(
                ([f"Flex ops {', '.join(m.flex_ops)}"] if m.flex_ops else [])
                + ([f"custom ops {', '.join(m.custom_ops)}"] if m.custom_ops else [])))
    out: list[Table | Text] = [Text.from_markup(
        f"Mobile: {m.size_bytes:,} bytes, {m.precision}, {sum(m.op_counts.values())} ops; "
        f"runs on the builtin interpreter: {runs}")]
    if m.signatures:
        each = (f"{s.name} ({', '.join(f'{t.name} {_shape(t.shape)}' for t in s.inputs)})"
                for s in m.signatures)
        out.append(Text(f"Signatures ({len(m.signatures)}; the table shows the first's "
                        f"tensors): {', '.join(each)}"))
    io = Table(title="TFLite inputs and outputs", title_justify="left")
    for col in ("kind", "name", "shape", "resizable", "dtype", "layout", "scale", "zero point"):
        io.add_column(col)
    for kind, tensors in (("input", m.inputs), ("output", m.outputs)):
        for t in tensors:
            io.add_row(kind, t.name, _shape(t.shape), "yes" if t.resizable else "no",
                       t.dtype, t.layout or "-", ", ".join(f"{x:.6g}" for x in t.scale[:4]) or "-",
                       ", ".join(str(x) for x in t.zero_point[:4]) or "-")
    out.append(io)
    return out


def _shape(shape: tuple[int, ...]) -> str:
    """``1x?x128``: a TFLite shape, ``?`` where its signature leaves a dimension free."""
    return "x".join("?" if d < 0 else str(d) for d in shape) or "scalar"


def program_tables(p: ProgramReport, top: int = 15) -> list[Table | Text]:
    """A ``.pte``'s delegation: the share of ops its delegates run and the ops left out."""
    backends = ", ".join(p.backends) or "none"
    out: list[Table | Text] = [Text(
        f"ExecuTorch: methods {', '.join(p.methods)}; {p.delegated_share:.0%} of forward's ops "
        f"delegated ({p.delegated_nodes} node(s) in {p.delegate_calls} call(s) to {backends}), "
        f"{sum(p.outside.values())} left to portable kernels"
        + ("; bounded inputs take any size up to their bounds (<=N)" if p.bounded else ""))]
    if p.outside:
        left = Table(title="Ops outside the delegate (portable kernels)", title_justify="left")
        left.add_column("op")
        left.add_column("count", justify="right")
        for name, n in list(p.outside.items())[:top]:
            left.add_row(name, str(n))
        out.append(left)
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
            dims = s.dims or (None,) * len(s.shape or ())
            shape = "?" if s.shape is None else "x".join(
                f"<={x.hi}" if x is not None and x.hi else "?" if d is None else str(d)
                for d, x in zip(s.shape, dims))
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
    if info.mobile is not None:
        out.extend(mobile_tables(info.mobile))
    if info.executorch is not None:
        out.extend(program_tables(info.executorch))
    return out


