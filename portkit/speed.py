"""Whether a converted artifact is pathologically slow: its median latency against the source's
own runtime on the same CPU (``convert --speed-check``), and the ops to blame when it is."""

from __future__ import annotations

from dataclasses import dataclass

from portkit.profiles import OpTime

SLOW_RATIO = 3.0  # the artifact's p50 over the baseline's beyond which the report warns
# Below this gap the artifact is never called slow: a warning about microseconds helps no one
# (a tiny model's ratio is the runtimes' per-call overhead, not its ops).
MIN_GAP_MS = 1.0


@dataclass(frozen=True, kw_only=True)
class SpeedCheck:
    """The shipped artifact timed against a baseline, in turns in one worker on this CPU.

    Attributes:
        runtime: What ran the artifact (``tflite``, ``onnxruntime``).
        baseline: What the baseline was, in words (``onnxruntime on the source``,
            ``onnxruntime on the route's ONNX (torch.onnx)``, ``tensorflow on the source``).
        baseline_runtime: What ran it (``onnxruntime``, ``tensorflow``, ``torch``...).
        threads: CPU threads each was given (None: the runtime's default).
        runs: Timed runs of each.
        p50_ms: The artifact's median latency.
        baseline_p50_ms: The baseline's.
        ratio: ``p50_ms / baseline_p50_ms`` (0 when not timed).
        threshold: The ratio beyond which it warns (``SLOW_RATIO``).
        min_gap_ms: The least ``p50_ms - baseline_p50_ms`` that warns (``MIN_GAP_MS``).
        warned: Whether the artifact is beyond both: slow for what it computes.
        worst_ops: When warned, the artifact's slowest ops from its runtime's profiler (their
            ``share`` of the summed op time), worst first.
        note: Why the ops could not be profiled, when they could not.
        error: Why it could not be timed (then nothing else is set), if so.
    """

    runtime: str
    baseline: str
    baseline_runtime: str
    threads: int | None = None
    runs: int = 0
    p50_ms: float = 0.0
    baseline_p50_ms: float = 0.0
    ratio: float = 0.0
    threshold: float = SLOW_RATIO
    min_gap_ms: float = MIN_GAP_MS
    warned: bool = False
    worst_ops: tuple[OpTime, ...] = ()
    note: str = ""
    error: str | None = None


def is_slow(p50_ms: float, baseline_p50_ms: float, threshold: float = SLOW_RATIO,
            min_gap_ms: float = MIN_GAP_MS) -> bool:
    """Whether an artifact at ``p50_ms`` is slow against a baseline at ``baseline_p50_ms``:
    beyond ``threshold`` times it, and by at least ``min_gap_ms``."""
    return (baseline_p50_ms > 0 and p50_ms / baseline_p50_ms > threshold
            and p50_ms - baseline_p50_ms >= min_gap_ms)


def timed(runtime: str, baseline: str, baseline_runtime: str, *, p50_ms: float,
          baseline_p50_ms: float, threads: int | None, runs: int,
          worst_ops: tuple[OpTime, ...] = (), note: str = "") -> SpeedCheck:
    """The verdict on two medians: the ratio, and whether it warns (``is_slow``); the worst
    ops are kept only when it does."""
    slow = is_slow(p50_ms, baseline_p50_ms)
    return SpeedCheck(runtime=runtime, baseline=baseline, baseline_runtime=baseline_runtime,
                      threads=threads, runs=runs, p50_ms=p50_ms, baseline_p50_ms=baseline_p50_ms,
                      ratio=p50_ms / baseline_p50_ms if baseline_p50_ms > 0 else 0.0,
                      warned=slow, worst_ops=worst_ops if slow else (),
                      note=note if slow else "")
