"""Flags -> typed options: what the user asked of the loaders, converters and timing, checked
once here so the library API and the CI gate build them the same way (the parity policy's
numbers: ``portkit.policies``). One module per option group: ``loading``, ``conversion``,
``feeding`` (how the source is fed: ``Feed``), ``judging`` (how the artifact is judged:
``Judgement``), ``measuring`` (timing, ``--eval``), and ``jobs``; every name is importable
from here.

Modes are enums (``Quantize``, ``Optimize``), never strings compared in several places; a job
(``ConvertJob``, ``ValidateJob``, ``BenchJob``) is everything one command was asked to do.
"""

from __future__ import annotations

from portkit.options.conversion import (
    ConvertOptions,
    Optimize,
    convert_options,
    optimize_goal,
    target,
)
from portkit.options.feeding import (
    Feed,
    Scalar,
    constants,
    feed,
    parse_state,
    shapes,
    shown,
)
from portkit.options.generation import Export, Generation, exporting, generating
from portkit.options.jobs import BenchJob, ConvertJob, ValidateJob
from portkit.options.judging import Judgement, judgement
from portkit.options.loading import LoadOptions
from portkit.options.measuring import Budget, Evaluation, evaluation

__all__ = [
    "BenchJob", "Budget", "ConvertJob", "ConvertOptions", "Evaluation", "Export", "Feed",
    "Generation", "Judgement",
    "LoadOptions", "Optimize", "Scalar", "ValidateJob", "constants", "convert_options",
    "evaluation", "exporting", "feed", "generating", "judgement", "optimize_goal",
    "parse_state", "shapes", "shown",
    "target",
]
