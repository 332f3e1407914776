"""After a parity failure, ``convert`` and ``validate`` look for where the artifact first goes
wrong themselves (``locate``: ``portkit debug``'s walk on the first input) when that is cheap,
and otherwise name the ``portkit debug`` command that does."""

from __future__ import annotations

import shlex
from pathlib import Path
from typing import Any

from portkit.debug.run import DebugJob, debug
from portkit.errors import PortkitError
from portkit.formats.tflite import bucket_axes, signatures
from portkit.options import Feed, Judgement, ValidateJob, shown
from portkit.results import FileInfo, Located
from portkit.runtimes.context import RunContext

# Both models under this size: the walk takes seconds, so a failed check runs it unasked.
CHEAP_DEBUG_BYTES = 20 * 1024 * 1024


def diverged(report: Any) -> bool:
    """Whether the artifact failed (exit 1), and not only ``--max-accuracy-drop``: parity
    failures are worth finding where (a language model's generation check names its step
    itself)."""
    if getattr(report, "generation", None) is not None:
        return False
    accuracy_only = (report.accuracy is not None and not report.accuracy.passed
                     and all(c.passed or c.skipped for c in report.checks))
    return int(report.exit_code) == 1 and not accuracy_only


def command(artifact: Path, reference: Path, feed: Feed) -> str:
    """The ``portkit debug`` command for ``artifact`` against ``reference``, fed as ``feed``."""
    flags = [f"--input {spec.flag()}" for spec in feed.inputs]
    flags += [f"--const {shown({name: value})}" for name, value in feed.constants.items()]
    if feed.file is not None:
        flags.append(f"--inputs {shlex.quote(str(feed.file))}")
    if feed.seed:
        flags.append(f"--seed {feed.seed}")
    return (f"portkit debug {shlex.quote(str(artifact))} --reference "
            f"{shlex.quote(str(reference))} {' '.join(flags)}").strip()


def locate(artifact: Path, reference: Path, feed: Feed, ctx: RunContext, *,
           quantized: bool = False) -> Located:
    """Where ``artifact`` first diverges from ``reference`` on the first input, under the fp32
    policy: looked for when both are under ``CHEAP_DEBUG_BYTES``, the artifact is not
    quantized and each sample is one call (stateful and quantized artifacts are judged by
    other rules than the walk's), and it is not a bucketed TFLite (the walk runs the example's
    length, which need not be the bucket that failed); else only the command that looks."""
    said = command(artifact, reference, feed)
    sizes = [FileInfo.of(p, "").size_bytes for p in (artifact, reference) if p.exists()]
    if (feed.steps != 1 or quantized or any(s > CHEAP_DEBUG_BYTES for s in sizes)
            or _bucketed(artifact)):
        return Located(said)
    check = ValidateJob(artifact, reference, feed=Feed(
        feed.inputs, feed.file, feed.seed, constants=feed.constants, load=feed.load),
        judgement=Judgement())
    try:
        found = debug(DebugJob(check), ctx)
    except PortkitError as e:
        return Located(said, searched=True, error=" ".join(str(e).split()))
    return Located(said, searched=True, divergence=found.first_divergence)


def _bucketed(artifact: Path) -> bool:
    """Whether ``artifact`` is a TFLite of one signature per length (``--seq-buckets``)."""
    if artifact.suffix != ".tflite" or not artifact.is_file():
        return False
    try:
        return bool(bucket_axes(signatures(artifact)))
    except PortkitError:  # unreadable: the walk's own load says why
        return False
