"""A job: everything one command was asked to do (``ConvertJob``, ``ValidateJob``,
``BenchJob``). The two that judge an artifact share only their ``feed`` (``feeding.Feed``) and
``judgement`` (``judging.Judgement``)."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from pathlib import Path

from portkit.bounds import BATCH, THREADS
from portkit.formats import Format
from portkit.options.conversion import ConvertOptions, Optimize
from portkit.options.feeding import Feed
from portkit.options.generation import Export, Generation
from portkit.options.judging import Judgement
from portkit.options.measuring import Budget
from portkit.specs import TensorSpec


def _agree(job: ConvertJob | ValidateJob) -> None:
    """Make the job's feed take as many samples as its policy compares over, and let NaN/inf
    in where the policy compares them (``--samples``, ``--allow-nonfinite``: set once, on the
    judgement)."""
    t = job.judgement.tolerance
    if (job.feed.samples, job.feed.allow_nonfinite) != (t.samples, t.allow_nonfinite):
        object.__setattr__(job, "feed", dataclasses.replace(
            job.feed, samples=t.samples, allow_nonfinite=t.allow_nonfinite))


@dataclass(frozen=True)
class ConvertJob:
    """One ``convert``: the source, where it goes, how it is fed and the artifact judged.

    Attributes:
        source: The model file or SavedModel folder.
        target: The format to write.
        output: Where (None: beside the source, with the target's suffix).
        route: Only the route of this name.
        validate: Run and compare the artifact (False: convert only).
        options: The converters' options (their ``load`` is the feed's).
        optimize: Try every route and ship the best by this goal.
        report: Also write the JSON report here.
        speed_check: Time the artifact against the source's own runtime (``--speed-check``).
        feed: How the source is fed (its ``samples`` and ``allow_nonfinite`` are the
            judgement's).
        judgement: What the artifact is held to.
        generation: A language model's generation check (``--generate``, ``--prompt``).
        export: A language model's cache and prefill lengths (``--max-seq``, ``--prefill``).
    """

    source: Path
    target: Format
    output: Path | None = None
    route: str | None = None
    validate: bool = True
    options: ConvertOptions = ConvertOptions()
    optimize: Optimize | None = None
    report: Path | None = None
    speed_check: bool = False
    feed: Feed = Feed()
    judgement: Judgement = Judgement()
    generation: Generation = Generation()
    export: Export = Export()

    def __post_init__(self) -> None:
        """Make the feed agree with the judgement, and the converters load the source as the
        feed does."""
        _agree(self)
        if self.options.load != self.feed.load:
            object.__setattr__(self, "options",
                               dataclasses.replace(self.options, load=self.feed.load))


@dataclass(frozen=True)
class ValidateJob:
    """One ``validate``: an artifact, the model it came from, and how to feed and judge them.

    Attributes:
        artifact: The converted model.
        reference: The model it was converted from (run as the reference).
        runtimes: Only these runtimes (empty: every runtime that loads the artifact).
        save_bundle: Also write a reproducibility bundle here.
        feed: How the reference is fed (its ``samples`` and ``allow_nonfinite`` are the
            judgement's); ``--const`` values are the ones the artifact has bound.
        judgement: What the artifact is held to.
        generation: A language model's generation check (``--generate``, ``--prompt``).
        export: The cache length the source runs with (``--max-seq``).
    """

    artifact: Path
    reference: Path
    runtimes: tuple[str, ...] = ()
    save_bundle: Path | None = None
    feed: Feed = Feed()
    judgement: Judgement = Judgement()
    generation: Generation = Generation()
    export: Export = Export()

    def __post_init__(self) -> None:
        """Make the feed agree with the judgement."""
        _agree(self)


@dataclass(frozen=True)
class BenchJob:
    """One ``bench``: models timed on each runtime that loads them.

    Attributes:
        models: The model files.
        runtimes: Only these runtimes (empty: every runtime for each model).
        inputs: ``--input`` specs, for shapes a model doesn't store.
        threads: CPU threads per runtime (None: its default; TFLite one per core).
        batch: Batch size to feed (replaces the first dimension).
        budget: How long to measure.
        sizes: ``--shape`` values: each model is timed at each size (``shapes.size_sets``).
        profile: Also time each op with the runtime's profiler (``--profile``), over
            ``budget.min_runs`` runs after the timed ones.
    """

    models: tuple[Path, ...]
    runtimes: tuple[str, ...] = ()
    inputs: tuple[TensorSpec, ...] = ()
    threads: int | None = None
    batch: int | None = None
    budget: Budget = Budget()
    sizes: tuple[tuple[TensorSpec, ...], ...] = ()
    profile: bool = False

    def __post_init__(self) -> None:
        """Refuse the values ``--threads`` and ``--batch`` refuse."""
        if self.threads is not None:
            THREADS.check(self.threads)
        if self.batch is not None:
            BATCH.check(self.batch)


