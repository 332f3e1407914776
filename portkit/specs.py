"""Plain descriptions of tensors, inputs and tolerances: frozen dataclasses, no framework imports."""

from __future__ import annotations

import re
from dataclasses import dataclass

import numpy as np

from portkit.errors import UsageError

_DTYPES = ("float32", "float16", "float64", "int64", "int32", "int8", "uint8", "bool")
_INPUT_FLAG = re.compile(r"^(?P<name>[^:]+):(?P<shape>\d+(?:x\d+)*|scalar)(?::(?P<dtype>\w+))?$")


@dataclass(frozen=True)
class TensorSpec:
    """A named tensor's shape and dtype.

    ``None`` in a shape is a dimension not fixed; a shape of ``None`` is an unknown rank; an
    empty dtype is an unknown one.
    """

    name: str
    shape: tuple[int | None, ...] | None
    dtype: str = "float32"

    @property
    def is_static(self) -> bool:
        """Whether every dimension is known."""
        return self.shape is not None and all(isinstance(d, int) and d >= 0 for d in self.shape)

    def describe(self) -> str:
        """``name: 1x3x64x64 float32`` (``?`` for a dimension not fixed)."""
        if self.shape is None:
            dims = "?"
        else:
            dims = "x".join("?" if d is None else str(d) for d in self.shape) or "scalar"
        return f"{self.name}: {dims} {self.dtype or '?'}"


@dataclass(frozen=True)
class Tolerance:
    """An element passes when ``|got - ref| <= atol + rtol * |ref|`` (numpy.allclose)."""

    atol: float = 1e-4
    rtol: float = 1e-3


def parse_input_flag(text: str) -> TensorSpec:
    """Parse ``--input NAME:1x3x224x224[:dtype]``.

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
            "or --input ids:1x128:int64"
        )
    dtype = m["dtype"] or ""  # empty: the model's own dtype, else float32
    if dtype and dtype not in _DTYPES:
        raise UsageError(f"--input {text!r}: unknown dtype {dtype!r}; one of {', '.join(_DTYPES)}")
    shape = () if m["shape"] == "scalar" else tuple(int(d) for d in m["shape"].split("x"))
    return TensorSpec(m["name"], shape, dtype)


def resolve_inputs(
    model_name: str, stored: list[TensorSpec], given: list[TensorSpec]
) -> list[TensorSpec]:
    """Merge the shapes a model stores with the ones given by ``--input``.

    Args:
        model_name: The model's file name, for error messages.
        stored: Inputs as the model declares them (shapes may be unknown).
        given: Inputs from ``--input``; they override what is stored.

    Returns:
        One static spec per model input, in the model's order.

    Raises:
        UsageError: An ``--input`` names no input of the model, or a shape is still unknown.
    """
    by_name = {s.name: s for s in given}
    known = {s.name for s in stored}
    unknown = [n for n in by_name if n not in known]
    if unknown and len(given) == len(stored) and not any(n in known for n in by_name):
        # Names differ from the model's, but one flag per input: take them in order.
        by_name = {s.name: TensorSpec(s.name, g.shape, g.dtype) for s, g in zip(stored, given)}
    elif unknown:
        raise UsageError(
            f"{model_name}: --input names {', '.join(unknown)}, but the model's inputs are "
            f"{', '.join(s.name for s in stored) or '(none)'}"
        )
    resolved = []
    for s in stored:
        spec = by_name.get(s.name, s)
        spec = TensorSpec(s.name, spec.shape, spec.dtype or s.dtype or "float32")
        if not spec.is_static:
            flags = " ".join(f"--input {x.name}:1x3x224x224" for x in stored if x.name not in by_name)
            raise UsageError(
                f"{model_name}: the shape of input {s.name!r} is not stored in the model "
                f"({s.describe()}); pass it, e.g. {flags}"
            )
        resolved.append(spec)
    return resolved


def make_inputs(specs: list[TensorSpec], seed: int) -> dict[str, np.ndarray]:
    """Seeded inputs: floats standard normal, integers in [0, 10), bools fair coins.

    Args:
        specs: Static input specs.
        seed: Seed for numpy's default generator.

    Returns:
        One array per spec, by name, in order.
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


def load_inputs_file(path: str, specs: list[TensorSpec]) -> dict[str, np.ndarray]:
    """Read ``--inputs file.npz`` (never unpickling object arrays).

    Args:
        path: An ``.npz`` file holding one array per model input (by name, else in order).
        specs: The model's inputs.

    Returns:
        One array per spec, by name, in order.

    Raises:
        UsageError: The file can't be read, holds object arrays, or lacks an input.
    """
    try:
        with np.load(path, allow_pickle=False) as data:
            arrays = {k: data[k] for k in data.files}
    except (OSError, ValueError) as e:
        raise UsageError(f"--inputs {path}: cannot read it as .npz ({e})") from None
    if all(s.name in arrays for s in specs):
        return {s.name: arrays[s.name] for s in specs}
    if len(arrays) == len(specs):
        return {s.name: a for s, a in zip(specs, arrays.values())}
    raise UsageError(
        f"--inputs {path}: holds {', '.join(arrays) or 'nothing'}; the model needs "
        f"{', '.join(s.name for s in specs)}"
    )
