"""Reports rendered for the terminal: a verdict line, then tables (rich)."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from rich.markup import escape
from rich.table import Table
from rich.text import Text

from portkit.cli.ci import failure_lines

if TYPE_CHECKING:
    from portkit.debug.report import DebugReport, Divergence
    from portkit.formats.tflite import MobileReport
    from portkit.gate import CheckReport
    from portkit.options import Scalar
    from portkit.policies import Tolerance
    from portkit.quantization import Quantization
    from portkit.results import (
        Accuracy,
        BenchReport,
        Check,
        ConvertReport,
        FileInfo,
        FixedDims,
        Inspection,
        OpTime,
        ValidateReport,
    )
    from portkit.specs import TensorSpec
    from portkit.speed import SpeedCheck


def _num(x: float) -> str:
    return f"{x:.3g}"


def _file(info: FileInfo) -> str:
    """``path [format]``, escaped: rich would take ``[torchscript]`` for a style tag."""
    return escape(f"{info.path} [{info.format}]")


def _ms(x: float) -> str:
    """``0.163``, ``11.3``, ``2,030``: three digits, none in exponent form."""
    return f"{x:.3g}" if x < 1000 else f"{x:,.0f}"


def _short(text: str, limit: int = 160) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _tail(name: str, limit: int = 60) -> str:
    """A long name's end (``…Conv2d_conv1;1``)."""
    return name if len(name) <= limit else "…" + name[-(limit - 1):]


def _constants(constants: dict[str, Scalar], how: str = "") -> Text:
    """``Constants (--const): sr=16000 ...``: inputs the artifact has bound, fed to the source."""
    from portkit.options import shown

    return Text(f"Constants (--const): {shown(constants)}; the artifact doesn't take them, the source ran "
                f"with them as the reference{how}")


def _steps(steps: int, state: dict[str, str]) -> Text:
    """``Stateful (--steps 3): each call fed the state the last returned: h <- hn``."""
    return Text(f"Stateful (--steps {steps}): each sample is {steps} calls, each fed the state "
                f"the previous call returned (the artifact its own): "
                + ", ".join(f"{i} <- {o}" for i, o in state.items()))


def convert_tables(report: ConvertReport) -> list[Table | Text]:
    """The summary line, the routes tried and the parity rows of a convert report."""
    verdict = {0: "[green]PASSED[/]", 1: "[red]PARITY FAILED[/]", 3: "[red]NOT CONVERTED[/]"}
    if not report.validated and report.artifact is not None:
        head = "[yellow]CONVERTED, NOT VALIDATED[/] (--no-validate)"
    else:
        head = _accuracy_head(report) or verdict.get(int(report.exit_code), str(report.exit_code))
    art = report.artifact
    where = f" -> {escape(art.path)} ({art.size_bytes:,} bytes)" if art else ""
    if art and report.artifact_failed:
        where = (f"; failed artifact kept at {escape(art.path)} ({art.size_bytes:,} bytes), "
                 "-o receives only an artifact that passed")
    share = report.overhead_seconds / report.seconds if report.seconds else 0.0
    out: list[Table | Text] = [
        Text.from_markup(f"{head}  {_file(report.source)}{where}  "
                         f"in {report.seconds:.1f} s (exit {int(report.exit_code)})"),
        Text(f"Converters {report.converter_seconds:.1f} s; portkit's own time (workers, "
             f"reference, validation) {report.overhead_seconds:.1f} s ({share:.0%})"),
    ]
    if report.constants:
        prep = report.preparation
        how = (f". Bound into the source first ({prep.tool}, {prep.seconds:.1f} s): "
               f"{prep.detail}" if prep else "")
        out.append(_constants(report.constants, how))
    if report.state:
        out.append(_steps(report.steps, report.state))
    if any(s.dims for s in report.inputs):
        out.append(dynamic_line(report.inputs, report.checks))
    if report.fixed is not None:
        out.append(fixed_line(report.fixed))
    out += notes_lines(report.notes)
    timed = any(a.latency is not None for a in report.routes_tried)
    title = "Routes tried" + (" (--optimize latency: the fastest that matched ships)"
                              if timed else "")
    routes = Table(title=title, title_justify="left")
    for col in ("route", "converted", "parity", "seconds", *(("p50 ms",) if timed else ()),
                "note"):
        routes.add_column(col, justify="right" if col == "p50 ms" else "left")
    shipped = report.route
    for a in report.routes_tried:
        parity = "-" if not a.converted or not report.validated else ("pass" if a.passed else "FAIL")
        if parity == "FAIL" and a.checks and all(c.passed or c.skipped for c in a.checks):
            parity = "pass; --eval FAIL"  # matched, but lost more accuracy than allowed
        note = a.error or "; ".join(h.detail for h in a.hops)
        p50 = ()
        if timed:
            mark = " *" if a.latency is not None and a.hops == shipped else ""
            p50 = (f"{a.latency.p50_ms:.3g}{mark}" if a.latency else "-",)
        name = f"{a.route} ({', '.join(a.fixed)} fixed)" if a.fixed else a.route
        routes.add_row(escape(name), "yes" if a.converted else "no", parity,
                       f"{sum(h.seconds for h in a.hops):.1f}", *p50, escape(_short(note)))
    out.append(routes)
    if report.checks:
        out.append(parity_table(report.checks, report.tolerance, report.reference_runtime))
        if report.inputs_from and report.quantize is not None:
            out.append(Text(f"Compared on {report.inputs_from}"))
    if report.accuracy is not None:
        out.append(accuracy_line(report.accuracy))
    if report.quantization is not None:
        out.extend(quantization_tables(report.quantization))
    if (report.validated and report.artifact is not None and not report.passed
            and report.quantize is not None and report.quantize.integer
            and not (report.quantization and report.quantization.keep_float)):
        out.append(Text("Some ops may not survive quantization: --keep-float auto keeps the "
                        "fewest of them in float until the policy passes (off by default: "
                        "NPUs need every op quantized)"))
    if report.mobile is not None:
        out.extend(mobile_tables(report.mobile))
    if report.speed is not None:
        out.append(speed_line(report.speed))
    return out


def speed_line(s: SpeedCheck) -> Text:
    """``SLOW: artifact p50 142 ms on tflite is 61x the 2.3 ms of onnxruntime on the source, on
    this CPU (...); worst ops: AVERAGE_POOL_2D#57 (98%)...``, or the check's plain result."""
    if s.error is not None:
        return Text(f"Speed check: not timed against {s.baseline}: {s.error}")
    ratio = f"{s.ratio:.1f}" if s.ratio < 10 else f"{s.ratio:.0f}"
    head = (f"artifact p50 {_ms(s.p50_ms)} ms on {s.runtime} is {ratio}x the "
            f"{_ms(s.baseline_p50_ms)} ms of {s.baseline}, on this CPU ({s.threads or 'default'} "
            f"threads, {s.runs} runs each in turns)")
    if not s.warned:
        return Text(f"Speed check: {head}")
    ops = ", ".join(o.op + (f" {o.kind}" if o.kind not in o.op else "") + f" ({o.share:.0%})"
                    for o in s.worst_ops)
    blame = f"; worst ops: {ops}" if ops else f"; ops not profiled: {s.note}" if s.note else ""
    return Text.from_markup(f"[yellow]SLOW[/]: {escape(head + blame)}; more: portkit bench "
                            "ARTIFACT --profile")


def quantization_tables(q: Quantization, worst: int = 10) -> list[Table | Text]:
    """How the artifact was quantized, the ops kept float and what that cost, and the ops
    that add the most error."""
    calibrated = (f"; calibrated on {q.calibration_samples} samples"
                  + (f", {q.held_back} held back to validate on" if q.held_back else "")
                  if q.calibration_samples else "")
    out: list[Table | Text] = [Text(f"Quantized by {q.tool}: {q.recipe}{calibrated}")]
    if q.keep_float:
        how = "--keep-float auto" if q.keep_float_auto else "--keep-float"
        cost = ""
        if q.full_bytes:
            cost = (f"; {q.bytes:,} bytes against {q.full_bytes:,} with every op quantized "
                    f"({q.bytes / q.full_bytes - 1:+.0%})")
        if q.full_p50_ms and q.p50_ms:
            cost += (f", p50 {q.p50_ms:.3g} ms against {q.full_p50_ms:.3g} ms "
                     f"({q.p50_ms / q.full_p50_ms:.2f}x)")
        tried = f", {q.trials} models tried" if q.keep_float_auto else ""
        out.append(Text(f"Kept float ({how}{tried}): {len(q.keep_float)} op(s): "
                        f"{', '.join(q.keep_float)}{cost}"))
    if q.note:
        out.append(Text(f"--keep-float: {q.note}"))
    if q.ops:
        table = Table(title=f"Quantization error by op (worst {min(worst, len(q.ops))} of "
                            f"{len(q.ops)}, by the error each adds; relative RMS against the "
                            "float model on calibration samples)", title_justify="left")
        for col in ("op", "error", "added", "computed in", "output tensor"):
            table.add_column(col, justify="right" if col in ("error", "added") else "left")
        for o in q.ops[:worst]:
            table.add_row(o.name, _num(o.error), _num(o.added),
                          "integers" if o.quantized else "float", escape(_tail(o.tensor)))
        out.append(table)
    return out


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
                f"{_short('; '.join(fixed.refusals), 300)}. {fixed.require} requires "
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
                   _num(o.max_abs_err), _num(o.scale), _num(o.scaled_err), f"{o.cosine:.6f}"]
            if topk:
                row += [_share(o.top1), _share(o.top5)]
            parity.add_row(*row, "; ".join(notes) or "same", result)
    return parity


def validate_tables(report: ValidateReport) -> list[Table | Text]:
    """The verdict line and the parity rows of ``portkit validate``."""
    head = _accuracy_head(report) or (
        "[green]PASSED[/]" if report.passed else "[red]PARITY FAILED[/]")
    ran = f" (run on {escape(report.reference_runtime)})" if report.reference_runtime else ""
    out: list[Table | Text] = [Text.from_markup(
        f"{head}  {_file(report.artifact)} against {_file(report.reference)}{ran} in "
        f"{report.seconds:.1f} s (exit {int(report.exit_code)})")]
    if report.constants:
        out.append(_constants(report.constants))
    if report.state:
        out.append(_steps(report.steps, report.state))
    if any(s.dims for s in report.inputs):
        out.append(dynamic_line(report.inputs, report.checks))
    out += notes_lines(report.notes)
    out.append(parity_table(report.checks, report.tolerance, report.reference_runtime))
    out += [accuracy_line(report.accuracy)] if report.accuracy is not None else []
    return out + op_tables(report.profile, Path(report.artifact.path).name)


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


def _accuracy_head(report: ConvertReport | ValidateReport) -> str | None:
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
                      escape(_short("; ".join(failure_lines(r)))) if not r.passed else "")
    return [Text.from_markup(f"{head}  {len(report.results) - len(failed)}/{len(report.results)} "
                             f"cases passed in {report.seconds:.1f} s (exit {report.exit_code})"),
            table]


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


def _share(x: float | None) -> str:
    return "-" if x is None else f"{x:.0%}"


def mobile_tables(m: MobileReport) -> list[Table | Text]:
    """The mobile report of a ``.tflite``: runtime needs, precision and tensors."""
    runs = ("[green]yes[/]" if m.builtin_only else
            "[red]no[/]: needs " + ", ".join(
                ([f"Flex ops {', '.join(m.flex_ops)}"] if m.flex_ops else [])
                + ([f"custom ops {', '.join(m.custom_ops)}"] if m.custom_ops else [])))
    out: list[Table | Text] = [Text.from_markup(
        f"Mobile: {m.size_bytes:,} bytes, {m.precision}, {sum(m.op_counts.values())} ops; "
        f"runs on the builtin interpreter: {runs}")]
    io = Table(title="TFLite inputs and outputs", title_justify="left")
    for col in ("kind", "name", "shape", "resizable", "dtype", "layout", "scale", "zero point"):
        io.add_column(col)
    for kind, tensors in (("input", m.inputs), ("output", m.outputs)):
        for t in tensors:
            shape = "x".join("?" if d < 0 else str(d) for d in t.shape) or "scalar"
            io.add_row(kind, t.name, shape, "yes" if t.resizable else "no",
                       t.dtype, t.layout or "-", ", ".join(f"{x:.6g}" for x in t.scale[:4]) or "-",
                       ", ".join(str(x) for x in t.zero_point[:4]) or "-")
    out.append(io)
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
    if info.mobile is not None:
        out.extend(mobile_tables(info.mobile))
    return out


def divergence_line(d: Divergence) -> str:
    """``First divergence: source conv2d (Conv) -> artifact node_Conv_3 (Conv): max abs err
    0.0092 = 0.0067 of its scale, cosine 0.999995; inputs agree: relu``."""
    return (f"First divergence: source {d.source_node} ({d.op_type}, tensor {d.source_tensor}) "
            f"-> artifact {d.artifact_node} ({d.artifact_op_type}, tensor {d.artifact_tensor}): "
            f"max abs err {_num(d.max_abs_err)} = {_num(d.scaled_err)} of its scale, cosine "
            f"{d.cosine:.6f}; its inputs agree: {', '.join(d.last_agreeing) or '(none)'}")


def debug_tables(report: DebugReport, worst: int = 10) -> list[Table | Text]:
    """The verdict, the first divergence, then the worst matched nodes (and each hop's)."""
    first = report.first_divergence
    head = "[red]DIVERGED[/]" if first is not None else "[green]NO DIVERGENCE[/]"
    out: list[Table | Text] = [Text.from_markup(
        f"{head}  {_file(report.artifact)} against {_file(report.source)} in "
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
        out.append(Text(f"max abs err {_num(first.max_abs_err)} = {_num(first.scaled_err)} of "
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
                      _num(n.max_abs_err), _num(n.scaled_err), f"{n.cosine:.6f}",
                      "[green]pass[/]" if n.passed else "[red]FAIL[/]")
    out.append(nodes)
    for i, hop in enumerate(report.hops, 1):
        verdict = "diverged" if hop.first_divergence else "agrees"
        out.append(Text.from_markup(f"[bold]Hop {i}[/]: {_file(hop.artifact)} against "
                                    f"{_file(hop.source)}: {verdict}"))
        if hop.first_divergence is not None:
            out.append(Text(divergence_line(hop.first_divergence)))
    return out
