"""Flags -> typed options: what the user asked of the loaders, converters and timing, checked
once here so the library API and the CI gate build them the same way (the parity policy's
numbers: ``portkit.policies``).

Modes are enums (``Quantize``, ``Optimize``), never strings compared in several places; a job
(``ConvertJob``, ``ValidateJob``, ``BenchJob``) is everything one command was asked to do.
"""

from __future__ import annotations

import enum
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from portkit.bounds import (
    BATCH,
    MAX_ACCURACY_DROP,
    MIN_RUNS,
    MIN_SECONDS,
    OPSET,
    SEED,
    THREADS,
    WARMUP,
    Bound,
)
from portkit.errors import UsageError
from portkit.formats import TARGETS, Format
from portkit.policies import POLICIES, Quantize, Tolerance
from portkit.shapes import Shapes, parse_dim_flag
from portkit.specs import (
    LABELS,
    Dim,
    TensorSpec,
    labels_in,
    read_arrays,
    refuse_nonfinite,
)

# A value ``--const`` binds an input to (a Python scalar: TorchScript ``sr: int``, or an ONNX
# scalar tensor).
Scalar = bool | int | float
_CONST_NAME = re.compile(r"^[^=\s]+$")


class Optimize(str, enum.Enum):
    """What ``--optimize`` ships: the fastest artifact that matched."""

    LATENCY = "latency"


@dataclass(frozen=True)
class LoadOptions:
    """How a source model is opened.

    Attributes:
        signature: The SavedModel signature to use (None: ``serving_default``, else the only one).
        trust_model: Allow Keras Lambda layers and custom objects (they run Python code on load).
        threads: CPU threads the runtime may use (None: its default; TFLite: one per core).
    """

    signature: str | None = None
    trust_model: bool = False
    threads: int | None = None


@dataclass(frozen=True)
class ConvertOptions:
    """What the user asked of the converters (one field per ``portkit convert`` flag).

    Attributes:
        load: How the source is opened (the first hop only; later hops read portkit's artifacts).
        quantize: TFLite quantization, or None (float32).
        calibration: ``.npz`` file or folder of ``.npy`` files of representative inputs: int8
            and int16x8 calibrate on them, every mode is judged on their last samples.
        int8_io: Make a quantized TFLite model's inputs and outputs int8 as well.
        no_flex: Fail rather than emit TFLite ops that need the Flex (Select TF ops) runtime.
        opset: ONNX opset for converters that take one (None: the newest they support).
        variant: A converter option set the edge declares (``Variant.name``), for the hop
            that writes the target; None: the edge's default.
        allow_nonfinite: Let NaN and inf calibration values through (``--allow-nonfinite``).
        holdout: The last samples of ``calibration`` held back to validate on, never
            calibrated on (set by ``convert`` when no ``--inputs`` is given).
        keep_float: Ops left in float when quantizing (``--keep-float NAME,...``), by the name
            the per-op error table gives them.
        keep_float_auto: Keep the fewest ops float that make the quantized model meet
            ``judge`` (``--keep-float auto``).
        judge: The parity policy ``keep_float_auto`` quantizes until it meets (the job's).
    """

    load: LoadOptions = LoadOptions()
    quantize: Quantize | None = None
    calibration: str | None = None
    int8_io: bool = False
    no_flex: bool = False
    opset: int | None = None
    variant: str | None = None
    allow_nonfinite: bool = False
    holdout: int = 0
    keep_float: tuple[str, ...] = ()
    keep_float_auto: bool = False
    judge: Tolerance | None = None


@dataclass(frozen=True)
class Budget:
    """How long to measure latency.

    Attributes:
        warmup: Untimed runs after the first.
        min_runs: Timed runs at least.
        min_seconds: Timed seconds at least.
        max_runs: Timed runs at most (a guard for very fast models).
    """

    warmup: int = 5
    min_runs: int = 30
    min_seconds: float = 1.0
    max_runs: int = 100_000

    def __post_init__(self) -> None:
        """Refuse the values ``--warmup``, ``--min-runs`` and ``--min-seconds`` refuse."""
        WARMUP.check(self.warmup)
        MIN_RUNS.check(self.min_runs)
        MIN_SECONDS.check(self.min_seconds)
        Bound("max_runs", 1, integer=True).check(self.max_runs)


@dataclass(frozen=True)
class Evaluation:
    """``--eval``: task accuracy on labelled samples, the source's against the artifact's.

    Attributes:
        file: An ``.npz`` of the model's inputs (as ``--inputs``) and ``labels``, each sample's
            class index (integers, shape (samples,)).
        output: The classifier output whose argmax is the prediction (None: the only output).
        max_drop: The largest drop in top-1 accuracy (source minus artifact, a share 0-1) that
            passes (``--max-accuracy-drop``); None: the accuracies are only reported.
    """

    file: Path
    output: str | None = None
    max_drop: float | None = None

    def __post_init__(self) -> None:
        """Refuse the values ``--max-accuracy-drop`` refuses."""
        if self.max_drop is not None:
            MAX_ACCURACY_DROP.check(self.max_drop)


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


def target(to: str) -> Format:
    """The format ``--to`` names.

    Raises:
        UsageError: No target of that name.
    """
    try:
        return TARGETS[to.lower()]
    except KeyError:
        raise UsageError(f"--to {to}: unknown target; one of {', '.join(TARGETS)}") from None


def convert_options(target: Format, *, signature: str | None = None, trust_model: bool = False,
                    quantize: str | Quantize | None = None,
                    calibration: str | Path | None = None, int8_io: bool = False,
                    no_flex: bool = False, opset: int | None = None,
                    allow_nonfinite: bool = False,
                    keep_float: str | Sequence[str] | None = None) -> ConvertOptions:
    """Check the flags that only make sense together and build the converters' options.

    Raises:
        UsageError: A flag is out of place (``--quantize`` for ONNX, ``--int8-io`` without
            int8...), ``opset`` is out of range, or calibration data is missing, can't be read
            as arrays or holds NaN/inf (without ``allow_nonfinite``).
    """
    if opset is not None:
        opset = OPSET.check(opset)
    mode = Quantize.parse(quantize)
    if mode is not None:
        if target is not Format.TFLITE:
            raise UsageError(f"--quantize {mode.value}: quantization is for --to tflite")
        if mode.calibrated and calibration is None:
            raise UsageError(
                f"--quantize {mode.value} needs calibration data: pass --calibration data.npz "
                "(or a folder of .npy files) holding ~100 representative inputs; portkit never "
                "calibrates on random data"
            )
    if calibration is not None:
        if mode is None:
            raise UsageError("--calibration is for --quantize: representative inputs that "
                             "int8/int16x8 calibrate on and every mode is judged on")
        if not Path(calibration).exists():
            raise UsageError(f"--calibration {calibration}: no such file or folder")
        calibration = str(Path(calibration).absolute())
        # A bad file fails now, not mid-conversion.
        for name, array in read_arrays(calibration, "--calibration").items():
            if not allow_nonfinite:
                refuse_nonfinite(f"--calibration {calibration}", name or "(the .npy files)",
                                 array)
    if int8_io and mode is not Quantize.INT8:
        raise UsageError("--int8-io is for --quantize int8")
    if no_flex and target is not Format.TFLITE:
        raise UsageError("--no-flex is for --to tflite")
    names, auto = _keep_float(keep_float, mode)
    return ConvertOptions(LoadOptions(signature, trust_model), mode, calibration, int8_io,
                          no_flex, opset, allow_nonfinite=allow_nonfinite, keep_float=names,
                          keep_float_auto=auto)


def _keep_float(value: str | Sequence[str] | None, mode: Quantize | None
                ) -> tuple[tuple[str, ...], bool]:
    """``--keep-float auto`` or ``--keep-float NAME,...`` (repeatable): the op names, and
    whether portkit chooses them.

    Raises:
        UsageError: Without a quantization that keeps ops float, or ``auto`` with names.
    """
    if not value:
        return (), False
    texts = [value] if isinstance(value, str) else list(value)
    names = tuple(n.strip() for t in texts for n in str(t).split(",") if n.strip())
    if mode is None or not mode.integer:
        raise UsageError("--keep-float is for --quantize dynamic, int8 or int16x8")
    if "auto" in names:
        if len(names) > 1:
            raise UsageError("--keep-float auto chooses the ops itself: give auto or names, "
                             "not both")
        return (), True
    if not names:
        raise UsageError("--keep-float: give auto or op names (as the per-op error table "
                         "lists them), comma-separated")
    return names, False


def evaluation(eval_data: str | Path | None, eval_output: str | None = None,
               max_accuracy_drop: float | None = None, *, validate: bool = True, steps: int = 1,
               allow_nonfinite: bool = False) -> Evaluation | None:
    """``--eval``, ``--eval-output`` and ``--max-accuracy-drop``, checked before any work: the
    file's labels (``specs.labels_in``) and its inputs' values are read now.

    Raises:
        UsageError: ``--eval-output`` or ``--max-accuracy-drop`` without ``--eval``; ``--eval``
            with ``--no-validate`` or ``--steps``; a missing file, bad labels, or inputs holding
            NaN/inf (without ``allow_nonfinite``).
    """
    if eval_data is None:
        for flag, value in (("--eval-output", eval_output),
                            ("--max-accuracy-drop", max_accuracy_drop)):
            if value is not None:
                raise UsageError(f"{flag} is for --eval data.npz (inputs and {LABELS})")
        return None
    if not validate:
        raise UsageError("--eval runs the artifact on labelled samples: drop --no-validate")
    if steps != 1:
        raise UsageError(f"--eval scores one call per sample: drop --steps {steps}")
    path = Path(eval_data)
    if not path.is_file():
        raise UsageError(f"--eval {eval_data}: no such file; give an .npz of the model's inputs "
                         f"and {LABELS}")
    arrays = read_arrays(str(path), "--eval")
    labels_in(arrays, f"--eval {eval_data}")
    for name, array in arrays.items():
        if name != LABELS and not allow_nonfinite:
            refuse_nonfinite(f"--eval {eval_data}", name, array)
    return Evaluation(path, eval_output, max_accuracy_drop)


def optimize_goal(optimize: str | Optimize | None, route: str | None,
                  validate: bool) -> Optimize | None:
    """``--optimize GOAL``, checked against the flags it can't honour.

    Raises:
        UsageError: An unknown goal, or with ``--route`` or ``--no-validate``.
    """
    if optimize is None:
        return None
    try:
        goal = Optimize(optimize)
    except ValueError:
        raise UsageError(f"--optimize {optimize}: the one goal so far is latency") from None
    if route is not None:
        raise UsageError("--optimize tries every route: drop --route")
    if not validate:
        raise UsageError("--optimize keeps only artifacts that match their source: "
                         "drop --no-validate")
    return goal


def shapes(dims: Sequence[str | Dim] = (), static: bool = False) -> Shapes:
    """``--dim NAME=LO..HI`` values (or ``Dim``) and ``--static`` as ``Shapes``.

    Raises:
        UsageError: A ``--dim`` is malformed or names a dimension twice, or comes with
            ``--static`` (which fixes every dimension).
    """
    if isinstance(dims, str):
        raise UsageError(f"dims={dims!r}: pass a list of NAME=LO..HI strings")
    ranges = tuple(d if isinstance(d, Dim) else parse_dim_flag(d) for d in dims)
    twice = sorted({d.name for d in ranges if [r.name for r in ranges].count(d.name) > 1})
    if twice:
        raise UsageError(f"--dim {', '.join(twice)}: given twice; give each dimension once")
    if ranges and static:
        raise UsageError("--dim gives a dynamic dimension its range, --static fixes every "
                         "dimension: drop one")
    return Shapes(ranges, static)


def shown(constants: Mapping[str, Scalar]) -> str:
    """``sr=16000, on=true``: constants as ``--const`` spells them."""
    return ", ".join(f"{k}={str(v).lower() if isinstance(v, bool) else v}"
                     for k, v in constants.items())


def constants(values: Mapping[str, Scalar] | Sequence[str]) -> dict[str, Scalar]:
    """``--const NAME=VALUE`` values (or a mapping of them) as typed constants: ``true`` and
    ``false`` are bools, digits ints, other numbers floats.

    Args:
        values: ``NAME=VALUE`` strings, or a mapping from input name to value.

    Returns:
        Input name -> value, in the order given.

    Raises:
        UsageError: Not ``NAME=VALUE``, a value that is no number or bool, or a name given twice.
    """
    pairs: list[tuple[str, Any]] = []
    if isinstance(values, Mapping):
        pairs = list(values.items())
    elif isinstance(values, str):
        raise UsageError(f"consts={values!r}: pass a list of NAME=VALUE strings or a mapping")
    else:
        for text in values:
            name, sep, raw = str(text).partition("=")
            if not sep or not name.strip() or not raw.strip():
                raise UsageError(f"--const {text!r}: expected NAME=VALUE, e.g. --const sr=16000")
            pairs.append((name.strip(), _scalar(name.strip(), raw.strip())))
    found: dict[str, Scalar] = {}
    for name, value in pairs:
        if not isinstance(name, str) or not _CONST_NAME.match(name):
            raise UsageError(f"--const {name!r}=...: not an input name")
        if hasattr(value, "item") and not isinstance(value, (bool, int, float)):
            value = value.item()  # a numpy scalar
        if not isinstance(value, (bool, int, float)):
            raise UsageError(f"--const {name}={value!r}: the value must be an int, a float or "
                             "a bool")
        if name in found:
            raise UsageError(f"--const {name}: given twice ({found[name]!r} and {value!r})")
        found[name] = value
    return found


def _scalar(name: str, raw: str) -> Scalar:
    """One ``--const`` value: a bool, an int or a float."""
    if raw.lower() in ("true", "false"):
        return raw.lower() == "true"
    for kind in (int, float):
        try:
            return kind(raw)
        except ValueError:
            continue
    raise UsageError(f"--const {name}={raw}: the value must be an int (16000), a float (0.5) or "
                     "a bool (true/false)")
