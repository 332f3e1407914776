"""What one ``portkit convert`` did: the hops a route ran, each route tried (``Attempt``), the
dimensions fixed when no route kept them dynamic, and the report (``ConvertReport``)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from portkit.errors import ExitCode
from portkit.formats import Format
from portkit.formats.tflite import MobileReport
from portkit.options import Optimize, Scalar
from portkit.policies import Quantize, Tolerance
from portkit.quantization import Quantization
from portkit.results.checks import Accuracy, Check, Latency
from portkit.results.contract import JsonReport
from portkit.results.divergence import Located
from portkit.results.files import FileInfo
from portkit.results.generation import GenerationCheck
from portkit.specs import TensorSpec
from portkit.speed import SpeedCheck


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
        generation: A language model's generation check (instead of ``checks``).
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
    generation: GenerationCheck | None = None


@dataclass(frozen=True)
class FixedDims:
    """Dimensions the source declares dynamic, the user did not ask to keep dynamic, and no
    route could keep dynamic: the artifact has them fixed at their example size, or (a
    sequence, ``--seq-buckets``) at each of a few sizes, one TFLite signature per size.

    Attributes:
        sizes: Each dimension's name and the size it is fixed at.
        refusals: Why each route could not keep them (``route: error``).
        require: The flags that would make keeping them a requirement (``--dim batch=1..64``):
            with them the conversion fails instead.
        buckets: Each bucketed dimension's name and its sizes (a signature each).
    """

    sizes: tuple[tuple[str, int], ...]
    refusals: tuple[str, ...]
    require: str
    buckets: tuple[tuple[str, tuple[int, ...]], ...] = ()

    def describe(self) -> str:
        """``batch at 1, seq at 16``; ``ids.1 in buckets 16, 64, 128``."""
        return ", ".join([f"{name} at {size}" for name, size in self.sizes]
                         + [f"{name} in buckets {', '.join(map(str, sizes))}"
                            for name, sizes in self.buckets])


@dataclass(frozen=True)
class Degenerate:
    """Held-back ``--calibration`` samples that carry no variation (copies of one constant
    input, all zeros), which prove nothing, and the seeded inputs the artifact was judged on as
    well: it passes only if it passes on both.

    Attributes:
        why: What is degenerate, in words (``... input 'x' holds only 0.5, in all 32
            samples``).
        seeded: The seeded inputs it was judged on, in words.
        checks: The artifact's checks on them.
        passed: Whether every check passed.
    """

    why: str
    seeded: str
    checks: tuple[Check, ...] = ()
    passed: bool = False


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
    where: Located | None = None  # after a parity failure: where it first goes wrong
    # The held-back --calibration samples were degenerate: also judged on seeded inputs.
    degenerate: Degenerate | None = None
    generation: GenerationCheck | None = None  # a language model: judged by generating

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


