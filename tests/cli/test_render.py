"""Terminal rendering: what a user reads is what the report holds (rich markup never eats it)."""

from __future__ import annotations

from rich.console import Console

from portkit.cli.render import convert_tables, validate_tables
from portkit.policies import POLICIES
from portkit.results import ConvertReport, FileInfo, ValidateReport


def _text(tables: list) -> str:
    console = Console(record=True, width=200)
    for table in tables:
        console.print(table)
    return console.export_text()


def test_the_verdict_line_names_each_file_with_its_format() -> None:
    report = ConvertReport(
        passed=False, validated=True, source=FileInfo("models/[v2]/m.pt2", "exported-program"),
        target="tflite", artifact=None, route=(), routes_tried=(), checks=(), inputs=(),
        tolerance=POLICIES["fp32"], seed=0, seconds=1.0)
    assert "NOT CONVERTED  models/[v2]/m.pt2 [exported-program]  in 1.0 s (exit 3)" in _text(
        convert_tables(report))
    validated = ValidateReport(True, FileInfo("m.pt", "torchscript"),
                               FileInfo("m.onnx", "onnx", 10), (), (), POLICIES["fp32"], {}, 0, 2.0)
    assert "PASSED  m.onnx [onnx] against m.pt [torchscript] in 2.0 s (exit 0)" in _text(
        validate_tables(validated))
