"""What convert and validate both print: the parity table and its policy, the dynamic dimensions
and those fixed, notes, constants, steps and --eval's accuracy."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from rich.markup import escape
from rich.table import Table
from rich.text import Text

from portkit.cli.render.words import num, share, short

if TYPE_CHECKING:
    from portkit.options import Scalar
    from portkit.policies import Tolerance
    from portkit.results import (
        Accuracy,
        Check,
        ConvertReport,
        FixedDims,
        ValidateReport,
    )
    from portkit.specs import TensorSpec


def constants_line(constants: dict[str, Scalar], how: str = "") -> Text:
    """``Constants (--const): sr=16000 ...``: inputs the artifact has bound, fed to the source."""
    from portkit.options import shown

    return Text(f"Constants (--const): {shown(constants)}; the artifact doesn't take them, the source ran "
                f"with them as the reference{how}")


def steps_line(steps: int, state: dict[str, str]) -> Text:
    """``Stateful (--steps 3): each call fed the state the last returned: h <- hn``."""
    return Text(f"Stateful (--steps {steps}): each sample is {steps} calls, each fed the state "
                f"the previous call returned (the artifact its own): "
                + ", ".join(f"{i} <- {o}" for i, o in state.items()))


def dynamic_line(inputs: tuple[TensorSpec, ...], checks: tuple[Check, ...]) -> Text:
    """``Dynamic: batch 1..8, seq 2..128 (ids: batchxseq); validated at ids 1x16, ids 3x33``."""
    dims = {d.name: d for s in inputs for d in s.dynamic}
    which = "; ".join(f"{s.name}: " + "x".join(d.name if d else str(n) for n, d in
                                              zip(s.shape or (), s.dims)) for s in inputs if s.dims)
    sizes = list(dict.fromkeys(c.size for c in checks if c.size))
    at = f"; validated at {' | '.join(sizes)}" if sizes else ""
    return Text(f"Dynamic dimensions: {', '.join(d.describe() for d in dims.values())} "
                f"({which}){at}")


def fixed_line(fixed: FixedDims) -> Text:
    """``Fixed: batch at 1 (no route kept it dynamic: ...); --dim batch=1..64 requires it``."""
    return Text(f"Fixed: {fixed.describe()} (the example size), as no route shipped "
                f"{'it' if len(fixed.sizes) == 1 else 'them'} dynamic: "
                f"{short('; '.join(fixed.refusals), 300)}. {fixed.require} requires "
                f"{'it' if len(fixed.sizes) == 1 else 'them'} dynamic (exit 3 where no route "
                "can)")


def notes_lines(notes: tuple[str, ...]) -> list[Text]:
    """One ``Note: ...`` line per thing portkit decided for the user."""
    return [Text(f"Note: {n}") for n in notes]


def parity_table(checks: tuple[Check, ...], tol: Tolerance, reference: str | None = None) -> Table:
    """One row per output per runtime/device; skipped devices say why. The title names the
    runtime the source ran on (``reference``), when known."""
    topk = (tol.min_top1 is not None or tol.min_top5 is not None or tol.samples > 1) and any(
        o.top1 is not None for c in checks for o in c.outputs)
    guessed = any(o.kind_why != "set by the user" for c in checks for o in c.outputs)
    note = "; kind* guessed, set with --output-kind NAME=KIND" if guessed else ""
    ran = f"run on {reference}; " if reference else ""
    parity = Table(title=f"Parity against the source ({ran}{policy_line(tol)}{note})",
                   title_justify="left")
    sized = any(c.size for c in checks)  # a dynamic model: a row per size it ran at
    cols = ["runtime", "device"] + (["inputs"] if sized else []) + ["output", "shape", "kind", "max abs", "scale", "err/scale",
            "cosine"] + (["top-1", "top-5"] if topk else []) + ["layout", "result"]
    for col in cols:
        parity.add_column(col, justify="right" if col.startswith(
            ("max", "scale", "err", "cos", "top")) else "left")
    for c in checks:
        if c.skipped:
            parity.add_row(c.runtime, c.device, *["-"] * (len(cols) - 3),
                           f"[yellow]skipped[/] {c.skipped}")
        elif c.error:
            parity.add_row(c.runtime, c.device, *["-"] * (len(cols) - 3),
                           f"[red]ERROR[/] {escape(c.error)}")
        for o in c.outputs:
            notes = [f"in {n}" for n in c.input_layouts]
            notes += [f"out {o.layout}"] if o.layout else []
            result = "[green]pass[/]" if o.passed else f"[red]FAIL[/] {', '.join(o.failed)}"
            kind = o.kind + ("" if o.kind_why == "set by the user" else "*")
            row = [c.runtime, c.device, *([c.size] if sized else []), o.name,
                   "x".join(map(str, o.shape)), kind,
                   num(o.max_abs_err), num(o.scale), num(o.scaled_err), f"{o.cosine:.6f}"]
            if topk:
                row += [share(o.top1), share(o.top5)]
            parity.add_row(*row, "; ".join(notes) or "same", result)
    return parity


def accuracy_head(report: ConvertReport | ValidateReport) -> str | None:
    """``ACCURACY FAILED`` when only ``--max-accuracy-drop`` failed the artifact, else None."""
    acc = report.accuracy
    if acc is None or acc.passed or not all(c.passed or c.skipped for c in report.checks):
        return None
    return "[red]ACCURACY FAILED[/]"


def accuracy_line(acc: Accuracy) -> Text:
    """``Accuracy on eval.npz (512 labelled samples, output logits): source 97.3%, artifact
    96.9% on tflite/cpu (-0.4 points; limit 1.0): pass``."""
    change = (acc.artifact_top1 - acc.source_top1) * 100
    shown = f"{change:+.1f}" if round(change, 1) else "0.0"
    limit = (f"; limit {acc.max_drop * 100:.1f}): " + ("[green]pass[/]" if acc.passed
                                                       else "[red]FAIL[/]")
             if acc.max_drop is not None else ")")
    return Text.from_markup(escape(
        f"Accuracy on {Path(acc.file).name} ({acc.samples} labelled samples, output "
        f"{acc.output}): source {acc.source_top1:.1%}, artifact {acc.artifact_top1:.1%} on "
        f"{acc.runtime}/{acc.device} ({shown} points") + limit)


def policy_line(tol: Tolerance) -> str:
    """``fp32 policy: |err| <= 1e-06 + 0.0001 x scale`` or ``int8 policy over 32 inputs:
    cosine >= 0.98, top-1 >= 80%…`` (scale: the output's largest reference magnitude)."""
    parts = []
    if tol.atol is not None:
        terms = [f"{tol.atol:g}"] + ([f"{tol.rtol:g} x |ref|"] if tol.rtol else []) + (
            [f"{tol.scale_tol:g} x scale"] if tol.scale_tol else [])
        parts.append("|err| <= " + " + ".join(terms))
    if tol.min_cosine is not None:
        parts.append(f"cosine >= {tol.min_cosine:g}")
    if tol.min_top1 is not None:
        parts.append(f"top-1 >= {tol.min_top1:.0%}")
    if tol.min_top5 is not None:
        parts.append(f"top-5 >= {tol.min_top5:.0%}")
    inputs = f" over {tol.samples} inputs" if tol.samples > 1 else ""
    return f"{tol.policy} policy{inputs}: " + ", ".join(parts)


