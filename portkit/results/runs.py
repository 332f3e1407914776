"""What ``portkit validate`` and ``portkit bench`` found: an artifact checked against its
reference on every runtime (``ValidateReport``), and latency per model and runtime
(``BenchReport``)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from portkit.errors import ExitCode
from portkit.options import Budget, Scalar
from portkit.policies import Tolerance
from portkit.profiles import OpTime
from portkit.results.checks import Accuracy, Check, Latency
from portkit.results.contract import JsonReport
from portkit.results.divergence import Located
from portkit.results.files import FileInfo
from portkit.results.generation import GenerationCheck, GenerationTiming
from portkit.specs import TensorSpec

# What portkit's runtimes set on every run, recorded with each validation.
PRECISION_FLAGS = {
    "torch.backends.cuda.matmul.allow_tf32": "False", "torch.backends.cudnn.allow_tf32": "False",
    "tflite.delegate": "XNNPACK (ai_edge_litert default)",
    "tflite.num_threads": "cores (device cpu), 1 (device cpu-1thread)",
    "onnxruntime.graph_optimization_level": "ORT_ENABLE_ALL (default)",
    "tensorflow.device": "pinned per device (/CPU:0, /GPU:0)",
}


@dataclass(frozen=True)
class ValidateReport(JsonReport):
    """``portkit validate``: an artifact run on every runtime and device, against a reference."""

    passed: bool
    reference: FileInfo
    artifact: FileInfo
    checks: tuple[Check, ...]
    inputs: tuple[TensorSpec, ...]
    tolerance: Tolerance
    per_output: dict[str, Tolerance]
    seed: int
    seconds: float
    versions: dict[str, str] = field(default_factory=dict)
    flags: dict[str, str] = field(default_factory=lambda: dict(PRECISION_FLAGS))
    reference_runtime: str | None = None  # what ran the reference model (or ``bundle (...)``)
    constants: dict[str, Scalar] = field(default_factory=dict)  # fed to the reference only
    steps: int = 1  # calls per sample of a stateful model (--steps)
    state: dict[str, str] = field(default_factory=dict)  # input <- output fed back
    accuracy: Accuracy | None = None  # --eval: task accuracy, the reference's and the artifact's
    profile: tuple[OpTime, ...] = ()  # --profile: the artifact's time per op, worst first
    notes: tuple[str, ...] = ()  # what portkit decided for the user (sizes dropped, names matched)
    where: Located | None = None  # after a parity failure: where it first goes wrong
    generation: GenerationCheck | None = None  # a language model: judged by generating

    @property
    def exit_code(self) -> ExitCode:
        return ExitCode.OK if self.passed else ExitCode.PARITY_FAILED


@dataclass(frozen=True)
class BenchRow:
    """One model on one runtime (at one of the ``--shape`` sizes: ``inputs``)."""

    path: str
    format: str
    latency: Latency
    inputs: str = ""


@dataclass(frozen=True)
class BenchReport(JsonReport):
    """``portkit bench``: latency per model and runtime."""

    rows: tuple[BenchRow, ...]
    budget: Budget
    versions: dict[str, str] = field(default_factory=dict)
    generation: tuple[GenerationTiming, ...] = ()  # --generate: language models generating

    def ratios(self) -> list[float]:
        """Each row's p50 over the first row's at the same size (1.0 for the first)."""
        first: dict[str, float] = {}
        for r in self.rows:
            first.setdefault(r.inputs, r.latency.p50_ms)
        return [r.latency.p50_ms / first[r.inputs] if first[r.inputs] else 0.0
                for r in self.rows]

    def _finish(self, d: dict[str, Any]) -> dict[str, Any]:
        for row, ratio in zip(d["rows"], self.ratios(), strict=True):
            row["p50_ratio"] = ratio
        return d


