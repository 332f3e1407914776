"""What portkit found: frozen dataclasses of plain fields, rendered as JSON (the contract, through
one mixin: ``contract``) or as terminal tables (``portkit.cli.render``). One module per report
(``convert``, ``runs``: validate and bench) and the records they share (``files``, ``checks``);
every name is importable from here."""

from __future__ import annotations

from portkit.results.checks import Accuracy, Check, Latency, OutputParity
from portkit.results.contract import JsonReport, plain, versions
from portkit.results.convert import Attempt, ConvertReport, Degenerate, FixedDims, Hop
from portkit.results.divergence import Divergence, Located
from portkit.results.files import FileInfo, Inspection, ModelInfo
from portkit.results.generation import GenerationCheck, LayerDrift, Step
from portkit.results.runs import PRECISION_FLAGS, BenchReport, BenchRow, ValidateReport

__all__ = [
    "Accuracy", "Attempt", "BenchReport", "BenchRow", "Check", "ConvertReport", "Degenerate",
    "Divergence", "FileInfo", "FixedDims", "GenerationCheck", "Hop", "Inspection", "JsonReport",
    "Latency", "LayerDrift", "Located", "ModelInfo", "OutputParity", "PRECISION_FLAGS", "Step",
    "ValidateReport", "plain", "versions",
]
