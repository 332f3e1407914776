"""Flags -> typed options: what the user asked of the loaders, converters, parity policy and
timing, checked once here so the library API and the CI gate build them the same way.

Modes are enums (``Quantize``, ``Optimize``), never strings compared in several places; a job
(``ConvertJob``, ``ValidateJob``, ``BenchJob``) is everything one command was asked to do.
"""

from __future__ import annotations

import dataclasses
import enum
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from portkit.bounds import (
    BATCH,
    MIN_RUNS,
    MIN_SECONDS,
    OPSET,
    SEED,
    THREADS,
    TOLERANCE_BOUNDS,
    WARMUP,
    Bound,
)
from portkit.errors import UsageError
from portkit.formats import TARGETS, Format
from portkit.specs import TensorSpec, read_arrays, refuse_nonfinite

# A value ``--const`` binds an input to (a Python scalar: TorchScript ``sr: int``, or an ONNX
# scalar tensor).
Scalar = bool | int | float
_CONST_NAME = re.compile(r"^[^=\s]+$")


class Quantize(str, enum.Enum):
    """TFLite quantization (``--quantize``)."""

    FP16 = "fp16"
    DYNAMIC = "dynamic"
    INT8 = "int8"
    INT16X8 = "int16x8"

    @property
    def calibrated(self) -> bool:
        """Whether it quantizes activations, from calibration data."""
        return self in (Quantize.INT8, Quantize.INT16X8)

    @classmethod
    def parse(cls, value: str | Quantize | None) -> Quantize | None:
        """``--quantize VALUE`` (None: float32).

        Raises:
            UsageError: Not a quantization mode.
        """
        if value is None:
            return None
        try:
            return cls(value)
        except ValueError:
            raise UsageError(f"--quantize {value}: one of "
                             f"{', '.join(m.value for m in cls)}") from None


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
        calibration: ``.npz`` file or folder of ``.npy`` files of representative inputs (int8).
        int8_io: Make a quantized TFLite model's inputs and outputs int8 as well.
        no_flex: Fail rather than emit TFLite ops that need the Flex (Select TF ops) runtime.
        opset: ONNX opset for converters that take one (None: the newest they support).
        variant: A converter option set the edge declares (``Variant.name``), for the hop
            that writes the target; None: the edge's default.
        allow_nonfinite: Let NaN and inf calibration values through (``--allow-nonfinite``).
    """

    load: LoadOptions = LoadOptions()
    quantize: Quantize | None = None
    calibration: str | None = None
    int8_io: bool = False
    no_flex: bool = False
    opset: int | None = None
    variant: str | None = None
    allow_nonfinite: bool = False


class OutputKind(str, enum.Enum):
    """What an output holds, which decides the metrics it is judged by (``--output-kind``)."""

    CLASSIFIER = "classifier"  # class scores: top-1/top-5 agreement where the policy asks
    EMBEDDING = "embedding"  # a vector whose direction matters: cosine, scaled error
    REGRESSION = "regression"  # values (maps, boxes, sequences): scaled error, cosine

    @classmethod
    def parse(cls, value: str | OutputKind) -> OutputKind:
        """An output kind by name.

        Raises:
            UsageError: Not a kind.
        """
        try:
            return cls(value)
        except ValueError:
            raise UsageError(f"--output-kind {value}: one of "
                             f"{', '.join(k.value for k in cls)}") from None


@dataclass(frozen=True)
class Tolerance:
    """How an artifact's outputs are judged against the reference: a parity policy.

    An element passes when ``|got - ref| <= atol + rtol * |ref| + scale_tol * scale``, where
    ``scale`` is the output's largest reference magnitude (over every sample): float rounding
    grows with the magnitudes a model computes, so the error a faithful artifact shows follows
    the output's scale, not each element's (a logit near zero in a map of logits in the hundreds
    carries the map's rounding). With ``atol`` None elements are not judged one by one
    (quantized models), only by cosine similarity and, for classifier outputs, by how often the
    artifact's top-1 class is the reference's (``min_top1``) and how often the reference's top-1
    class is in the artifact's top 5 (``min_top5``), over ``samples`` inputs.

    Attributes:
        atol: Absolute tolerance per element, or None.
        rtol: Relative tolerance per element.
        scale_tol: Tolerance per element as a fraction of the output's scale.
        min_cosine: Lowest cosine similarity that passes, or None.
        min_top1: Lowest top-1 agreement (0-1) that passes, or None.
        min_top5: Lowest top-5 agreement (0-1) that passes, or None.
        samples: How many inputs the source and artifact are compared on.
        policy: The policy's name (the precision it fits: fp32, fp16, dynamic, int8, int16x8).
        kind: What the output holds (None: guessed, see ``validators.parity.guess_kind``).
        allow_nonfinite: NaN and inf are compared rather than refused (``--allow-nonfinite``):
            inputs may hold them, and an output's must match the reference's exactly (same
            places, same values, NaN equal to NaN) while the finite rest is judged as usual.
            Without it an output holding any NaN or inf fails.
    """

    atol: float | None = 1e-9
    rtol: float = 0.0
    scale_tol: float = 1e-4
    min_cosine: float | None = None
    min_top1: float | None = None
    min_top5: float | None = None
    samples: int = 1
    policy: str = "fp32"
    kind: OutputKind | None = None
    allow_nonfinite: bool = False

    @classmethod
    def from_plain(cls, data: Mapping[str, Any]) -> Tolerance:
        """A tolerance from its JSON form (a bundle's manifest)."""
        kind = data.get("kind")
        return cls(**{**data, "kind": OutputKind(kind) if kind else None})


# Default policies by precision: float32 and float16 by error against the output's scale;
# quantized by cosine and top-k over a batch of inputs. The float numbers come from the labelled
# corpus of faithful and broken artifacts in tests/validators/corpus.py (README: "How portkit
# judges an artifact"); the quantized ones sit below what the fixtures measured.
POLICIES = {
    "fp32": Tolerance(),
    Quantize.FP16.value: Tolerance(atol=1e-6, rtol=0.0, scale_tol=1e-2, min_cosine=0.9999,
                                   policy="fp16"),
    Quantize.DYNAMIC.value: Tolerance(atol=None, rtol=0.0, scale_tol=0.0, min_cosine=0.99,
                                      min_top1=0.9, samples=32, policy="dynamic"),
    Quantize.INT8.value: Tolerance(atol=None, rtol=0.0, scale_tol=0.0, min_cosine=0.98,
                                   min_top1=0.8, min_top5=0.95, samples=32, policy="int8"),
    Quantize.INT16X8.value: Tolerance(atol=None, rtol=0.0, scale_tol=0.0, min_cosine=0.995,
                                      min_top1=0.9, samples=32, policy="int16x8"),
}


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
    """

    models: tuple[Path, ...]
    runtimes: tuple[str, ...] = ()
    inputs: tuple[TensorSpec, ...] = ()
    threads: int | None = None
    batch: int | None = None
    budget: Budget = Budget()

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
                    allow_nonfinite: bool = False) -> ConvertOptions:
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
        if mode is None or not mode.calibrated:
            raise UsageError("--calibration is for --quantize int8 or int16x8")
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
    return ConvertOptions(LoadOptions(signature, trust_model), mode, calibration, int8_io,
                          no_flex, opset, allow_nonfinite=allow_nonfinite)


def policy(quantize: Quantize | None = None, *, atol: float | None = None,
           rtol: float | None = None, scale_tol: float | None = None,
           samples: int | None = None, min_cosine: float | None = None,
           min_top1: float | None = None, min_top5: float | None = None,
           allow_nonfinite: bool = False) -> Tolerance:
    """The precision's default policy, with the numbers the user set (and
    ``--allow-nonfinite``).

    An explicit ``atol`` or ``rtol`` is an explicit ``numpy.allclose`` rule: the scale term is
    dropped unless ``scale_tol`` is given too.

    Raises:
        UsageError: A number is out of its flag's range (``TOLERANCE_BOUNDS``), infinite or
            not a number.
    """
    changes: dict[str, Any] = {key: TOLERANCE_BOUNDS[key].check(value) for key, value in (
        ("atol", atol), ("rtol", rtol), ("scale_tol", scale_tol), ("min_cosine", min_cosine),
        ("min_top1", min_top1), ("min_top5", min_top5), ("samples", samples))
        if value is not None}
    if (atol is not None or rtol is not None) and scale_tol is None:
        changes["scale_tol"] = 0.0
    if allow_nonfinite:
        changes["allow_nonfinite"] = True
    return dataclasses.replace(POLICIES[quantize.value if quantize else "fp32"], **changes)


def output_kinds(base: Tolerance, kinds: Mapping[str, str | OutputKind] | Sequence[str],
                 per_output: Mapping[str, Tolerance] | None = None) -> dict[str, Tolerance]:
    """``--output-kind NAME=KIND`` values (or a mapping) as per-output policies: each named
    output keeps its own policy (``per_output``, else ``base``) with the kind set.

    Raises:
        UsageError: A value is not ``NAME=KIND`` or names an unknown kind.
    """
    if not isinstance(kinds, Mapping):
        pairs = {}
        for text in kinds:
            name, sep, kind = text.partition("=")
            if not sep or not name.strip():
                raise UsageError(f"--output-kind {text!r}: expected NAME=KIND, e.g. "
                                 "--output-kind embedding=embedding")
            pairs[name.strip()] = kind.strip()
        kinds = pairs
    merged = dict(per_output or {})
    for name, kind in kinds.items():
        merged[name] = dataclasses.replace(merged.get(name, base), kind=OutputKind.parse(kind))
    return merged


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
