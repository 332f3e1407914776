"""``portkit.debug``: where an artifact first diverges from its source."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path

from portkit import options
from portkit.api.context import run_context
from portkit.debug import run as debug_run
from portkit.debug.report import DebugReport
from portkit.errors import UsageError
from portkit.options import Scalar, ValidateJob
from portkit.runtimes import worker
from portkit.runtimes.context import Progress, no_progress
from portkit.specs import TensorSpec


def debug(
    artifact: str | Path,
    reference: str | Path,
    *,
    inputs: Sequence[str | TensorSpec] = (),
    inputs_file: str | Path | None = None,
    overlay: str | Path | None = None,
    overlay_side: str = "artifact",
    hops: bool = False,
    route: str | None = None,
    seed: int = 0,
    consts: Mapping[str, Scalar] | Sequence[str] = (),
    signature: str | None = None,
    trust_model: bool = False,
    timeout: float = worker.DEFAULT_TIMEOUT,
    progress: Progress = no_progress,
    workers: worker.Pool | None = None,
    **numbers: float | None,
) -> DebugReport:
    """Find where an artifact first goes wrong against the model it was converted from.

    Both run once (the first seeded or given input) with every intermediate tensor exposed;
    the source's tensors are matched with the artifact's (names the converters kept, model
    outputs, then shape, layout and value) and walked in topological order: the first
    divergence is the first matched pair outside the policy whose matched inputs all agree.

    Args:
        artifact: The converted model.
        reference: The model it was converted from.
        inputs: Input specs for shapes the reference doesn't store.
        inputs_file: An ``.npz`` of inputs (its first sample is used).
        overlay: Also write per-node errors as Model Explorer node data to this file.
        overlay_side: The graph the overlay colours: ``artifact`` or ``source``.
        hops: Also rerun the route that made the artifact and debug each hop against the
            previous one (the hops' artifacts are kept in ``ARTIFACT.hops/``).
        route: With ``hops``: the route's name (default: the first ``convert`` tries).
        seed: Seed of generated inputs.
        consts: Inputs the artifact has bound to a constant (``["sr=16000"]``).
        signature: SavedModel signature of the reference.
        trust_model: Let the reference run code on load (Keras Lambda layers).
        timeout: Seconds each worker step may take.
        progress: ``progress(message)`` context managers around each step.
        workers: Warm workers to run in, kept by the caller across calls.
        **numbers: The parity policy's numbers over the fp32 default, by the keywords
            ``policies.Numbers`` declares (see ``convert``); it runs one sample.

    Returns:
        The report; ``report.exit_code`` is 0 when nothing diverges, 1 when something does.

    Raises:
        PortkitError: Bad arguments or model files, a runtime that can't expose intermediates
            (exit 2), or with ``hops`` a converter that failed (exit 3).
    """
    if numbers.get("samples") not in (None, 1):
        raise UsageError(f"--samples {numbers['samples']}: debug traces one sample")
    check = ValidateJob(
        artifact=Path(artifact), reference=Path(reference),
        feed=options.feed(inputs=inputs, inputs_file=inputs_file, seed=seed, consts=consts,
                          signature=signature, trust_model=trust_model),
        judgement=options.judgement(**{**numbers, "samples": 1}))
    job = debug_run.DebugJob(check, Path(overlay) if overlay is not None else None,
                             overlay_side, hops, route)
    with run_context(workers, timeout, progress) as ctx:
        return debug_run.debug(job, ctx)


