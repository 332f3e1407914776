"""How the source is fed (``Feed``): its inputs' shapes or an inputs file, the seed, how many
samples, ``--const`` values bound to inputs, ``--steps``/``--state``, ``--dim``/``--static``
(which dimensions stay dynamic) and how the model is opened. ``convert``, ``validate``,
``debug`` and ``portkit check`` feed the source through one ``Feed``; ``tasks.reference`` runs
it."""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from portkit.bounds import SEED
from portkit.errors import UsageError
from portkit.formats.arrays import check_arrays, read_arrays
from portkit.options.loading import LoadOptions
from portkit.shapes import Shapes, parse_dim_flag
from portkit.specs import Dim, TensorSpec, parse_inputs

# A value ``--const`` binds an input to (a Python scalar: TorchScript ``sr: int``, or an ONNX
# scalar tensor).
Scalar = bool | int | float
_CONST_NAME = re.compile(r"^[^=\s]+$")


@dataclass(frozen=True)
class Feed:
    """How the source is fed to get the reference outputs an artifact is judged against.

    Attributes:
        inputs: ``--input`` specs, for shapes the source doesn't store.
        file: An ``.npz`` of inputs (``--inputs``; ``--calibration`` when ``held_back``;
            ``--eval``) instead of seeded ones. Its arrays are cast to the inputs' dtypes where
            no value changes; NaN/inf only with ``allow_nonfinite``.
        seed: Seed of generated inputs: sample ``i`` uses ``seed + i``.
        samples: How many inputs (the parity policy's ``samples``: the pair builder
            ``options.judged`` copies it from there).
        allow_nonfinite: Let NaN/inf through in ``file`` (``--allow-nonfinite``).
        constants: ``--const`` values by input name: the source runs with them, the artifact
            has them bound.
        steps: Consecutive calls per sample, each fed the state the previous returned.
        state: Input name -> the output fed back as it (empty: guessed when ``steps`` > 1).
        shapes: ``--dim`` ranges and ``--static``: which dimensions stay dynamic, and the
            sizes the artifact is validated at.
        load: How the source is opened.
        held_back: With a ``file``: only its last ``held_back`` samples (the ``--calibration``
            samples a quantized artifact was not calibrated on).
        flag: The flag that gave ``file``, for errors.
        ignore: Arrays of ``file`` that are no inputs (``--eval``'s labels).
    """

    inputs: tuple[TensorSpec, ...] = ()
    file: Path | None = None
    seed: int = 0
    samples: int = 1
    allow_nonfinite: bool = False
    constants: Mapping[str, Scalar] = field(default_factory=dict)
    steps: int = 1
    state: Mapping[str, str] = field(default_factory=dict)
    shapes: Shapes = Shapes()
    load: LoadOptions = LoadOptions()
    held_back: int = 0
    flag: str = "--inputs"
    ignore: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        """Refuse the values ``--seed`` refuses."""
        SEED.check(self.seed)


def feed(*, inputs: Sequence[str | TensorSpec] = (), inputs_file: str | Path | None = None,
         seed: int = 0, consts: Mapping[str, Scalar] | Sequence[str] = (), steps: int = 1,
         state: Mapping[str, str] | Sequence[str] = (), dims: Sequence[str | Dim] = (),
         static: bool = False, signature: str | None = None, trust_model: bool = False,
         allow_nonfinite: bool = False) -> Feed:
    """A ``Feed`` from the flags' values (the CLI's, the API's keywords, ``portkit.toml``'s):
    the one place they are parsed. ``samples`` is set with the judgement (``options.judged``).

    Raises:
        UsageError: A malformed ``--input``, ``--const``, ``--state`` or ``--dim``; an
            ``--inputs`` file ``formats.arrays.check_arrays`` refuses.
    """
    if inputs_file:  # refused here, before any work, as the worker would refuse it
        check_arrays(inputs_file, "--inputs")
    return Feed(inputs=tuple(parse_inputs(inputs)),
                file=Path(inputs_file) if inputs_file else None, seed=seed,
                allow_nonfinite=allow_nonfinite, constants=constants(consts), steps=steps,
                state=parse_state(state), shapes=shapes(dims, static),
                load=LoadOptions(signature, trust_model))


def bucketed(feed: Feed, specs: Sequence[TensorSpec], dim: str, sizes: Sequence[int],
             artifact: str) -> Feed:
    """``feed`` for an artifact of one signature per length along ``dim`` (``--seq-buckets``):
    validated at each of ``sizes`` (``Shapes.buckets``) whatever sizes ``dim``'s range gives.

    Args:
        feed: How the source is fed.
        specs: The source's inputs, resolved (their ``dims``).
        dim: The source's dimension the artifact holds buckets of.
        sizes: The buckets' lengths.
        artifact: The artifact's file name, for errors.

    Raises:
        UsageError: An ``--input`` or the ``--inputs`` file forces a length along ``dim`` that
            no bucket holds.
    """
    where = {s.name: (i, len(s.dims)) for s in specs for i, d in enumerate(s.dims)
             if d is not None and d.name == dim}
    forced = [(f"--input {g.name}:{'x'.join(map(str, g.shape))}", g.shape[where[g.name][0]])
              for g in feed.inputs if g.name in where and g.shape is not None
              and len(g.shape) == where[g.name][1]
              and not (g.dims and g.dims[where[g.name][0]] is not None)]
    if feed.file is not None:
        arrays = read_arrays(str(feed.file), feed.flag, feed.ignore, only=set(where))
        forced += [(f"{feed.flag} {feed.file}: {name}", a.shape[a.ndim - rank + axis])
                   for name, a in arrays.items() if name in where
                   for axis, rank in [where[name]] if a.ndim >= rank]
    for said, n in forced:
        if n not in sizes:
            raise UsageError(f"{said}: {artifact} holds one signature per length of {dim} "
                             f"({', '.join(map(str, sizes))}) and none takes {n}; give one of "
                             f"those lengths, or convert again with --seq-buckets naming {n}")
    buckets = feed.shapes.buckets + ((dim, tuple(sizes)),)
    return replace(feed, shapes=replace(feed.shapes, buckets=buckets))


def parse_state(values: Mapping[str, str] | Sequence[str]) -> dict[str, str]:
    """``--state IN=OUT`` values (or a mapping): output OUT is fed back as input IN.

    Raises:
        UsageError: A value is not ``IN=OUT``.
    """
    if isinstance(values, Mapping):
        return dict(values)
    pairs = {}
    for text in values:
        name, sep, out = text.partition("=")
        if not sep or not name.strip() or not out.strip():
            raise UsageError(f"--state {text!r}: expected IN=OUT (the output fed back as that "
                             "input on the next step), e.g. --state h=hn")
        pairs[name.strip()] = out.strip()
    return pairs


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


