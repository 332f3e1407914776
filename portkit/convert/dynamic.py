"""Dynamic dimensions kept by what a converter writes: the post-condition a converter checks
before it reports success, the error it raises when it can only write a static artifact (the
pipeline then tries the next route), and the fallback when no route kept them: the dimensions
the user did not ask for are fixed at their example size and the routes run again; with
``--seq-buckets`` a sequence dimension is instead fixed at each bucket's size (``Buckets``: a
TFLite signature per size, each validated), the others as before.

A source's dynamic dimension (a ``Dim`` in its resolved inputs' ``dims``) must stay dynamic in
the artifact: a TFLite ``shape_signature`` of -1, an ONNX ``dim_param`` (or no size), a
SavedModel ``None``. The check counts the dynamic axes of each artifact input (bound to the
source's by name, else in order), so it holds whatever layout the converter chose.
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Collection, Sequence
from pathlib import Path
from typing import Any

from portkit.errors import DimensionsFixedError, UsageError
from portkit.formats import Format
from portkit.results import Attempt, FixedDims
from portkit.runtimes.binding import pair_by_name
from portkit.shapes import DEFAULT_RANGE, Buckets, Shapes, free_dims
from portkit.specs import Dim, TensorSpec

# At most this many buckets when the sizes are chosen from the range (--seq-buckets auto).
MAX_BUCKETS = 4


def bucket_sizes(d: Dim, example: int, given: Sequence[int] = ()) -> tuple[int, ...]:
    """The sizes a sequence dimension ``d`` is bucketed at: ``given`` (``--seq-buckets
    16,64,128``), else the top of its range (the example's size if it has none) and its
    halvings down to the bottom, at most ``MAX_BUCKETS``: ``2..128`` gives 16, 32, 64, 128.

    Raises:
        UsageError: A size given is outside the dimension's range.
    """
    if given:
        outside = [n for n in given if not d.lo <= n <= (d.hi or n)]
        if outside:
            raise UsageError(f"--seq-buckets {','.join(map(str, given))}: "
                             f"{', '.join(map(str, outside))} outside {d.describe()}, the "
                             "sizes the source takes; give sizes inside it")
        return tuple(sorted(set(given)))
    top, sizes = d.hi if d.hi is not None else max(example, d.lo), []
    while top >= d.lo and len(sizes) < MAX_BUCKETS:
        sizes.append(top)
        top //= 2
    return tuple(sorted(sizes))


def describe_dynamic(inputs: Sequence[TensorSpec]) -> str:
    """``x: batch, height`` for each input with dynamic dimensions, ``; ``-separated."""
    return "; ".join(f"{s.name}: {', '.join(d.name for d in s.dynamic)}"
                     for s in inputs if s.dynamic)


def static_only(tool: str, inputs: Sequence[TensorSpec], why: str) -> DimensionsFixedError:
    """The error of a converter that can't write the source's dynamic dimensions as dynamic.

    Args:
        tool: The converter.
        inputs: The source's resolved inputs (some with ``dims``).
        why: What stopped it.

    Returns:
        A ``DimensionsFixedError`` naming the dimensions and the flag that fixes them.
    """
    example = ", ".join(f"{s.name} {'x'.join(str(d) for d in s.shape or ())}"
                        for s in inputs if s.dynamic)
    return DimensionsFixedError(
        f"{tool} can't keep the source's dynamic dimensions dynamic ({describe_dynamic(inputs)})"
        f": {why}{_FIX}{example}), or try another --route")


_FIX = "; pass --static to convert at the example sizes ("
# ``static_only``'s message: the tool, then why, up to the fix it suggests.
_REFUSAL = re.compile(r"^.*?can't keep the source's dynamic dimensions "
                      r"dynamic \(.*?\): (?P<why>.*?)" + re.escape(_FIX), re.S)


def refusal(error: str) -> str:
    """Why, from a ``static_only`` message (an attempt's error), else the error."""
    m = _REFUSAL.match(error)
    return m["why"] if m else error


def fallback(shapes: Shapes, given: Sequence[TensorSpec], inputs: Sequence[TensorSpec],
             attempts: Sequence[Attempt], validated: bool = True,
             buckets: Sequence[int] | None = None) -> Shapes | None:
    """What to convert with when no route shipped an artifact with the source's dynamic
    dimensions and the dimensions are to blame (``_dimension_trouble``): ``shapes`` with every
    dynamic dimension the user did not ask for (``--dim``, a name in ``--input``:
    ``Shapes.asked``) fixed at its example size, but for the sequence (``sequence``), which
    ``buckets`` fixes at each of its sizes. None when a route shipped, no failure was the
    dimensions', or every dynamic dimension was asked for (keeping it is a requirement).

    Args:
        shapes: ``--dim``, ``--static`` as given.
        given: ``--input`` specs.
        inputs: The source's resolved inputs (their ``dims``).
        attempts: The routes tried.
        validated: Whether an artifact ships only when it matched (else when it converted).
        buckets: ``--seq-buckets``: its sizes, empty for sizes from the sequence's range
            (``bucket_sizes``); None: no buckets.

    Raises:
        UsageError: ``buckets`` given, but no single dimension is the sequence, or a size is
            outside its range.
    """
    if any(a.passed or (a.converted and not validated) for a in attempts) \
            or not any(_dimension_trouble(a) for a in attempts):
        return None
    asked = shapes.asked(given)
    fix = tuple(name for name in free_dims(inputs) if name not in asked)
    if buckets is not None and shapes.buckets == ():
        dim, example = sequence(inputs, fix, asked)
        chosen = ((dim.name, bucket_sizes(dim, example, buckets)),)
        return dataclasses.replace(shapes, fixed=shapes.fixed + fix, buckets=chosen)
    return dataclasses.replace(shapes, fixed=shapes.fixed + fix) if fix else None


def sequence(inputs: Sequence[TensorSpec], names: Sequence[str], asked: Collection[str] = ()
             ) -> tuple[Dim, int]:
    """The one dimension among ``names`` (dynamic dimensions no route kept, nobody asked
    for) that is a sequence: never an input's first axis (that is a batch), and its example
    size.

    Raises:
        UsageError: None is, or several are (``--dim NAME=K..K`` fixes the others); or the
            sequence was ``asked`` to stay dynamic (``--dim``, a name in ``--input``).
    """
    free = free_dims(inputs)
    first = {s.dims[0].name for s in inputs if s.dims and s.dims[0] is not None}
    found = [free[n] for n in names if n in free and n not in first]
    required = [d.name for n, (d, _e) in free.items() if n in asked and n not in first]
    if required and not found:
        raise UsageError(f"--seq-buckets: {', '.join(required)} must stay dynamic (--dim, or "
                         "a name in --input, asks it), and no route kept it so: drop one")
    if len(found) != 1:
        which = ", ".join(d.describe() for d, _e in found) or "none"
        fix = "; fix all but one with --dim NAME=K..K" if found else ""
        raise UsageError(f"--seq-buckets: one dynamic dimension past the first axis is "
                         f"bucketed, the sequence; no route kept these dynamic: {which}{fix}"
                         ", or drop --seq-buckets")
    return found[0]


def _dimension_trouble(attempt: Attempt) -> bool:
    """Whether a route failed as dynamic dimensions make routes fail: it could write them only
    fixed, its artifact did not run or gave outputs of another shape, or it failed at a size
    other than the example's (a numeric mismatch at the example size is not theirs)."""
    if attempt.lost_dynamic:
        return True
    example = attempt.checks[0].size if attempt.checks else ""
    return any(not c.passed and not c.skipped and (
        c.error or c.size != example or any(o.error for o in c.outputs))
        for c in attempt.checks)


def fixed_dims(inputs: Sequence[TensorSpec], names: Sequence[str],
               attempts: Sequence[Attempt],
               buckets: Sequence[tuple[str, tuple[int, ...]]] = ()) -> FixedDims:
    """The report of the dimensions ``names`` fixed at their example sizes, or at each of
    their ``buckets`` (``Shapes.buckets``), because the ``attempts`` could not keep them
    dynamic, with the ``--dim`` flags that would require it."""
    free = free_dims(inputs)
    chosen = [(free[n][0], free[n][1]) for n in names if n in free]
    require = " ".join(
        f"--dim {d.name}={d.lo}..{d.hi if d.hi is not None else max(DEFAULT_RANGE[1], size)}"
        for d, size in chosen)
    bucketed = dict(buckets)
    return FixedDims(sizes=tuple((d.name, size) for d, size in chosen if d.name not in bucketed),
                     refusals=tuple(f"{a.route}: {refusal(a.error or 'failed')}"
                                    for a in attempts),
                     require=require, buckets=tuple(bucketed.items()))


def require_kept(tool: str, inputs: Sequence[TensorSpec],
                 written: Sequence[tuple[str, tuple[int | None, ...] | None]]) -> None:
    """Post-condition: every input keeps at least as many dynamic axes as the source's has
    (a ``Buckets`` dimension aside: one signature per size, each validated at its size).

    Args:
        tool: The converter, for the error.
        inputs: The source's resolved inputs.
        written: The artifact's inputs as (name, shape) with ``None`` where an axis is dynamic
            (a shape of ``None``: unknown rank, dynamic throughout).

    Raises:
        DimensionsFixedError: Some input was written with fewer dynamic axes (``static_only``).
    """
    if not any(_free(s) for s in inputs):
        return
    shapes = dict(written)
    try:
        pairs = pair_by_name([s.name for s in inputs], list(shapes))
    except Exception:  # noqa: BLE001 - counts differ: the parity check reports that
        return
    lost = []
    for spec, (_src, art) in zip(inputs, pairs):
        shape = shapes[art]
        free = len(shape) if shape is None else sum(d is None for d in shape)  # type: ignore[arg-type]
        if free < len(_free(spec)):
            fixed = "x".join("?" if d is None else str(d) for d in shape or ())
            lost.append(f"{art} written as {fixed}")
    if lost:
        raise static_only(tool, inputs, "it wrote " + ", ".join(lost))


def _free(spec: TensorSpec) -> list[Dim]:
    """``spec``'s dynamic dimensions that an artifact keeps free (``Buckets`` are not)."""
    return [d for d in spec.dynamic if not isinstance(d, Buckets)]


def check_kept(tool: str, target: Format, path: Path, inputs: Sequence[TensorSpec]) -> None:
    """The post-condition every edge's ONNX, TFLite or ExecuTorch artifact meets
    (``registry.run_edge``): the source's dynamic dimensions stay dynamic (``require_kept``).

    Raises:
        DimensionsFixedError: An input was written with fewer dynamic axes.
    """
    if not any(s.dynamic for s in inputs):
        return
    if target is Format.TFLITE:
        require_kept(tool, inputs, tflite_inputs(path))
    elif target is Format.ONNX:
        import onnx

        require_kept(tool, inputs, onnx_inputs(onnx.load(str(path), load_external_data=False)))
    elif target is Format.EXECUTORCH:
        require_kept(tool, inputs, pte_inputs(path))


def pte_inputs(path: Path) -> list[tuple[str, tuple[int | None, ...]]]:
    """A ``.pte``'s inputs as (name, shape), every axis of a bounded input ``None`` (its
    program doesn't record which axis changes)."""
    from portkit.formats.pte import read_program

    method = next(m for m in read_program(path) if m.name == "forward")
    return [(f"input_{i}", tuple(None for _ in t.sizes) if t.bounded or t.unbounded
             else t.sizes) for i, t in enumerate(method.inputs)]


def tflite_inputs(path: Path) -> list[tuple[str, tuple[int | None, ...]]]:
    """A ``.tflite``'s inputs as (name, shape), ``None`` where its shape signature is -1."""
    from portkit.formats.tflite import mobile_report

    return [(t.name, tuple(None if d < 0 else d for d in t.shape))
            for t in mobile_report(path).inputs]


def onnx_inputs(model: Any) -> list[tuple[str, tuple[int | None, ...] | None]]:
    """An ONNX ``ModelProto``'s graph inputs (initializers aside) as (name, shape), ``None``
    where an axis has a ``dim_param`` or no size."""
    initializers = {i.name for i in model.graph.initializer}
    found: list[tuple[str, tuple[int | None, ...] | None]] = []
    for value in model.graph.input:
        if value.name in initializers:
            continue
        tensor = value.type.tensor_type
        shape = None if not tensor.HasField("shape") else tuple(
            d.dim_value if d.HasField("dim_value") else None for d in tensor.shape.dim)
        found.append((value.name, shape))
    return found


def name_onnx_dims(model: Any, inputs: Sequence[TensorSpec]) -> None:
    """Rename the ``dim_param`` of each dynamic input axis to its ``Dim``'s name (``batch``
    rather than tf2onnx's ``unk__12`` or the dynamo exporter's ``s23``), everywhere the old
    name appears in the graph's inputs, outputs and value infos (``s23 + 1`` included)."""
    by_name = {s.name: s for s in inputs}
    renames: dict[str, str] = {}
    for value in model.graph.input:
        spec = by_name.get(value.name)
        if spec is None or not spec.dims:
            continue
        axes = value.type.tensor_type.shape.dim
        for axis, dim in zip(axes, spec.dims):
            if dim is not None and axis.HasField("dim_param") and axis.dim_param != dim.name:
                renames.setdefault(axis.dim_param, dim.name)
    if not renames:
        return
    symbol = re.compile(r"\b(" + "|".join(map(re.escape, renames)) + r")\b")
    graph = model.graph
    for value in [*graph.input, *graph.output, *graph.value_info]:
        for axis in value.type.tensor_type.shape.dim:
            if axis.HasField("dim_param"):
                axis.dim_param = symbol.sub(lambda m: renames[m[1]], axis.dim_param)
