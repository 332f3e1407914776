"""Where a run's time went, op by op (``bench --profile``): the rows every runtime's profiler
is read into (``portkit.runtimes.litert_profile``, ``portkit.runtimes.onnx_profile``)."""

from __future__ import annotations

import statistics
from dataclasses import dataclass


@dataclass(frozen=True, kw_only=True)
class OpTime:
    """Where a run's time went: one op of the model (``--profile``).

    Attributes:
        op: The op as the runtime names it: an ONNX node's name; for TFLite, the builtin kernel
            with its node index (``CONV_2D#3``, ``@2`` for a node of subgraph 2) or the XNNPACK
            operator with its index inside the delegate (``xnnpack#4``).
        kind: Its type (``Conv``; ``CONV_2D``; XNNPACK's ``Convolution (NHWC, F32) IGEMM``).
        ms: Its time per run: the median over the profiled runs.
        share: Its part of the summed time of all ops (the shares add up to 1).
        delegated: Whether an accelerator ran it (XNNPACK, or an ONNX Runtime provider other
            than the CPU one) rather than the runtime's own CPU kernels.
        calls: Times it ran per run (more than 1 inside a loop).
        provider: Who ran it (``XNNPACK``, ``builtin``, ``CPUExecutionProvider``...).
    """

    op: str
    kind: str
    ms: float
    share: float
    delegated: bool
    calls: float = 1.0
    provider: str = ""


def op_kinds(ops: tuple[OpTime, ...]) -> tuple[OpTime, ...]:
    """Op times summed per (kind, provider), worst first: ``op`` holds how many ops it sums."""
    totals: dict[tuple[str, str, bool], list[float]] = {}
    for o in ops:
        t = totals.setdefault((o.kind, o.provider, o.delegated), [0, 0.0, 0.0, 0.0])
        t[0] += 1
        t[1] += o.ms
        t[2] += o.share
        t[3] += o.calls
    rows = [OpTime(op=f"{int(n)} op{'s' if n > 1 else ''}", kind=kind, ms=ms, share=share,
                   delegated=delegated, calls=calls, provider=provider)
            for (kind, provider, delegated), (n, ms, share, calls) in totals.items()]
    return tuple(sorted(rows, key=lambda r: -r.ms))


OpKey = tuple[str, str, bool, str]  # (op, kind, delegated, provider)


class OpTimes:
    """Seconds per op and run, summed from a profiler's events (``add``), as ``OpTime`` rows
    (``rows``): each op's median over the runs, so one slow spell of a busy machine does not
    move it; the shares are of the medians' sum."""

    def __init__(self, runs: int) -> None:
        self.runs = runs
        self._seconds: dict[OpKey, list[float]] = {}
        self._calls: dict[OpKey, int] = {}

    def add(self, key: OpKey, run: int, seconds: float, calls: int = 1) -> None:
        """Add ``seconds`` (may be negative: a parent's time less a child's) to ``key`` in
        run ``run`` (0-based; runs outside ``0..runs-1`` are ignored)."""
        if not 0 <= run < self.runs:
            return
        self._seconds.setdefault(key, [0.0] * self.runs)[run] += seconds
        self._calls[key] = self._calls.get(key, 0) + calls

    def rows(self) -> tuple[OpTime, ...]:
        """Per-op rows, worst first (medians in ms, shares of their sum, calls per run)."""
        medians = {k: max(0.0, statistics.median(v)) for k, v in self._seconds.items()}
        total = sum(medians.values()) or 1.0
        rows = [OpTime(op=op, kind=kind, ms=m * 1000.0, share=m / total, delegated=delegated,
                       calls=self._calls[op, kind, delegated, provider] / self.runs,
                       provider=provider)
                for (op, kind, delegated, provider), m in medians.items()]
        return tuple(sorted(rows, key=lambda r: (-r.ms, r.op)))
