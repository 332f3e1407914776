"""The convert report: frozen dataclasses, rendered as JSON (the contract) or terminal tables."""

from __future__ import annotations

import dataclasses
import hashlib
import json
import math
from dataclasses import dataclass, field
from importlib import metadata
from pathlib import Path
from typing import Any

from portkit.convert.registry import Hop
from portkit.errors import ExitCode
from portkit.specs import TensorSpec, Tolerance
from portkit.validators.latency import Budget, Latency
from portkit.validators.mobile import MobileReport
from portkit.validators.parity import OutputParity

# Distributions whose versions go into every report (read from metadata, never imported).
_VERSIONED = ("portkit", "numpy", "torch", "onnx", "onnxruntime", "onnxruntime-gpu", "onnxscript",
              "tensorflow", "tf-keras", "ai-edge-litert", "litert-torch", "onnx2tf", "tf2onnx")


@dataclass(frozen=True)
class Check:
    """The artifact run on one runtime and device, compared with the reference."""

    runtime: str
    device: str
    passed: bool
    outputs: tuple[OutputParity, ...] = ()
    input_layouts: tuple[str, ...] = ()
    seconds: float = 0.0
    error: str | None = None
    skipped: str | None = None  # why this runtime/device did not run here (e.g. no GPU)


@dataclass(frozen=True)
class Attempt:
    """One route tried: what it produced, and whether the artifact ran and matched."""

    route: str
    converted: bool
    passed: bool
    error: str | None = None
    hops: tuple[Hop, ...] = ()
    checks: tuple[Check, ...] = ()
    mobile: MobileReport | None = None
    channels_last: bool = False  # the route turns channels-first inputs channels-last
    latency: Latency | None = None  # timed against the other routes (--optimize latency)

    @property
    def ok(self) -> bool:
        return self.converted and self.passed


@dataclass(frozen=True)
class FileInfo:
    """A model file: where, what format, how big, and its digest."""

    path: str
    format: str
    size_bytes: int = 0
    sha256: str = ""

    @classmethod
    def of(cls, path: Path, fmt: str) -> FileInfo:
        """Size and sha256 of a file (or of every file under a directory)."""
        files = sorted(p for p in path.rglob("*") if p.is_file()) if path.is_dir() else [path]
        digest = hashlib.sha256()
        for f in files:
            with f.open("rb") as fh:
                for block in iter(lambda: fh.read(1 << 20), b""):
                    digest.update(block)
        return cls(str(path), fmt, sum(f.stat().st_size for f in files), digest.hexdigest())


@dataclass(frozen=True)
class ConvertReport:
    """Everything one ``portkit convert`` did and found."""

    passed: bool
    validated: bool
    source: FileInfo
    target: str
    artifact: FileInfo | None
    route: tuple[Hop, ...]
    routes_tried: tuple[Attempt, ...]
    checks: tuple[Check, ...]
    inputs: tuple[TensorSpec, ...]
    tolerance: Tolerance
    seed: int
    seconds: float
    versions: dict[str, str] = field(default_factory=dict)
    quantize: str | None = None
    mobile: MobileReport | None = None
    optimize: str | None = None
    converter_seconds: float = 0.0  # the converters' own time, inside the hops they ran
    route_name: str | None = None  # the shipped route's name, with its variant (``tool[variant]``)

    @property
    def overhead_seconds(self) -> float:
        """portkit's own time: workers, imports, the reference run, validation, timing."""
        return max(0.0, self.seconds - self.converter_seconds)

    @property
    def exit_code(self) -> ExitCode:
        """0 converted and matched (or not validated); 1 parity failed; 3 nothing converted."""
        if self.artifact is None:
            return ExitCode.CONVERSION_FAILED
        if not self.validated:
            return ExitCode.OK
        return ExitCode.OK if self.passed else ExitCode.PARITY_FAILED

    def to_dict(self) -> dict[str, Any]:
        """The JSON contract (see README): plain types only, non-finite floats as strings."""
        d = plain(dataclasses.asdict(self))
        d["route"] = [_hop(h) for h in self.route]
        d["routes_tried"] = [
            {**plain(dataclasses.asdict(a)), "ok": a.ok, "hops": [_hop(h) for h in a.hops]}
            for a in self.routes_tried
        ]
        d["overhead_seconds"] = self.overhead_seconds
        d["exit_code"] = int(self.exit_code)
        return d

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=2)

    def write_json(self, path: str | Path) -> None:
        """Write the JSON report atomically."""
        from portkit.io import atomic_write_text

        atomic_write_text(Path(path), self.to_json() + "\n")


def _hop(h: Hop) -> dict[str, Any]:
    return {"from": h.source.value, "to": h.target.value, "tool": h.tool,
            "seconds": round(h.seconds, 3), "detail": h.detail}


def plain(value: Any) -> Any:
    """Dataclass dicts to JSON-ready values: enums to their values, non-finite floats to strings."""
    if isinstance(value, dict):
        return {k: plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [plain(v) for v in value]
    if isinstance(value, float) and not math.isfinite(value):
        return str(value)
    if hasattr(value, "value") and not isinstance(value, (int, float, str)):
        return value.value  # enums
    return value


def versions() -> dict[str, str]:
    """Installed versions of the libraries portkit drives."""
    found = {}
    for dist in _VERSIONED:
        try:
            found[dist] = metadata.version(dist)
        except metadata.PackageNotFoundError:
            continue
    return found


# What portkit's runtimes set on every run, recorded with each validation.
PRECISION_FLAGS = {
    "torch.backends.cuda.matmul.allow_tf32": "False", "torch.backends.cudnn.allow_tf32": "False",
    "tflite.delegate": "XNNPACK (ai_edge_litert default)",
    "tflite.num_threads": "cores (device cpu), 1 (device cpu-1thread)",
    "onnxruntime.graph_optimization_level": "ORT_ENABLE_ALL (default)",
    "tensorflow.device": "pinned per device (/CPU:0, /GPU:0)",
}


@dataclass(frozen=True)
class ValidateReport:
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

    @property
    def exit_code(self) -> ExitCode:
        return ExitCode.OK if self.passed else ExitCode.PARITY_FAILED

    def to_dict(self) -> dict[str, Any]:
        d = plain(dataclasses.asdict(self))
        d["exit_code"] = int(self.exit_code)
        return d

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=2)


@dataclass(frozen=True)
class BenchRow:
    """One model on one runtime."""

    path: str
    format: str
    latency: Latency


@dataclass(frozen=True)
class BenchReport:
    """``portkit bench``: latency per model and runtime."""

    rows: tuple[BenchRow, ...]
    budget: Budget
    versions: dict[str, str] = field(default_factory=dict)

    def ratios(self) -> list[float]:
        """Each row's p50 over the first row's (1.0 for the first)."""
        first = self.rows[0].latency.p50_ms if self.rows else 0.0
        return [r.latency.p50_ms / first if first else 0.0 for r in self.rows]

    def to_dict(self) -> dict[str, Any]:
        d = plain(dataclasses.asdict(self))
        for row, ratio in zip(d["rows"], self.ratios()):
            row["p50_ratio"] = ratio
        return d

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=2)
