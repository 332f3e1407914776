"""``portkit check``: a config of models, targets, runtimes, tolerances and latency budgets
(``config``), run as a CI gate (``run``)."""

from __future__ import annotations

from portkit.gate.config import Case, ModelEntry, cases, load_config, shard
from portkit.gate.run import CaseResult, CheckReport, run, work_folder

__all__ = ["Case", "CaseResult", "CheckReport", "ModelEntry", "cases", "load_config", "run",
           "shard", "work_folder"]
