"""What running an artifact found: each output's parity (``OutputParity``), one runtime and
device's check of every output (``Check``), a latency measurement, and ``--eval``'s accuracy."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any

from portkit.profiles import OpTime
from portkit.results.contract import plain


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


