"""Task accuracy on labelled samples (``--eval data.npz``): the source and the artifact run on the
file's inputs, each prediction the argmax of one classifier output, scored against the file's
``labels``; with ``--max-accuracy-drop`` an artifact whose top-1 falls further below the
source's fails, in the one-line style of ``checks.why_failed``.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from portkit.errors import UsageError
from portkit.formats import Format
from portkit.formats.arrays import read_arrays
from portkit.options import ConvertJob, Evaluation, Feed
from portkit.results import Accuracy, Attempt, Check
from portkit.runtimes import registry, tasks
from portkit.runtimes.base import Runtime
from portkit.runtimes.binding import pair_by_name
from portkit.runtimes.context import RunContext
from portkit.runtimes.tasks import Reference
from portkit.shapes import Shapes
from portkit.specs import LABELS, labels_in
from portkit.validators.reference import run_reference

# The device the artifact is scored on (its parity was checked on every device).
DEVICE = "cpu"


def measure(feed: Feed, ev: Evaluation, source: tuple[Path, Format],
            artifact: tuple[Path, Format], reference: Reference, ctx: RunContext, *,
            runtime: Runtime, channels_last: bool = False) -> Accuracy:
    """Run the source (in its reference worker, ``reference.run_reference``) and the artifact
    (on ``runtime``'s cpu device) on every sample of ``ev.file``, and score both against its
    labels.

    Args:
        feed: How the run feeds the source (its seed, constants, load options).
        ev: The ``--eval`` file, output and limit.
        source: The source model and its format.
        artifact: The artifact and its format.
        reference: The run's reference: its inputs' shapes are the samples' (the artifact's).
        ctx: Workers, timeout and progress.
        runtime: The runtime to run the artifact on.
        channels_last: Map channels-first inputs to channels-last where both fit.

    Returns:
        Both accuracies, the drop and the verdict.

    Raises:
        UsageError: The file's labels don't fit: not one per sample, or a class the output
            doesn't score; the output is not one score vector per sample; ``--eval-output``
            names no output; a model input is called ``labels``.
    """
    (src, src_fmt), (art, art_fmt) = source, artifact
    file = ev.file.absolute()  # workers run in their own directories
    where = f"--eval {ev.file}"
    labels = labels_in(read_arrays(str(file), "--eval", only=(LABELS,)), where)
    if any(s.name == LABELS for s in reference.inputs):
        raise UsageError(f"{where}: {src.name} has an input called {LABELS!r}, which an --eval "
                         "file holds the classes under: rename that input")
    labelled = dataclasses.replace(  # the labelled samples only, at their own size
        feed, inputs=reference.inputs, file=file, samples=1, steps=1, state={}, held_back=0,
        flag="--eval", ignore=(LABELS,), shapes=Shapes(static=True))
    with ctx.progress(f"Running {src.name} on the labelled samples of {file.name} (--eval)"):
        scored = run_reference(src, src_fmt, labelled, ctx, what=f"{src} on {where}")
    name = _output(ev.output, list(scored.outputs[0]), where)
    source_says = predictions(scored.outputs, name, where)
    _check_labels(labels, source_says, name, where)
    with ctx.progress(f"Running the artifact on them ({runtime.name}/{DEVICE})"):
        run: tasks.ArtifactRun = ctx.pool.call(
            runtime.name, tasks.run_artifact, timeout=ctx.timeout,
            what=f"{art.name} on {runtime.name} ({where})", path=str(art), fmt=art_fmt,
            runtime=runtime.name, device=DEVICE, feeds=scored.feeds, specs=list(scored.inputs),
            prefer_channels_last=channels_last, output_names=list(scored.outputs[0]))
    art_name = dict(pair_by_name(list(scored.outputs[0]), list(run.outputs[0])))[name]
    artifact_says = predictions(run.outputs, art_name, f"{where}: the artifact's")
    source_top1, artifact_top1 = top1(source_says, labels), top1(artifact_says, labels)
    drop = source_top1 - artifact_top1
    return Accuracy(file=str(file), samples=len(labels), output=name, runtime=runtime.name,
                    device=DEVICE, source_top1=source_top1, artifact_top1=artifact_top1,
                    drop=drop, max_drop=ev.max_drop,
                    passed=ev.max_drop is None or drop <= ev.max_drop + 1e-12)


def judge(job: ConvertJob, source: tuple[Path, Format], reference: Reference, attempt: Attempt,
          artifact: Path, ctx: RunContext) -> tuple[Attempt, Accuracy | None]:
    """``--eval`` on the artifact ``convert`` chose (before it is moved into place): its
    accuracy, and the attempt failed, saying why, when its top-1 drops further than
    ``--max-accuracy-drop``. Nothing without ``--eval``, or when the artifact did not run on
    the target's first runtime (its checks say why).

    Raises:
        UsageError: See ``measure``.
    """
    rt = registry.for_format(job.target)[0]
    ev = job.judgement.evaluation
    if ev is None or not ran(attempt.checks, rt):
        return attempt, None
    accuracy = measure(job.feed, ev, source, (artifact, job.target), reference, ctx, runtime=rt,
                       channels_last=attempt.channels_last)
    why = why_failed(accuracy)
    if why is None:
        return attempt, accuracy
    error = "; ".join(e for e in (attempt.error, why) if e)
    return dataclasses.replace(attempt, passed=False, error=error), accuracy


def ran(checks: Sequence[Check], runtime: Runtime) -> bool:
    """Whether the artifact ran on ``runtime``'s cpu device (where ``measure`` runs it)."""
    return any(c.runtime == runtime.name and c.device == DEVICE and c.outputs for c in checks)


def predictions(outputs: Sequence[dict[str, np.ndarray]], name: str, where: str) -> np.ndarray:
    """Output ``name``'s score vector of every sample, one row per sample.

    Raises:
        UsageError: A sample's output is not one score vector of at least 2 classes.
    """
    first = outputs[0][name]
    if first.ndim == 0 or first.size != first.shape[-1] or first.shape[-1] < 2:
        shape = "x".join(map(str, first.shape)) or "a scalar"
        raise UsageError(f"{where}: output {name!r} is {shape} per sample, not one score "
                         "vector (1xCLASSES) per sample: top-1 accuracy needs a classifier's "
                         "scores; name another with --eval-output NAME")
    return np.stack([np.asarray(o[name], dtype=np.float64).reshape(-1) for o in outputs])


def top1(scores: np.ndarray, labels: np.ndarray) -> float:
    """The share of rows whose argmax is their label; a row holding NaN predicts no class."""
    predicted = np.where(np.isnan(scores).any(axis=1), -1, scores.argmax(axis=1))
    return float(np.mean(predicted == labels))


def _output(asked: str | None, names: list[str], where: str) -> str:
    """The output scored: ``--eval-output``, else the only one.

    Raises:
        UsageError: ``asked`` names no output, or there are several and none was asked for.
    """
    if asked is not None and asked not in names:
        raise UsageError(f"--eval-output {asked}: no such output; the source's outputs are "
                         f"{', '.join(names)}")
    if asked is None and len(names) != 1:
        raise UsageError(f"{where}: the source has {len(names)} outputs ({', '.join(names)}): "
                         f"name the classifier's with --eval-output NAME")
    return asked or names[0]


def _check_labels(labels: np.ndarray, scores: np.ndarray, name: str, where: str) -> None:
    """One label per sample, each a class the output scores.

    Raises:
        UsageError: The counts differ, or a label is not below the output's class count.
    """
    if len(labels) != len(scores):
        raise UsageError(f"{where}: {len(labels)} {LABELS} for {len(scores)} samples: give "
                         "one class index per sample")
    classes = scores.shape[1]
    if labels.max() >= classes:
        raise UsageError(f"{where}: {LABELS} go up to {labels.max()}, but output {name!r} "
                         f"scores {classes} classes (0-{classes - 1})")


def why_failed(accuracy: Accuracy) -> str | None:
    """Why the artifact's accuracy failed it, in one line with the limit that would pass, or
    None when it passed."""
    if accuracy.passed or accuracy.max_drop is None:
        return None
    would = math.ceil(accuracy.drop * 1000 - 1e-9) / 1000
    return (f"{accuracy.runtime}/{accuracy.device}: top-1 on {Path(accuracy.file).name} "
            f"{accuracy.artifact_top1:.1%} against the source's {accuracy.source_top1:.1%}, "
            f"{accuracy.drop * 100:.1f} points lower (would pass with --max-accuracy-drop "
            f"{would:g}, not {accuracy.max_drop:g})")
