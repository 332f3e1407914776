"""A job: everything one command was asked to do (``ConvertJob``, ``ValidateJob``,
``BenchJob``)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

from portkit.bounds import BATCH, SEED, THREADS
from portkit.formats import Format
from portkit.options.conversion import ConvertOptions, Optimize
from portkit.options.feeding import Scalar
from portkit.options.loading import LoadOptions
from portkit.options.measuring import Budget, Evaluation
from portkit.policies import POLICIES, Tolerance
from portkit.shapes import Shapes
from portkit.specs import TensorSpec


@dataclass(frozen=True)
class ConvertJob:
    """One ``convert``: the source, where it goes, how the artifact is judged.

    Attributes:
        source: The model file or SavedModel folder.
        target: The format to write.
        output: Where (None: beside the source, with the target's suffix).
        inputs: ``--input`` specs, for shapes the source doesn't store.
        inputs_file: An ``.npz`` of inputs to compare on, instead of seeded ones. Its arrays are cast to the
            inputs' dtypes where no value changes; NaN/inf only with
            ``tolerance.allow_nonfinite``.
        route: Only the route of this name.
        validate: Run and compare the artifact (False: convert only).
        seed: Seed of generated inputs.
        tolerance: The parity policy.
        per_output: Policies for some outputs, by reference output name.
        options: The converters' options.
        optimize: Try every route and ship the best by this goal.
        constants: ``--const`` values: inputs bound to a constant in the artifact (the source
            still runs with them as the reference); by input name.
        steps: Consecutive calls per sample, each fed the state the previous returned.
        state: Input name -> the output fed back as it (empty: guessed when ``steps`` > 1).
        report: Also write the JSON report here.
        evaluation: ``--eval``: the chosen artifact's task accuracy against the source's.
        shapes: ``--dim`` ranges and ``--static``: which dimensions stay dynamic.
        speed_check: Time the artifact against the source's own runtime (``--speed-check``).
    """

    source: Path
    target: Format
    output: Path | None = None
    inputs: tuple[TensorSpec, ...] = ()
    inputs_file: Path | None = None
    route: str | None = None
    validate: bool = True
    seed: int = 0
    tolerance: Tolerance = POLICIES["fp32"]
    per_output: Mapping[str, Tolerance] = field(default_factory=dict)
    options: ConvertOptions = ConvertOptions()
    optimize: Optimize | None = None
    constants: Mapping[str, Scalar] = field(default_factory=dict)
    steps: int = 1
    state: Mapping[str, str] = field(default_factory=dict)
    report: Path | None = None
    evaluation: Evaluation | None = None
    shapes: Shapes = Shapes()
    speed_check: bool = False

    def __post_init__(self) -> None:
        """Refuse the values ``--seed`` refuses."""
        SEED.check(self.seed)


@dataclass(frozen=True)
class ValidateJob:
    """One ``validate``: an artifact, the model it came from, and how to judge it.

    Attributes:
        artifact: The converted model.
        reference: The model it was converted from (run as the reference).
        inputs: ``--input`` specs, for shapes the reference doesn't store.
        inputs_file: An ``.npz`` of inputs to compare on. Its arrays are cast to the
            inputs' dtypes where no value changes; NaN/inf only with
            ``tolerance.allow_nonfinite``.
        tolerance: The parity policy.
        per_output: Policies for some outputs, by reference output name.
        seed: Seed of generated inputs.
        load: How the reference is opened.
        runtimes: Only these runtimes (empty: every runtime that loads the artifact).
        save_bundle: Also write a reproducibility bundle here.
        constants: ``--const`` values the reference runs with; the artifact doesn't take them.
        steps: Consecutive calls per sample, each fed the state the previous returned.
        state: Input name -> the output fed back as it (empty: guessed when ``steps`` > 1).
        evaluation: ``--eval``: the artifact's task accuracy against the reference's.
        shapes: ``--dim`` ranges and ``--static``: the sizes the artifact is validated at.
    """

    artifact: Path
    reference: Path
    inputs: tuple[TensorSpec, ...] = ()
    inputs_file: Path | None = None
    tolerance: Tolerance = POLICIES["fp32"]
    per_output: Mapping[str, Tolerance] = field(default_factory=dict)
    seed: int = 0
    load: LoadOptions = LoadOptions()
    runtimes: tuple[str, ...] = ()
    save_bundle: Path | None = None
    constants: Mapping[str, Scalar] = field(default_factory=dict)
    steps: int = 1
    state: Mapping[str, str] = field(default_factory=dict)
    evaluation: Evaluation | None = None
    shapes: Shapes = Shapes()

    def __post_init__(self) -> None:
        """Refuse the values ``--seed`` refuses."""
        SEED.check(self.seed)


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


