"""How the source is fed beyond its input shapes: ``--const`` values bound to inputs, and
``--dim``/``--static`` (which dimensions stay dynamic)."""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from typing import Any

from portkit.errors import UsageError
from portkit.shapes import Shapes, parse_dim_flag
from portkit.specs import Dim

# A value ``--const`` binds an input to (a Python scalar: TorchScript ``sr: int``, or an ONNX
# scalar tensor).
Scalar = bool | int | float
_CONST_NAME = re.compile(r"^[^=\s]+$")


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


