"""Plain descriptions of tensors and their sample values: ``--input`` specs, seeded inputs,
``.npz`` inputs; no framework imports."""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np

from portkit.errors import UsageError
from portkit.formats.arrays import listed, read_arrays

_DTYPES = ("float32", "float16", "float64", "int64", "int32", "int8", "uint8", "bool")
_DIM = r"(?:-?\d+|[A-Za-z_][A-Za-z0-9_]*)"  # a size, or a name: a dimension left free
_INPUT_FLAG = re.compile(
    rf"^(?P<name>[^:]+):(?P<shape>{_DIM}(?:x{_DIM})*|scalar)(?::(?P<dtype>\w+))?$")
# Array names that hold no input name (``np.savez(path, a, b)``): matched to inputs in order.
_POSITIONAL = re.compile(r"^arr_\d+$")
# The array of an ``--eval`` file that holds each sample's class, never an input.
LABELS = "labels"


@dataclass(frozen=True)
class Dim:
    """A dimension free to change: its name (inputs that share it change together) and the
    sizes it takes, ``lo`` to ``hi`` (None: no upper bound known)."""

    name: str
    lo: int = 1
    hi: int | None = None

    def describe(self) -> str:
        """``seq 2..128``."""
        return f"{self.name} {self.lo}..{self.hi if self.hi is not None else 'inf'}"


@dataclass(frozen=True)
class TensorSpec:
    """A named tensor's shape and dtype.

    ``None`` in a shape is a dimension not fixed; a shape of ``None`` is an unknown rank; an
    empty dtype is an unknown one. ``dims`` (empty: every dimension fixed) holds, per axis, the
    ``Dim`` a dynamic dimension is free along; the shape's size there is an example.
    """

    name: str
    shape: tuple[int | None, ...] | None
    dtype: str = "float32"
    dims: tuple[Dim | None, ...] = ()

    @property
    def dynamic(self) -> tuple[Dim, ...]:
        """The dimensions free to change, in axis order."""
        return tuple(d for d in self.dims if d is not None)

    @property
    def is_static(self) -> bool:
        """Whether every dimension is known."""
        return self.shape is not None and all(isinstance(d, int) and d >= 0 for d in self.shape)

    def flag(self) -> str:
        """As ``--input`` spells it: ``x:Nx3x64x64`` (``:int64`` when a dtype is set)."""
        dims = self.dims or (None,) * len(self.shape or ())
        sizes = "x".join(d.name if d else str(s) for s, d in zip(self.shape or (), dims))
        return f"{self.name}:{sizes or 'scalar'}" + (f":{self.dtype}" if self.dtype else "")

    def describe(self) -> str:
        """``name: 1x3x64x64 float32`` (``?`` for a dimension not fixed)."""
        if self.shape is None:
            dims = "?"
        else:
            dims = "x".join("?" if d is None else str(d) for d in self.shape) or "scalar"
        free = f" (dynamic {', '.join(d.describe() for d in self.dynamic)})" \
            if self.dynamic else ""
        return f"{self.name}: {dims} {self.dtype or '?'}{free}"


def parse_input_flag(text: str) -> TensorSpec:
    """Parse ``--input NAME:1x3x224x224[:dtype]``; a name in place of a size
    (``x:Nx3x224x224``) leaves that dimension free (``Dim``, its range given by ``--dim``).

    Args:
        text: The flag's value.

    Returns:
        The tensor spec it names.

    Raises:
        UsageError: The value is not of that form or names an unknown dtype.
    """
    m = _INPUT_FLAG.match(text.strip())
    if not m:
        raise UsageError(
            f"--input {text!r}: expected NAME:SHAPE[:DTYPE], e.g. --input x:1x3x224x224 "
            "or --input ids:1x128:int64 (a name for a dynamic dimension: x:Nx3x224x224)"
        )
    dtype = m["dtype"] or ""  # empty: the model's own dtype, else float32
    if dtype and dtype not in _DTYPES:
        raise UsageError(f"--input {text!r}: unknown dtype {dtype!r}; one of {', '.join(_DTYPES)}")
    tokens = [] if m["shape"] == "scalar" else m["shape"].split("x")
    named = tuple(Dim(t) if not t.lstrip("-").isdigit() else None for t in tokens)
    shape = tuple(None if d else int(t) for t, d in zip(tokens, named))
    if any(d is not None and d < 1 for d in shape):
        raise UsageError(f"--input {text!r}: every dimension must be at least 1 (a tensor with "
                         "a 0 or negative dimension holds nothing to compare); e.g. "
                         f"--input {m['name']}:{'x'.join(str(max(d or 1, 1)) for d in shape)}")
    return TensorSpec(m["name"], shape, dtype, named if any(named) else ())


def parse_inputs(inputs: Sequence[str | TensorSpec]) -> list[TensorSpec]:
    """``--input`` values (or specs already parsed) as specs.

    Raises:
        UsageError: A value is not ``NAME:SHAPE[:DTYPE]``.
    """
    return [parse_input_flag(s) if isinstance(s, str) else s for s in inputs]


def specs_from_arrays(stored: list[TensorSpec], arrays: dict[str, np.ndarray]
                      ) -> list[TensorSpec]:
    """The shape and dtype of one sample of each input ``arrays`` holds (``match_arrays``).

    An array of the input's rank is one sample; one rank higher holds samples on its first
    axis; an input of unknown rank takes the array as one sample (a folder's stacked ``.npy``
    files, read as the array ``""``, always hold samples on the first axis). For an input whose
    first dimension is free (a Keras ``None`` batch, a dynamic ``batch``), an array of its rank
    holds samples of batch 1 on that axis, as calibration sets are saved (``(128, 224, 224, 3)``
    is 128 images, not one batch of 128); a batch of several is given one rank higher. An input
    of unknown dtype takes the array's (``default_dtype``).
    """
    stacked = "" in arrays
    found = []
    for spec, array in zip(stored, _by_input(stored, arrays)):
        if array is None:
            continue
        shape = tuple(array.shape)
        if stacked or (spec.shape is not None and len(shape) == len(spec.shape) + 1):
            shape = shape[1:]
        elif shape and spec.shape is not None and len(shape) == len(spec.shape) \
                and _free_first(spec):
            shape = (1, *shape[1:])
        found.append(TensorSpec(spec.name, shape, spec.dtype or default_dtype(array.dtype)))
    return found


def _free_first(spec: TensorSpec) -> bool:
    """Whether ``spec``'s first dimension is free (unknown, or a dynamic ``Dim``)."""
    return bool(spec.shape) and (spec.shape[0] is None  # type: ignore[index]
                                 or bool(spec.dims) and spec.dims[0] is not None)


def default_dtype(dtype: np.dtype) -> str:
    """The dtype an input the model declares none for (TorchScript) is fed as, given an array
    of ``dtype``: float64 as float32 (portkit's float, as seeded inputs are), others as they
    are."""
    return "float32" if dtype == np.float64 else dtype.name


def make_inputs(specs: list[TensorSpec], seed: int) -> dict[str, np.ndarray]:
    """Seeded inputs: floats standard normal, integers in [0, 10), bools fair coins.

    Args:
        specs: Static input specs.
        seed: Seed for numpy's default generator.

    Returns:
        One array per spec, by name, in order. (Sample ``i`` of a batch uses ``seed + i``.)
    """
    rng = np.random.default_rng(seed)
    out: dict[str, np.ndarray] = {}
    for s in specs:
        shape = tuple(int(d) for d in s.shape)  # type: ignore[arg-type]
        if s.dtype.startswith("float"):
            out[s.name] = rng.standard_normal(shape).astype(s.dtype)
        elif s.dtype == "bool":
            out[s.name] = rng.integers(0, 2, shape).astype(bool)
        else:
            out[s.name] = rng.integers(0, 10, shape).astype(s.dtype)
    return out


def load_inputs_file(path: str, specs: list[TensorSpec], what: str = "--inputs",
                     allow_nonfinite: bool = False, ignore: Sequence[str] = ()
                     ) -> list[dict[str, np.ndarray]]:
    """Read ``--inputs file.npz`` (or ``--calibration``): one or more samples per input.

    An array shaped like its input is one sample; one with an extra leading axis is a batch of
    samples (``(32, 1, 3, 224, 224)`` for a ``1x3x224x224`` input). A folder of ``.npy`` files is
    read as one sample per file, for a model with one input. Object arrays are never unpickled.
    Each array is cast to its input's dtype by ``cast_to`` and, unless ``allow_nonfinite``,
    must hold no NaN or inf (``refuse_nonfinite``).

    Args:
        path: An ``.npz`` file holding one array per model input (by name, else in order:
            ``match_arrays``), or a folder of ``.npy`` files.
        specs: The model's inputs (static).
        what: The flag named in errors.
        allow_nonfinite: Let NaN and inf through (``--allow-nonfinite``).
        ignore: Arrays that are no input (``--eval``'s ``labels``).

    Returns:
        One feed dict per sample.

    Raises:
        UsageError: The file can't be read, holds object arrays, lacks an input or names one
            the model doesn't have, shapes don't fit, a dtype can't be cast without changing
            values, or values are NaN/inf.
    """
    arrays = read_arrays(path, what, ignore)
    if "" in arrays and len(specs) != 1:
        raise UsageError(f"{what} {path}: a folder needs one .npy file per sample of a "
                         f"one-input model; the model has {len(specs)} inputs")
    chosen = _by_input(specs, arrays)
    if any(a is None for a in chosen) or _stray(arrays, specs):
        raise UsageError(
            f"{what} {path}: holds {listed(arrays) or 'nothing'}; the model's inputs are "
            f"{listed(s.name for s in specs)}: save one array per input under its name"
        )
    where = f"{what} {path}"
    chosen = [cast_to(a, s.dtype, where, s.name) if s.dtype else a
              for s, a in zip(specs, chosen)]
    if not allow_nonfinite:
        for s, a in zip(specs, chosen):
            refuse_nonfinite(where, s.name, a)
    batches = [_as_samples(what, path, s, a) for s, a in zip(specs, chosen)]
    counts = {len(b) for b in batches}
    if len(counts) != 1:
        raise UsageError(
            f"{what} {path}: inputs hold different numbers of samples ({sorted(counts)})")
    return [{s.name: b[i] for s, b in zip(specs, batches)} for i in range(counts.pop())]


def cast_to(array: np.ndarray, dtype: str, where: str, name: str) -> np.ndarray:
    """``array`` as the input's ``dtype``, when the cast changes no value; the rule:

    * bool and integer arrays are cast to any numeric or bool dtype that holds every value
      exactly (int64 token ids to int32, integers up to 2**24 to float32, 0/1 to bool);
    * float arrays are cast to another float dtype when no finite value becomes inf (float64
      to float32 rounds, as the model would);
    * anything else (floats for an integer or bool input, complex, strings) is refused.

    Args:
        array: The given array.
        dtype: The dtype the input takes.
        where: The flag and file, for the error.
        name: The input's name, for the error.

    Returns:
        The array in ``dtype`` (``array`` itself when it already is).

    Raises:
        UsageError: The cast would change a value, or the kinds don't mix.
    """
    target, src = np.dtype(dtype), array.dtype
    if src == target:
        return array
    fix = f"save it as {target.name}"
    if src.kind in "biu" and target.kind in "biuf":
        out = array.astype(target)
        changed = int(np.count_nonzero(out.astype(src) != array))
        if not changed:
            return out
        why = f"{changed} of its values are not exactly {target.name} values"
    elif src.kind == "f" and target.kind == "f":
        with np.errstate(over="ignore"):
            out = array.astype(target)
        overflow = int(np.count_nonzero(np.isinf(out) & np.isfinite(array)))
        if not overflow:
            return out
        why = f"{overflow} of its finite values overflow {target.name} to inf"
    else:
        why = "portkit casts only where no value changes"
        if src.kind == "f" and target.kind in "biu":
            fix += " (whole numbers)"
    raise UsageError(f"{where}: input {name!r} is {src.name} but the model takes "
                     f"{target.name}; {why}: {fix}")


def labels_in(arrays: dict[str, np.ndarray], where: str) -> np.ndarray:
    """The ``labels`` array of a labelled inputs file (``--eval``): each sample's class index.

    Args:
        arrays: The file's arrays (``read_arrays``).
        where: The flag and file, for errors.

    Raises:
        UsageError: There is none, or it is not a 1-D array of integers >= 0.
    """
    if LABELS not in arrays:
        held = listed(repr(n) for n in arrays if n) or "no named arrays"
        raise UsageError(f"{where}: holds {held} but no {LABELS!r} array: save each sample's "
                         f"class index beside the inputs, numpy.savez(path, x=..., "
                         f"{LABELS}=an int array of shape (samples,))")
    labels = arrays[LABELS]
    if labels.dtype.kind not in "iu":
        raise UsageError(f"{where}: {LABELS!r} is {labels.dtype.name}, not integers: save "
                         "each sample's class index as an int array (e.g. "
                         f"{LABELS}.astype(numpy.int64))")
    if labels.ndim != 1 or not labels.size:
        raise UsageError(f"{where}: {LABELS!r} has shape {labels.shape}; give one class index "
                         "per sample, shape (samples,)")
    if labels.min() < 0:
        raise UsageError(f"{where}: {LABELS!r} holds {int(np.count_nonzero(labels < 0))} "
                         f"negative value(s) (the smallest {labels.min()}); class indices start "
                         "at 0")
    return labels


def nonfinite_counts(array: np.ndarray) -> tuple[int, int]:
    """How many NaN and how many inf (either sign) ``array`` holds (0, 0 unless floating)."""
    if array.dtype.kind not in "fc":
        return 0, 0
    return int(np.count_nonzero(np.isnan(array))), int(np.count_nonzero(np.isinf(array)))


def refuse_nonfinite(where: str, name: str, array: np.ndarray) -> None:
    """Refuse an input holding NaN or inf: both sides then give NaN, and the match proves
    nothing.

    Raises:
        UsageError: ``array`` holds NaN or inf, naming how many.
    """
    nan, inf = nonfinite_counts(array)
    if nan or inf:
        raise UsageError(f"{where}: input {name!r} holds {nan} NaN and {inf} inf of "
                         f"{array.size} values; parity on them proves nothing: give finite "
                         "values, or pass --allow-nonfinite to compare them as they are")


def match_arrays(specs: Sequence[TensorSpec], arrays: Mapping[str, np.ndarray]
                 ) -> dict[str, str]:
    """Which array of a file feeds which input: by name; when no array is named for an input,
    in order: a one-input model takes one array under any name, several inputs take as many
    arrays when each array's rank fits its input's (the input's rank, or one more for samples
    on a first axis). A Keras input has two names (its ``InputLayer``'s and its
    ``KerasTensor``'s, renumbered on every load), so a file saved under either feeds it. A file
    that names some inputs is matched by name only: an array of another name beside them is
    another tensor (``attention_mask`` is no ``token_type_ids``), not one to guess at.

    Returns:
        Input name -> array name, for the inputs an array feeds.
    """
    found = {s.name: s.name for s in specs if s.name in arrays}
    names = list(arrays)
    if found or len(names) != len(specs):
        return found
    if len(specs) == 1 or all(_rank_fits(s, arrays[n], n == "") for s, n in zip(specs, names)):
        return {s.name: n for s, n in zip(specs, names)}
    return {}


def matched_by_position(specs: Sequence[TensorSpec], arrays: Mapping[str, np.ndarray],
                        what: str) -> list[str]:
    """A note for each input fed an array of another name (``match_arrays``), unnamed arrays
    aside: what the report says it did."""
    return [f"input {name!r} read from the array {array!r} of {what}, by position (no array "
            f"is named {name!r})" for name, array in match_arrays(specs, arrays).items()
            if name != array and array and not _POSITIONAL.match(array)]


def _rank_fits(spec: TensorSpec, array: np.ndarray, stacked: bool) -> bool:
    """Whether ``array`` can hold samples of ``spec``: its rank, or one more."""
    if spec.shape is None:
        return True
    return array.ndim - stacked in (len(spec.shape), len(spec.shape) + 1)


def _stray(arrays: Mapping[str, np.ndarray], specs: Sequence[TensorSpec]) -> list[str]:
    """The named arrays that feed no input (``match_arrays``); unnamed ones (``arr_0``..., a
    folder's ``""``) aside, which the reading of the samples explains."""
    used = set(match_arrays(specs, arrays).values())
    return [n for n in arrays if n not in used and n and not _POSITIONAL.match(n)]


def _by_input(specs: Sequence[TensorSpec], arrays: Mapping[str, np.ndarray]
              ) -> list[np.ndarray | None]:
    """Each input's array (``match_arrays``), None where no array feeds it."""
    found = match_arrays(specs, arrays)
    return [arrays[found[s.name]] if s.name in found else None for s in specs]


def _as_samples(what: str, path: str, spec: TensorSpec, array: np.ndarray) -> list[np.ndarray]:
    shape = tuple(spec.shape or ())
    if array.shape == shape:
        return [array]
    if array.shape[1:] == shape:
        return list(array)
    if shape and shape[0] == 1 and array.shape[1:] == shape[1:]:
        return [a[None] for a in array]  # the batch axis holds the samples
    raise UsageError(
        f"{what} {path}: array for {spec.name!r} has shape {array.shape}; expected "
        f"{shape} or (samples, *{shape})"
    )


def calibrated_part(path: str, count: int, holdout: int) -> int:
    """How many of ``--calibration``'s ``count`` samples are calibrated on when its last
    ``holdout`` are held back to validate the quantized model on (never judged on the samples
    it was calibrated on).

    Raises:
        UsageError: The file holds no more samples than are held back.
    """
    if count <= holdout:
        raise UsageError(
            f"--calibration {path}: {count} sample(s); portkit holds back the last {holdout} to "
            f"validate the quantized model on (the policy compares over {holdout}) and "
            f"calibrates on the rest: give about {holdout + 100} ({holdout} + ~100 to calibrate "
            f"on), or --inputs with {holdout} other representative samples")
    return count - holdout


def load_calibration(path: str, specs: list[TensorSpec], holdout: int = 0,
                     allow_nonfinite: bool = False) -> list[dict[str, np.ndarray]]:
    """``--calibration``'s samples to calibrate on: all but the last ``holdout``
    (``calibrated_part``), read as ``load_inputs_file`` reads them."""
    samples = load_inputs_file(path, specs, what="--calibration", allow_nonfinite=allow_nonfinite)
    return samples[:calibrated_part(path, len(samples), holdout)] if holdout else samples
