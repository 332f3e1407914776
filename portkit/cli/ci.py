"""A ``portkit check`` report as CI reads it: Markdown (pull-request comments, the job summary)
and JUnit XML (one test case per model x target x runtime)."""

from __future__ import annotations

import xml.etree.ElementTree as ET

from portkit.gate import CaseResult, CheckReport
from portkit.validators.checks import why_failed


def failure_lines(result: CaseResult, quote: str = "`") -> list[str]:
    """Why a case failed: its error, per failing output the error and the tolerance that would
    have passed, and its regressions against the baseline."""
    lines = [result.error] if result.error else []
    lines += [line for check in result.checks if not check.passed
              for line in why_failed(check, every_output=True, quote=quote)]
    return lines + list(result.regressions)


def to_markdown(report: CheckReport) -> str:
    """A summary table of every case, then the reasons for each failure."""
    verdict = "✅ passed" if report.passed else "❌ failed"
    failed = [r for r in report.results if not r.passed]
    out = [f"### portkit check: {verdict} ({len(report.results) - len(failed)}/"
           f"{len(report.results)} cases{f', shard {report.shard}' if report.shard else ''})",
           "", "| model | target | runtime | result | max abs err | cosine | p50 ms | route |",
           "|---|---|---|---|---|---|---|---|"]
    for r in report.results:
        rows = [o for c in r.checks if not c.skipped for o in c.outputs]
        err = max((o.max_abs_err for o in rows), default=float("nan"))
        cos = min((o.cosine for o in rows), default=float("nan"))
        p50 = f"{r.latency.p50_ms:.3g}" if r.latency else "-"
        out.append(f"| {r.case.model} | {r.case.target} | {r.case.runtime} | "
                   f"{'pass' if r.passed else '**FAIL**'} | {err:.3g} | {cos:.6f} | {p50} | "
                   f"{r.route or '-'} |")
    for r in failed:
        out += ["", f"**{r.case.id}**", ""] + [f"- {line}" for line in failure_lines(r)]
    skipped = sorted({f"{c.runtime}/{c.device}: {c.skipped}" for r in report.results
                      for c in r.checks if c.skipped})
    if skipped:
        out += ["", "Skipped: " + "; ".join(skipped)]
    return "\n".join(out) + "\n"


def to_junit(report: CheckReport) -> str:
    """JUnit XML: a suite of one test case per model x target x runtime."""
    failures = sum(not r.passed for r in report.results)
    suite = ET.Element("testsuite", name="portkit check", tests=str(len(report.results)),
                       failures=str(failures), errors="0", time=f"{report.seconds:.3f}")
    for r in report.results:
        seconds = sum(c.seconds for c in r.checks)
        case = ET.SubElement(suite, "testcase", classname=f"{r.case.model}.{r.case.target}",
                             name=r.case.runtime, time=f"{seconds:.3f}")
        if not r.passed:
            lines = failure_lines(r) or ["failed"]
            failure = ET.SubElement(case, "failure", message=lines[0][:500])
            failure.text = "\n".join(lines)
        skipped = [f"{c.device}: {c.skipped}" for c in r.checks if c.skipped]
        if skipped:
            ET.SubElement(case, "system-out").text = "skipped devices: " + "; ".join(skipped)
    suites = ET.Element("testsuites")
    suites.append(suite)
    return ET.tostring(suites, encoding="unicode", xml_declaration=True) + "\n"
