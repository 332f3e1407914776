"""The converters' options (``--to``, ``--quantize``, ``--calibration``, ``--keep-float``,
``--int8-io``, ``--no-flex``, ``--opset``, ``--optimize``, ``--seq-buckets``), checked where
they only make sense together."""

from __future__ import annotations

import enum
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from portkit.bounds import OPSET
from portkit.errors import UsageError
from portkit.formats import TARGETS, Format
from portkit.options.loading import LoadOptions
from portkit.policies import Quantize, Tolerance
from portkit.specs import read_arrays, refuse_nonfinite


class Optimize(str, enum.Enum):
    """What ``--optimize`` ships: the fastest artifact that matched."""

    LATENCY = "latency"


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
        seq_buckets: ``--seq-buckets``: where no route keeps a sequence dimension dynamic, a
            TFLite signature per size, each validated (``convert/dynamic.fallback``); empty:
            sizes from the sequence's range (``auto``); None: not asked (it is fixed).
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
    seq_buckets: tuple[int, ...] | None = None


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
                    keep_float: str | Sequence[str] | None = None,
                    seq_buckets: str | Sequence[int] | None = None) -> ConvertOptions:
    """Check the flags that only make sense together and build the converters' options.

    Raises:
        UsageError: A flag is out of place (``--quantize`` for ONNX, ``--int8-io`` without
            int8, ``--seq-buckets`` but for TFLite...), ``opset`` is out of range, or
            calibration data is missing, can't be read as arrays or holds NaN/inf (without
            ``allow_nonfinite``).
    """
    if opset is not None:
        opset = OPSET.check(opset)
    mode = Quantize.parse(quantize)
    if mode is not None:
        if mode is Quantize.INT4:
            raise UsageError("--quantize int4: int4 weights are for a language model (a Hugging "
                             "Face causal-LM directory)" + (
                                 "; for this model use --quantize dynamic (int8 weights)"
                                 if target in (Format.TFLITE, Format.EXECUTORCH) else ""))
        if target is Format.EXECUTORCH and mode is Quantize.INT16X8:
            raise UsageError(f"--quantize {mode.value}: ExecuTorch programs quantize fp16, "
                             "dynamic or int8 (PT2E, XNNPACK)")
        if target not in (Format.TFLITE, Format.EXECUTORCH):
            raise UsageError(f"--quantize {mode.value}: quantization is for --to tflite or "
                             "--to executorch")
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
    if int8_io and (mode is not Quantize.INT8 or target is not Format.TFLITE):
        raise UsageError("--int8-io is for --quantize int8 --to tflite")
    if no_flex and target is not Format.TFLITE:
        raise UsageError("--no-flex is for --to tflite")
    names, auto = _keep_float(keep_float, mode)
    buckets = parse_buckets(seq_buckets)
    if buckets is not None and target is not Format.TFLITE:
        raise UsageError("--seq-buckets is for --to tflite (a signature per length); ONNX and "
                         "ExecuTorch keep a sequence dynamic")
    return ConvertOptions(LoadOptions(signature, trust_model), mode, calibration, int8_io,
                          no_flex, opset, allow_nonfinite=allow_nonfinite, keep_float=names,
                          keep_float_auto=auto, seq_buckets=buckets)


def parse_buckets(value: str | Sequence[int] | None) -> tuple[int, ...] | None:
    """``--seq-buckets 16,64,128`` (or ``auto``, or sizes) as sizes: empty for ``auto``
    (chosen from the sequence's range), None when not given.

    Raises:
        UsageError: Not ``auto`` nor whole numbers of at least 1, comma-separated.
    """
    if value is None:
        return None
    if isinstance(value, str) and value.strip().lower() == "auto":
        return ()
    texts = value.split(",") if isinstance(value, str) else list(value)
    try:
        sizes = tuple(int(str(t).strip()) for t in texts)
    except ValueError:
        sizes = ()
    if not sizes or min(sizes) < 1:
        raise UsageError(f"--seq-buckets {value}: give the sequence lengths to make a "
                         "signature for, comma-separated (16,64,128), or auto (the top of the "
                         "sequence's range and its halvings, at most 4)")
    return tuple(sorted(set(sizes)))


def _keep_float(value: str | Sequence[str] | None, mode: Quantize | None
                ) -> tuple[tuple[str, ...], bool]:
    """``--keep-float auto`` or ``--keep-float NAME,...`` (repeatable): the op names (module
    names for ExecuTorch), and whether portkit chooses them.

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
        raise UsageError("--keep-float: give auto or names, comma-separated: TFLite op names "
                         "(as the per-op error table lists them), ExecuTorch module names "
                         "(conv1, layer.0.attention)")
    return names, False


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


