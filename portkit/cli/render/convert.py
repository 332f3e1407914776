"""``portkit convert`` in the terminal: the verdict, the routes tried, the parity table, what
quantizing did, the mobile report and the speed check."""

from __future__ import annotations

from typing import TYPE_CHECKING

from rich.markup import escape
from rich.table import Table
from rich.text import Text

from portkit.cli.render.debug import where_line
from portkit.cli.render.generation import generation_tables
from portkit.cli.render.models import mobile_tables
from portkit.cli.render.parity import (
    accuracy_head,
    accuracy_line,
    constants_line,
    dynamic_line,
    fixed_line,
    notes_lines,
    parity_table,
    steps_line,
)
from portkit.cli.render.words import described, ms, num, short, tail

if TYPE_CHECKING:
    from portkit.quantization import Quantization
    from portkit.results import (
        ConvertReport,
        FixedDims,
    )
    from portkit.speed import SpeedCheck


def convert_tables(report: ConvertReport) -> list[Table | Text]:
    """The summary line, the routes tried and the parity rows of a convert report."""
    verdict = {0: "[green]PASSED[/]", 1: "[red]PARITY FAILED[/]", 3: "[red]NOT CONVERTED[/]"}
    if not report.validated and report.artifact is not None:
        head = "[yellow]CONVERTED, NOT VALIDATED[/] (--no-validate)"
    else:
        head = accuracy_head(report) or verdict.get(int(report.exit_code), str(report.exit_code))
    art = report.artifact
    where = f" -> {escape(art.path)} ({art.size_bytes:,} bytes)" if art else ""
    if art and report.artifact_failed:
        where = (f"; failed artifact kept at {escape(art.path)} ({art.size_bytes:,} bytes), "
                 "-o receives only an artifact that passed")
    share = report.overhead_seconds / report.seconds if report.seconds else 0.0
    out: list[Table | Text] = [
        Text.from_markup(f"{head}  {described(report.source)}{where}  "
                         f"in {report.seconds:.1f} s (exit {int(report.exit_code)})"),
        Text(f"Converters {report.converter_seconds:.1f} s; portkit's own time (workers, "
             f"reference, validation) {report.overhead_seconds:.1f} s ({share:.0%})"),
    ]
    if report.constants:
        prep = report.preparation
        how = (f". Bound into the source first ({prep.tool}, {prep.seconds:.1f} s): "
               f"{prep.detail}" if prep else "")
        out.append(constants_line(report.constants, how))
    if report.state:
        out.append(steps_line(report.steps, report.state))
    if any(s.dims for s in report.inputs):
        out.append(dynamic_line(report.inputs, report.checks))
    if report.fixed is not None:
        out.append(buckets_line(report.fixed) if report.fixed.buckets
                   else fixed_line(report.fixed))
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
        parity = "-" if not a.converted or not report.validated else (
            "pass" if a.passed else "FAIL")
        if parity == "FAIL" and a.checks and all(c.passed or c.skipped for c in a.checks):
            # matched, but lost more accuracy than allowed, or failed on seeded inputs
            seeded = report.degenerate is not None and not report.degenerate.passed
            parity = "pass; seeded FAIL" if seeded else "pass; --eval FAIL"
        note = a.error or "; ".join(h.detail for h in a.hops)
        p50 = ()
        if timed:
            mark = " *" if a.latency is not None and a.hops == shipped else ""
            p50 = (f"{a.latency.p50_ms:.3g}{mark}" if a.latency else "-",)
        name = f"{a.route} ({_fixed_names(a.fixed, report.fixed)})" if a.fixed else a.route
        routes.add_row(escape(name), "yes" if a.converted else "no", parity,
                       f"{sum(h.seconds for h in a.hops):.1f}", *p50, escape(short(note)))
    out.append(routes)
    if report.generation is not None:
        out.extend(generation_tables(report.generation))
    if report.checks:
        out.append(parity_table(report.checks, report.tolerance, report.reference_runtime))
        if report.inputs_from and report.quantize is not None:
            out.append(Text(f"Compared on {report.inputs_from}"))
    if report.degenerate is not None:
        out.extend(degenerate_lines(report))
    if report.accuracy is not None:
        out.append(accuracy_line(report.accuracy))
    if report.quantization is not None:
        out.extend(quantization_tables(report.quantization))
    if (report.validated and report.artifact is not None and not report.passed
            and report.quantize is not None and report.quantize.integer
            and report.generation is None  # a language model's weights: no ops to keep float
            and not (report.quantization and report.quantization.keep_float)
            and (report.degenerate is None or report.degenerate.passed)):
        out.append(Text("Some ops may not survive quantization: --keep-float auto keeps the "
                        "fewest of them in float until the policy passes (off by default: "
                        "NPUs need every op quantized)"))
    if report.mobile is not None:
        out.extend(mobile_tables(report.mobile))
    if report.speed is not None:
        out.append(speed_line(report.speed))
    if report.where is not None:
        out.append(where_line(report.where))
    return out


def degenerate_lines(report: ConvertReport) -> list[Table | Text]:
    """Degenerate held-back ``--calibration`` samples: what they lack, the seeded inputs the
    artifact was judged on as well, and their parity table."""
    d = report.degenerate
    assert d is not None
    verdict = "[green]passed[/]" if d.passed else "[red]FAILED[/]"
    fix = "" if d.passed else ("; give representative samples: --calibration with real inputs "
                               "the model will see")
    out: list[Table | Text] = [Text.from_markup(
        f"[yellow]Degenerate calibration[/]: {escape(d.why)}. They prove nothing, so the "
        f"artifact was also judged on {escape(d.seeded)}: {verdict}{escape(fix)}")]
    if d.checks:
        table = parity_table(d.checks, report.tolerance, report.reference_runtime)
        table.title = f"On the seeded inputs: {table.title}"
        out.append(table)
    return out


def speed_line(s: SpeedCheck) -> Text:
    """``SLOW: artifact p50 142 ms on tflite is 61x the 2.3 ms of onnxruntime on the source, on
    this CPU (...); worst ops: AVERAGE_POOL_2D#57 (98%)...``, or the check's plain result."""
    if s.error is not None:
        return Text(f"Speed check: not timed against {s.baseline}: {s.error}")
    ratio = f"{s.ratio:.1f}" if s.ratio < 10 else f"{s.ratio:.0f}"
    head = (f"artifact p50 {ms(s.p50_ms)} ms on {s.runtime} is {ratio}x the "
            f"{ms(s.baseline_p50_ms)} ms of {s.baseline}, on this CPU ({s.threads or 'default'} "
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
        if q.keep_float_auto and q.search_seconds is not None:
            tried += f" in {q.search_seconds:.1f} s"
            tried += f", peak {q.search_peak_mb:,.0f} MB" if q.search_peak_mb else ""
        out.append(Text(f"Kept float ({how}{tried}): {', '.join(q.keep_float)}{cost}"))
    if q.note:
        out.append(Text(f"--keep-float: {q.note}"))
    if q.ops:
        table = Table(title=f"Quantization error by op (worst {min(worst, len(q.ops))} of "
                            f"{len(q.ops)}, by the error each adds; relative RMS against the "
                            "float model on calibration samples)", title_justify="left")
        for col in ("op", "error", "added", "computed in", "output tensor"):
            table.add_column(col, justify="right" if col in ("error", "added") else "left")
        for o in q.ops[:worst]:
            table.add_row(o.name, num(o.error), num(o.added),
                          "integers" if o.quantized else "float", escape(tail(o.tensor)))
        out.append(table)
    return out


def buckets_line(fixed: FixedDims) -> Text:
    """``Buckets: ids.1 at 16, 64, 128 (a signature each ...), as no route kept it dynamic:
    ...``: a sequence bucketed (``--seq-buckets``), other dimensions fixed beside it."""
    kept = "; ".join(f"{name} at {', '.join(map(str, sizes))}" for name, sizes in fixed.buckets)
    also = "".join(f", {name} fixed at {size}" for name, size in fixed.sizes)
    them = "it" if len(fixed.buckets) + len(fixed.sizes) == 1 else "them"
    return Text(f"Buckets: {kept} (one TFLite signature per length, each validated; the "
                f"runtime takes the signature of the input's length){also}, as no route kept "
                f"{them} dynamic: {short('; '.join(fixed.refusals), 300)}. {fixed.require} "
                f"requires {them} dynamic (exit 3 where no route can)")


def _fixed_names(names: tuple[str, ...], fixed: FixedDims | None) -> str:
    """``ids.1 bucketed, batch fixed``: what the route's second try fixed."""
    bucketed = dict(fixed.buckets) if fixed is not None else {}
    parts = [f"{', '.join(n for n in names if n in bucketed)} bucketed"] if any(
        n in bucketed for n in names) else []
    rest = [n for n in names if n not in bucketed]
    return ", ".join(parts + ([f"{', '.join(rest)} fixed"] if rest else []))
