"""Input shapes: what a model stores merged with ``--input``, ``--dim`` and ``--inputs``; which
dimensions stay dynamic; the sizes a dynamic model is validated at. No framework imports.

A dimension a source declares dynamic (a ``torch.export.Dim``, an ONNX ``dim_param``, a Keras
``None``) or that ``--input`` names (``x:Nx3x224x224``) is a ``Dim``: inputs that share its name
change together. The resolved spec holds an example size there (the source's example, the
``--input`` size, else the range's low end for a batch) and the ``Dim`` beside it.

A dimension the user asked for (``--dim``, a name in ``--input``) must stay dynamic; one only the
source declares stays dynamic where a route can keep it, and is fixed at its example size where
none can (``Shapes.fixed``, the pipeline's fallback), or, a sequence with ``--seq-buckets``, at
each of a few sizes (``Buckets``: a TFLite signature per size, each validated).
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace

import numpy as np

from portkit.errors import UsageError
from portkit.formats.arrays import listed
from portkit.specs import Dim, TensorSpec, _stray, specs_from_arrays

# The sizes a dynamic dimension takes when neither the source nor --dim says (the 1..64).
DEFAULT_RANGE = (1, 64)
# A size at a dimension's top is validated when all inputs there hold at most this many times
# the example's elements (else the low end): "both ends where cheap".
CHEAP = 8
# The example size of a dimension --input names past the first (x:1xS), inside its range.
NAMED_EXAMPLE = 16
_DIM_FLAG = re.compile(r"^(?P<name>[A-Za-z_][A-Za-z0-9_.]*)=(?P<lo>\d+)\.\.(?P<hi>\d+)$")


@dataclass(frozen=True)
class Buckets(Dim):
    """A dimension fixed at each of a few sizes rather than free (``--seq-buckets``): the
    artifact holds one signature per size and is validated at each. ``lo``/``hi`` are the
    smallest and largest, so what knows no buckets sees a dynamic dimension over them."""

    sizes: tuple[int, ...] = ()

    def describe(self) -> str:
        """``ids.1 in buckets 16, 64, 128``."""
        return f"{self.name} in buckets {', '.join(map(str, self.sizes))}"


@dataclass(frozen=True)
class Shapes:
    """How the inputs' dynamic dimensions are treated.

    Attributes:
        ranges: ``--dim NAME=LO..HI``: the sizes each named dimension takes (``K..K``: fixed).
        static: ``--static``: every dimension fixed at its example size.
        fixed: Dimensions fixed at their example size though the source declares them dynamic
            (no route could keep them dynamic, and the user did not ask for them), or, those
            ``buckets`` names, at each of its sizes.
        required: Dimensions the user asked for that ``ranges`` no longer name (an
            ``nn.Module``'s, spent on its export): keeping them dynamic is a requirement.
    """

    ranges: tuple[Dim, ...] = ()
    static: bool = False
    fixed: tuple[str, ...] = ()
    required: tuple[str, ...] = ()
    buckets: tuple[tuple[str, tuple[int, ...]], ...] = ()

    def asked(self, given: Sequence[TensorSpec] = ()) -> set[str]:
        """The dimensions the user asked to keep dynamic: ``--dim``'s, ``required`` and those
        an ``--input`` names (``given``)."""
        return ({r.name for r in self.ranges if r.lo != r.hi} | set(self.required)
                | {d.name for s in given for d in s.dynamic})


def parse_dim_flag(text: str) -> Dim:
    """Parse ``--dim N=1..32``.

    Raises:
        UsageError: Not ``NAME=LO..HI`` with 1 <= LO <= HI.
    """
    m = _DIM_FLAG.match(text.strip())
    if not m or not 1 <= int(m["lo"]) <= int(m["hi"]):
        raise UsageError(f"--dim {text!r}: expected NAME=LO..HI with 1 <= LO <= HI, e.g. "
                         "--dim N=1..32 (N as --input x:Nx3x224x224 or the model names it)")
    return Dim(m["name"], int(m["lo"]), int(m["hi"]))


def resolve_inputs(
    model_name: str, stored: list[TensorSpec], given: list[TensorSpec],
    arrays: dict[str, np.ndarray] | None = None, what: str = "--inputs",
    shapes: Shapes = Shapes(),
) -> list[TensorSpec]:
    """Merge the shapes a model stores with the ones given by ``--input`` and ``--inputs``.

    Args:
        model_name: The model's file name, for error messages.
        stored: Inputs as the model declares them (shapes may be unknown, dims dynamic).
        given: Inputs from ``--input``; they override what is stored (a size given for a
            dynamic dimension is its example; a name makes a dimension dynamic).
        arrays: The arrays of ``--inputs`` (``read_arrays``): they give the shape and dtype of
            each input they hold whose shape the model doesn't store and ``--input`` doesn't
            give (see ``specs_from_arrays``), and the example size of dynamic dimensions.
        what: The flag that gave ``arrays``, for error messages.
        shapes: ``--dim`` ranges and ``--static``.

    Returns:
        One spec per model input, in the model's order, every size known; ``dims`` marks the
        dimensions that stay dynamic (none with ``--static``).

    Raises:
        UsageError: An ``--input`` names no input of the model or a dtype it doesn't take,
            a ``--dim`` names no dynamic dimension, or a shape is still unknown.
    """
    by_name = {s.name: s for s in given}
    known = {s.name: s for s in stored}
    unknown = [n for n in by_name if n not in known]
    if unknown:
        raise UsageError(
            f"{model_name}: --input names {', '.join(unknown)}, but the model's inputs are "
            f"{', '.join(known) or '(none)'}; name them so, e.g. --input "
            f"{next(iter(known), 'NAME')}:{example_shape(by_name[unknown[0]])}"
        )
    for g in given:
        _refuse_fixed(model_name, known[g.name], g)
        want = known[g.name].dtype
        if g.dtype and want and g.dtype != want:
            raise UsageError(
                f"{model_name}: --input {g.name}:...:{g.dtype}: the model's input {g.name!r} "
                f"takes {want}, not {g.dtype}; drop ':{g.dtype}' or give ':{want}'"
            )
    from_file: dict[str, TensorSpec] = {}
    if arrays:
        strange = _stray(arrays, stored)
        if strange:
            raise UsageError(f"{model_name}: {what} holds {listed(strange)}, but the "
                             f"model's inputs are {', '.join(known) or '(none)'}: save one "
                             "array per input under its name")
        needs = {s.name for s in stored if not s.is_static or s.dims}
        from_file = {s.name: s for s in specs_from_arrays(stored, arrays) if s.name in needs}
    ranges = {r.name: r for r in shapes.ranges}
    settled = [_settle(s, by_name.get(s.name), from_file.get(s.name), ranges) for s in stored]
    settled = _state_batch(stored, settled)
    _check_ranges(model_name, settled, shapes.ranges)
    missing = [(x, s) for x, s in zip(settled, stored) if not x.is_static]
    if missing:
        batch = _batch(settled)
        flags = " ".join(f"--input {x.name}:{example_shape(replace(s, dtype=x.dtype), batch)}"
                         for x, s in missing)
        first = missing[0][0]
        raise UsageError(
            f"{model_name}: the shape of input {first.name!r} is not stored in the model "
            f"({first.describe()}); pass it, e.g. {flags}, or --inputs sample.npz holding "
            "every input"
        )
    return [_fix(s, shapes) for s in settled]


def _state_batch(stored: Sequence[TensorSpec], settled: Sequence[TensorSpec]
                 ) -> list[TensorSpec]:
    """An RNN state (``rnn_state``) takes the other inputs' batch in its middle dimension, as a
    state fed back between calls does: its size (unless given otherwise) and the ``batch``
    dimension itself, so the two change together."""
    found = free_dims(settled).get("batch")
    if found is None:
        return list(settled)
    batch, size = found
    out = []
    for before, now in zip(stored, settled):
        if rnn_state(before) and now.shape is not None and len(now.shape) == 3 \
                and now.shape[1] in (None, size) \
                and (not now.dims or now.dims[1] is None or now.dims[1].name == f"{now.name}.1"):
            now = replace(now, shape=(now.shape[0], size, now.shape[2]), dims=(None, batch, None))
        out.append(now)
    return out


# Names RNN states go by in exported models (``state``, ``h0``, ``c_in``, ``hidden``...).
_STATE_NAMES = re.compile(r"state|hidden|cell|memory|(^|[^a-z])[hc](\d*|_?in|_?0)$", re.I)


def rnn_state(spec: TensorSpec) -> bool:
    """Whether a model declares ``spec`` as an RNN state: ``[layers, ?, hidden]``, only the
    middle dimension free and unnamed, under a state's name (``state``, ``h0``, ``c_in``)."""
    shape, dims = spec.shape, spec.dims
    return shape is not None and len(shape) == 3 and shape[1] is None \
        and shape[0] is not None and shape[2] is not None \
        and not (dims and dims[1] is not None) and bool(_STATE_NAMES.search(spec.name))


def _fix(spec: TensorSpec, shapes: Shapes) -> TensorSpec:
    """``spec`` with the dimensions that don't stay dynamic fixed at their example size: all
    with ``--static``, those ``shapes.fixed`` names, and those whose range is one size
    (``--dim N=K..K``); those ``shapes.buckets`` names are ``Buckets``, their example the
    smallest bucket that holds the example (else the largest)."""
    buckets = dict(shapes.buckets)
    dims: list[Dim | None] = []
    sizes = list(spec.shape or ())
    for i, d in enumerate(spec.dims):
        if d is not None and not shapes.static and d.name in buckets:
            chosen = buckets[d.name]
            dims.append(Buckets(d.name, min(chosen), max(chosen), chosen))
            sizes[i] = min((n for n in chosen if n >= (sizes[i] or 0)), default=max(chosen))
        else:
            dims.append(None if d is None or shapes.static or d.name in shapes.fixed
                        or d.lo == d.hi else d)
    return replace(spec, shape=tuple(sizes) if spec.shape is not None else None,
                   dims=tuple(dims) if any(dims) else ())


def _batch(settled: Sequence[TensorSpec]) -> int:
    """The batch the known inputs already fix: the size of the dimension called ``batch``
    (1 when none)."""
    found = free_dims(settled).get("batch")
    return found[1] if found else 1


def _settle(stored: TensorSpec, given: TensorSpec | None, from_file: TensorSpec | None,
            ranges: Mapping[str, Dim]) -> TensorSpec:
    """One input's shape, dtype and dims from the model, ``--input`` and ``--inputs``: a size
    given is an example (a dimension the model leaves free stays so), a name given is a
    dimension made free, an unknown dimension of a known rank is free (a first one called
    ``batch``, shared by every input) over ``DEFAULT_RANGE`` or up to the size given, when
    larger. A free dimension of unknown size is the bottom of its range when first, else
    ``NAMED_EXAMPLE`` when ``--input`` names it. ``ranges`` (``--dim``) replace the range of
    the dimensions they name."""
    dtype = (given.dtype if given else "") or stored.dtype or (
        from_file.dtype if from_file else "") or "float32"
    shape = given.shape if given and given.shape is not None else stored.shape
    if from_file and not (given and given.shape is not None):
        shape = from_file.shape
    if shape is None:
        return TensorSpec(stored.name, None, dtype)
    dims: list[Dim | None] = []
    sizes: list[int | None] = list(shape)
    for i in range(len(shape)):
        mine = stored.dims[i] if stored.dims and stored.shape and len(stored.dims) == len(shape) \
            else None
        named = given.dims[i] if given and given.dims else None
        if named is not None:  # --input names it: free, in the source's range if it has one
            mine = Dim(named.name, *(DEFAULT_RANGE if mine is None else (mine.lo, mine.hi)))
        elif mine is None and stored.shape is not None and len(stored.shape) == len(shape) \
                and stored.shape[i] is None:  # a range of its own, which takes the size given
            mine = Dim("batch" if i == 0 else f"{stored.name}.{i}", DEFAULT_RANGE[0],
                       max(DEFAULT_RANGE[1], sizes[i] or 0))
        mine = ranges.get(mine.name, mine) if mine is not None else None
        if mine is not None and sizes[i] is None and (i == 0 or named is not None
                                                      or mine.lo == mine.hi):
            sizes[i] = mine.lo if i == 0 or mine.lo == mine.hi else \
                min(max(mine.lo, NAMED_EXAMPLE), mine.hi or 10**9)
        dims.append(mine)
    return TensorSpec(stored.name, tuple(sizes), dtype, tuple(dims) if any(dims) else ())


def _check_ranges(model_name: str, specs: list[TensorSpec], ranges: Sequence[Dim]) -> None:
    """Every ``--dim`` names a dynamic dimension, and every example size is inside its
    dimension's range.

    Raises:
        UsageError: A ``--dim`` names no dynamic dimension, or an example is out of range.
    """
    names = {d.name for s in specs for d in s.dynamic}
    unknown = [r.name for r in ranges if r.name not in names]
    if unknown:
        have = ", ".join(sorted(names)) or "none (every dimension is fixed)"
        raise UsageError(f"{model_name}: --dim {', '.join(unknown)}: no such dynamic dimension; "
                         f"the model's are {have} (name one with --input x:Nx3x224x224)")
    for s in specs:
        for d, size in zip(s.dims, s.shape or ()):
            if d is not None and size is not None and not d.lo <= size <= (d.hi or size):
                raise UsageError(
                    f"{model_name}: input {s.name!r} is {size} along {d.name}, outside "
                    f"{d.describe()}; give an --input size inside it, or --dim "
                    f"{d.name}={min(d.lo, size)}..{max(d.hi or size, size)}")


def _refuse_fixed(model_name: str, stored: TensorSpec, given: TensorSpec) -> None:
    """Refuse an ``--input`` shape that differs from a dimension the model fixes (the model's
    runtime would refuse it, or fail deep inside a run).

    Raises:
        UsageError: The rank or a fixed dimension differs, naming the shape the model takes.
    """
    have, want = given.shape, stored.shape
    if have is None or want is None:
        return
    free = stored.dims or (None,) * len(want)
    if len(have) == len(want) and all(w is None or f is not None or h == w
                                      for h, w, f in zip(have, want, free)):
        return
    dims = "x".join(str(d) if d is not None else g.name if g else "?"
                    for d, g in zip(have, given.dims or (None,) * len(have))) or "scalar"
    raise UsageError(
        f"{model_name}: --input {given.name}:{dims}: the model takes {stored.describe()} (its "
        f"fixed dimensions can't change); pass --input {given.name}:{example_shape(stored)}, "
        "or export the model with the dimension you need left dynamic"
    )


def example_shape(spec: TensorSpec, batch: int = 1) -> str:
    """An ``--input`` value to suggest for ``spec``: its known dimensions, ``batch`` (the batch
    the other inputs already fix) for a free first one and an RNN state's middle one
    (``rnn_state``: ``2x?x128`` is ``2x1x128``), 128 (224 for the last two of a 4-D input) for
    the others, its dtype when not float32; ``SHAPE`` when not even the rank is known."""
    dtype = f":{spec.dtype}" if spec.dtype and spec.dtype != "float32" else ""
    if spec.shape is None:
        return f"SHAPE{dtype} (e.g. 1x3x224x224, 1x16000, or 1x128:int64)"
    rank = len(spec.shape)
    at = 1 if rnn_state(spec) else 0
    dims = [d if d is not None else batch if i == at else 224 if rank == 4 and i >= 2
            else 128 for i, d in enumerate(spec.shape)]
    return ("x".join(map(str, dims)) or "scalar") + dtype


def free_dims(specs: Sequence[TensorSpec]) -> dict[str, tuple[Dim, int]]:
    """Each dynamic dimension by name, with its example size (the first input's that has it)."""
    found: dict[str, tuple[Dim, int]] = {}
    for s in specs:
        for d, size in zip(s.dims, s.shape or ()):
            if d is not None and size is not None:
                found.setdefault(d.name, (d, size))
    return found


def free_sizes(specs: Sequence[TensorSpec]) -> dict[str, int]:
    """Each dynamic dimension's example size, by name."""
    return {n: e for n, (_d, e) in free_dims(specs).items()}


def shape_at(spec: TensorSpec, sizes: Mapping[str, int]) -> tuple[int, ...]:
    """``spec``'s shape with its dynamic dimensions at ``sizes`` (by dimension name)."""
    return tuple(sizes.get(d.name, s) if d is not None else s  # type: ignore[misc]
                 for s, d in zip(spec.shape or (), spec.dims or (None,) * len(spec.shape or ())))


def validation_sizes(specs: Sequence[TensorSpec]) -> list[dict[str, int]]:
    """The sizes besides the example one a dynamic model is validated at: every dimension at
    ``2 * example + 1`` (an odd size, inside its range), then at the top of its range where the
    inputs there hold at most ``CHEAP`` times the example's elements, else (or when that size
    was one of the others) at the bottom. A model with ``Buckets`` is validated at each bucket
    instead (every other dimension at its example size).

    Returns:
        Each size as dimension name -> size; none for a model with no dynamic dimension.
    """
    free = free_dims(specs)
    if not free:
        return []
    example = free_sizes(specs)
    buckets = {n: d.sizes for n, (d, _e) in free.items() if isinstance(d, Buckets)}
    if buckets:  # each bucket is a signature of its own: validated at every one
        return [{**example, n: size} for n, chosen in buckets.items() for size in chosen
                if size != example[n]]

    def inside(d: Dim, v: int) -> int:
        return max(d.lo, min(v, d.hi if d.hi is not None else v))

    def elements(sizes: Mapping[str, int]) -> int:
        return sum(math.prod(shape_at(s, sizes)) for s in specs)

    bigger = {n: inside(d, 2 * e + 1) if inside(d, 2 * e + 1) != e else inside(d, e - 1)
              for n, (d, e) in free.items()}
    top = {n: d.hi if d.hi is not None else e for n, (d, e) in free.items()}
    bottom = {n: d.lo for n, (d, _e) in free.items()}
    cheap = elements(top) <= CHEAP * max(elements(example), 1)
    sizes: list[dict[str, int]] = []
    for candidate in (bigger, top if cheap else bottom, bottom):
        if candidate != example and candidate not in sizes and len(sizes) < 2:
            sizes.append(candidate)
    return sizes


def size_sets(shapes: Sequence[TensorSpec]) -> list[tuple[TensorSpec, ...]]:
    """``bench --shape`` values as the sizes to time: the k-th value of each input named is
    size k (inputs sharing a dynamic dimension with one named follow it).

    Raises:
        UsageError: The inputs named have different numbers of values.
    """
    by_input: dict[str, list[TensorSpec]] = {}
    for s in shapes:
        by_input.setdefault(s.name, []).append(s)
    counts = {len(v) for v in by_input.values()}
    if len(counts) > 1:
        given = ", ".join(f"{n} {len(v)}" for n, v in by_input.items())
        raise UsageError(f"--shape: each input named needs as many values, one per size to time "
                         f"(given: {given}), e.g. --shape ids:1x16 --shape ids:1x64")
    return [tuple(v[k] for v in by_input.values()) for k in range(counts.pop())] if counts else []


def at_given(specs: Sequence[TensorSpec], given: Sequence[TensorSpec]) -> list[TensorSpec]:
    """``specs`` (resolved with ``given`` among the ``--input`` values) with every input that
    shares a dynamic dimension with one in ``given`` at that dimension's given size."""
    named = {s.name for s in given}
    sizes = {d.name: n for s in specs if s.name in named
             for d, n in zip(s.dims, s.shape or ()) if d is not None and n is not None}
    return [s if s.name in named else replace(s, shape=shape_at(s, sizes)) for s in specs]


def describe_size(specs: Sequence[TensorSpec], sizes: Mapping[str, int]) -> str:
    """``ids 3x33, mask 3x33``: each dynamic input's shape at ``sizes``."""
    return shown([replace(s, shape=shape_at(s, sizes)) for s in specs if s.dynamic])


def shown(specs: Sequence[TensorSpec]) -> str:
    """``ids 3x33, mask 3x33``: each spec's name and shape."""
    return ", ".join(f"{s.name} {'x'.join(map(str, s.shape or ()))}" for s in specs)


def resized(samples: Sequence[Mapping[str, np.ndarray]], specs: Sequence[TensorSpec],
            sizes: Mapping[str, int]) -> list[dict[str, np.ndarray]]:
    """The samples at other sizes, made of their own values: along each dynamic dimension a
    sample is followed by the next samples (wrapping around) and cut to the size, so a batch of
    3 holds three samples and a longer sequence continues into the next one's tokens. Inputs
    that share a dimension are cut alike; arrays of no spec (``--const``) are kept.

    Args:
        samples: Feeds at the specs' example shapes.
        specs: The inputs (their ``dims``).
        sizes: Dimension name -> size.

    Returns:
        As many samples, at the new sizes.
    """
    current = [dict(s) for s in samples]
    count = len(current)
    for spec in specs:
        for axis, d in enumerate(spec.dims):
            if d is None or d.name not in sizes:
                continue
            n = sizes[d.name]
            arrays = [c[spec.name] for c in current]
            have = arrays[0].shape[axis]
            parts = -(-n // max(have, 1))
            for i, c in enumerate(current):
                joined = np.concatenate([arrays[(i + k) % count] for k in range(parts)], axis)
                c[spec.name] = np.take(joined, np.arange(n), axis=axis)
    return current
