"""What portkit found: frozen dataclasses of plain fields, rendered as JSON (the contract, through
one mixin) or as terminal tables (``portkit.cli.render``)."""

from __future__ import annotations

import dataclasses
import hashlib
import json
import math
from dataclasses import dataclass, field
from importlib import metadata
from pathlib import Path
from typing import Any

from portkit.errors import ExitCode
from portkit.formats import Format
from portkit.formats.tflite import MobileReport
from portkit.io import atomic_write_text
from portkit.options import Budget, Optimize, Scalar
from portkit.policies import Quantize, Tolerance
from portkit.profiles import OpTime
from portkit.quantization import Quantization
from portkit.specs import TensorSpec
from portkit.speed import SpeedCheck

# Distributions whose versions go into every report (read from metadata, never imported).
_VERSIONED = ("portkit", "numpy", "torch", "onnx", "onnxruntime", "onnxruntime-gpu", "onnxscript",
              "tensorflow", "tf-keras", "ai-edge-litert", "litert-torch", "onnx2tf", "tf2onnx")

# What portkit's runtimes set on every run, recorded with each validation.
PRECISION_FLAGS = {
    "torch.backends.cuda.matmul.allow_tf32": "False", "torch.backends.cudnn.allow_tf32": "False",
    "tflite.delegate": "XNNPACK (ai_edge_litert default)",
    "tflite.num_threads": "cores (device cpu), 1 (device cpu-1thread)",
    "onnxruntime.graph_optimization_level": "ORT_ENABLE_ALL (default)",
    "tensorflow.device": "pinned per device (/CPU:0, /GPU:0)",
}


def plain(value: Any) -> Any:
    """Dataclass dicts to JSON-ready values: enums to their values, non-finite floats to strings."""
    if isinstance(value, dict):
        return {k: plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [plain(v) for v in value]
    if isinstance(value, float) and not math.isfinite(value):
        return str(value)
    if hasattr(value, "value") and not isinstance(value, (int, float)):
        return value.value  # enums, str-valued ones included
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


class JsonReport:
    """Mixin for report dataclasses: the JSON contract is the dataclass's fields as plain types,
    what ``_finish`` derives, and ``exit_code`` for reports that have one."""

    def to_dict(self) -> dict[str, Any]:
        """The JSON contract (see README): plain types only, non-finite floats as strings."""
        d = self._finish(plain(dataclasses.asdict(self)))  # type: ignore[call-overload]
        if hasattr(self, "exit_code"):
            d["exit_code"] = int(self.exit_code)
        return d

    def _finish(self, d: dict[str, Any]) -> dict[str, Any]:
        """Derived keys added to (or fields reshaped in) the plain dict."""
        return d

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=2)

    def write_json(self, path: str | Path, flag: str = "--report") -> None:
        """Write the JSON report atomically (``flag`` names it in errors)."""
        atomic_write_text(Path(path), self.to_json() + "\n", flag)


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
class ModelInfo:
    """What a runtime sees in a model file."""

    format: Format
    inputs: tuple[TensorSpec, ...]
    outputs: tuple[TensorSpec, ...]
    op_counts: dict[str, int] = field(default_factory=dict)
    mobile: MobileReport | None = None  # a .tflite's mobile report


@dataclass(frozen=True)
class Inspection(JsonReport):
    """``portkit inspect``: a model's format, size, inputs, outputs and op histogram."""

    path: str
    size_bytes: int
    info: ModelInfo


@dataclass(frozen=True)
class Hop:
    """One edge as it ran: the converter's own time (loading what it reads, imports included,
    and converting), and what it chose (exporter, options)."""

    source: Format
    target: Format
    tool: str
    seconds: float
    detail: str
    quantization: Quantization | None = None  # what quantizing did, on a hop that quantized

    def to_dict(self) -> dict[str, Any]:
        return {"from": self.source.value, "to": self.target.value, "tool": self.tool,
                "seconds": round(self.seconds, 3), "detail": self.detail}


@dataclass(frozen=True, kw_only=True)
class OutputParity:
    """How one artifact output compares with the reference, over every sample.

    Attributes:
        name: The reference output's name.
        artifact_name: The artifact output it was matched with.
        shape: The reference shape (of one sample).
        max_abs_err: max |got - ref|.
        max_rel_err: max |got - ref| / |ref| (|ref| floored at 1e-12).
        cosine: Cosine similarity of the flattened tensors (1.0 when both are zero).
        min_atol_to_pass: The smallest atol that passes at the tolerance's rtol and scale_tol.
        passed: Whether the output meets every criterion of the tolerance.
        scale: The output's scale: its largest reference magnitude over every sample.
        scaled_err: ``max_abs_err / scale``: the error as a fraction of the output's scale.
        min_scale_tol_to_pass: The smallest scale_tol that passes at the tolerance's atol and
            rtol.
        kind: What the output holds (``classifier``, ``embedding``, ``regression``).
        kind_why: Why it is judged as that kind (set by the user, or the rule that guessed it).
        layout: How the artifact's layout was mapped back (e.g. ``NCHW->NHWC``), if it was.
        error: Why nothing could be compared (shape or dtype mismatch), if so.
        samples: How many inputs were compared.
        top1: Share of score vectors (one per sample and batch row) whose top-1 class agrees
            (classifier-like outputs only).
        top5: Share of score vectors whose reference top-1 class is in the artifact's top 5.
        failed: The criteria that failed (``non-finite``, ``max abs err``, ``cosine``,
            ``top-1``, ``top-5``).
        nonfinite: Why its NaN/inf failed it (``12 NaN in the reference, 12 NaN in the
            artifact``), if they did; the other metrics are over the values finite on both
            sides.
    """

    name: str
    artifact_name: str
    shape: tuple[int, ...]
    max_abs_err: float
    max_rel_err: float
    cosine: float
    min_atol_to_pass: float
    passed: bool
    scale: float = 0.0
    scaled_err: float = 0.0
    min_scale_tol_to_pass: float = 0.0
    kind: str = "regression"
    kind_why: str = ""
    layout: str | None = None
    error: str | None = None
    samples: int = 1
    top1: float | None = None
    top5: float | None = None
    failed: tuple[str, ...] = ()
    nonfinite: str | None = None


@dataclass(frozen=True, kw_only=True)
class Latency:
    """Timings of one model on one runtime and device (milliseconds unless stated).

    Attributes:
        runtime: The runtime's name.
        device: The device.
        threads: CPU threads asked for (None: the runtime's default).
        batch: The batch size fed.
        cold_start_ms: Load plus the first run.
        runs: Timed runs.
        p50_ms, p90_ms, p99_ms, mean_ms: Percentiles and mean of the timed runs.
        cv: Coefficient of variation (std / mean) of the timed runs.
        throughput: Samples per second (batch / mean).
        peak_rss_mb: The worker's peak resident memory.
        profile: Time per op, worst first (``--profile``; empty without it).
    """

    runtime: str
    device: str
    threads: int | None
    batch: int
    cold_start_ms: float
    runs: int
    p50_ms: float
    p90_ms: float
    p99_ms: float
    mean_ms: float
    cv: float
    throughput: float
    peak_rss_mb: float
    profile: tuple[OpTime, ...] = ()


@dataclass(frozen=True, kw_only=True)
class Check:
    """The artifact run on one runtime and device, compared with the reference.

    Attributes:
        runtime, device: Where it ran.
        passed: Whether it ran and every output met the policy.
        outputs: One parity row per reference output.
        input_layouts: How the reference's inputs were mapped to the artifact's (``x: NCHW->NHWC``).
        seconds: Its mean run time per sample.
        error: Why it could not run or be compared, if so.
        skipped: Why this runtime/device did not run here (e.g. no GPU), if so.
        size: The input sizes of a dynamic model these samples had (``ids 3x33``); empty when
            it ran at one size.
    """

    runtime: str
    device: str
    passed: bool
    outputs: tuple[OutputParity, ...] = ()
    input_layouts: tuple[str, ...] = ()
    seconds: float = 0.0
    error: str | None = None
    skipped: str | None = None
    size: str = ""

    @property
    def where(self) -> str:
        """``tflite/cpu``, and ``at ids 3x33`` for one size of a dynamic model."""
        return f"{self.runtime}/{self.device}" + (f" at {self.size}" if self.size else "")


@dataclass(frozen=True, kw_only=True)
class Accuracy:
    """Task accuracy on labelled samples (``--eval``): top-1 (the share of the ``samples`` in
    ``file`` predicted as labelled) of the source and of the artifact (on ``runtime``/``device``),
    each prediction the argmax of the source's ``output``; ``drop`` is source minus artifact,
    ``passed`` that it is within ``max_drop`` (``--max-accuracy-drop``; None: only reported)."""

    file: str
    samples: int
    output: str
    runtime: str
    device: str
    source_top1: float
    artifact_top1: float
    drop: float
    max_drop: float | None
    passed: bool

    def to_dict(self) -> dict[str, Any]:
        return plain(dataclasses.asdict(self))


@dataclass(frozen=True, kw_only=True)
class Attempt:
    """One route tried: what it produced, and whether the artifact ran and matched.

    Attributes:
        route: The route's name (``torch.onnx+onnx2tf``, ``litert-torch[nhwc-io]``).
        converted: Whether every hop wrote its file.
        passed: Whether the artifact also ran and matched its source everywhere it was run,
            and kept its accuracy with ``--eval`` (never without ``converted``; the JSON
            repeats it as ``ok``).
        error: Why the route failed, if it did.
        hops: The hops that ran.
        checks: The artifact's checks.
        mobile: A ``.tflite`` artifact's mobile report.
        channels_last: Whether the route turns channels-first inputs channels-last.
        latency: Its time against the other routes' (``--optimize latency``).
        lost_dynamic: It failed because it could write the source's dynamic dimensions only
            as fixed ones.
        fixed: The source's dynamic dimensions this attempt had fixed at their example size
            (the second try after no route kept them: ``FixedDims``).
    """

    route: str
    converted: bool
    passed: bool
    error: str | None = None
    hops: tuple[Hop, ...] = ()
    checks: tuple[Check, ...] = ()
    mobile: MobileReport | None = None
    channels_last: bool = False
    latency: Latency | None = None
    lost_dynamic: bool = False
    fixed: tuple[str, ...] = ()


@dataclass(frozen=True)
class FixedDims:
    """Dimensions the source declares dynamic, the user did not ask to keep dynamic, and no
    route could keep dynamic: the artifact has them fixed at their example size.

    Attributes:
        sizes: Each dimension's name and the size it is fixed at.
        refusals: Why each route could not keep them (``route: error``).
        require: The flags that would make keeping them a requirement (``--dim batch=1..64``):
            with them the conversion fails instead.
    """

    sizes: tuple[tuple[str, int], ...]
    refusals: tuple[str, ...]
    require: str

    def describe(self) -> str:
        """``batch at 1, seq at 16``."""
        return ", ".join(f"{name} at {size}" for name, size in self.sizes)


@dataclass(frozen=True)
class ConvertReport(JsonReport):
    """Everything one ``portkit convert`` did and found.

    ``constants`` are the inputs ``--const`` bound: the artifact doesn't take them, the source
    ran with them as the reference; ``preparation`` is the step that bound them into the source
    before the routes ran (None without ``--const``); ``accuracy``: ``--eval``'s (or None);
    ``speed``: the artifact timed against the source's runtime (``--speed-check``; or None).
    """

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
    quantize: Quantize | None = None
    mobile: MobileReport | None = None
    optimize: Optimize | None = None
    converter_seconds: float = 0.0  # the converters' own time, inside the hops they ran
    route_name: str | None = None  # the shipped route's name, with its variant (``tool[variant]``)
    reference_runtime: str | None = None  # what ran the source (``onnx-reference`` for old opsets)
    constants: dict[str, Scalar] = field(default_factory=dict)
    preparation: Hop | None = None
    steps: int = 1  # calls per sample of a stateful model (--steps)
    state: dict[str, str] = field(default_factory=dict)  # input <- output fed back
    # The artifact converted but failed parity: kept at ``artifact`` (NAME.failed.EXT beside -o),
    # not written to -o, which only ever receives an artifact that passed.
    artifact_failed: bool = False
    accuracy: Accuracy | None = None
    # Where the compared inputs came from: seeded, --inputs, or held back from --calibration.
    inputs_from: str = ""
    speed: SpeedCheck | None = None
    fixed: FixedDims | None = None  # dynamic dimensions no route kept, fixed in the artifact
    notes: tuple[str, ...] = ()  # what portkit decided for the user (sizes dropped, names matched)

    @property
    def quantization(self) -> Quantization | None:
        """What quantizing did, when the shipped route's last hop quantized."""
        return self.route[-1].quantization if self.route else None

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

    def _finish(self, d: dict[str, Any]) -> dict[str, Any]:
        d["route"] = [h.to_dict() for h in self.route]
        d["routes_tried"] = [{**row, "ok": a.passed, "hops": [h.to_dict() for h in a.hops]}
                             for row, a in zip(d["routes_tried"], self.routes_tried, strict=True)]
        d["overhead_seconds"] = self.overhead_seconds
        d["preparation"] = self.preparation.to_dict() if self.preparation else None
        d["quantization"] = self.quantization.to_dict() if self.quantization else None
        return d


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
