"""The ``portkit`` command: click commands over the library API (``commands``), the options they
share (``flags``), and how results are shown: terminal tables (``render``), Markdown and JUnit
(``ci``)."""

from __future__ import annotations

from portkit.cli import commands  # noqa: F401 - registers the commands on the group
from portkit.cli.app import cli, main

__all__ = ["cli", "main"]
