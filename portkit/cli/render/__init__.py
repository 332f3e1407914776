"""Reports rendered for the terminal: a verdict line, then tables (rich). One module per
command's report (``convert``, ``runs``: validate, bench and check, ``models``: inspect and the
mobile report, ``debug``), what convert and validate share (``parity``), and the short forms of
numbers and names (``words``); every table is importable from here."""

from __future__ import annotations

from portkit.cli.render.convert import convert_tables, quantization_tables, speed_line
from portkit.cli.render.debug import debug_tables, divergence_line, where_line
from portkit.cli.render.generation import generation_table, generation_tables
from portkit.cli.render.models import inspect_tables, mobile_tables
from portkit.cli.render.parity import (
    accuracy_line,
    dynamic_line,
    parity_table,
    policy_line,
)
from portkit.cli.render.runs import (
    bench_table,
    check_tables,
    op_tables,
    profile_tables,
    validate_tables,
)

__all__ = [
    "accuracy_line", "bench_table", "check_tables", "convert_tables", "debug_tables",
    "divergence_line", "dynamic_line", "generation_table", "generation_tables", "inspect_tables",
    "mobile_tables", "op_tables", "parity_table", "policy_line", "profile_tables",
    "quantization_tables", "speed_line", "validate_tables", "where_line",
]
