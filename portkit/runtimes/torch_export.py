"""Exporting a PyTorch module with ``torch.export``, its dynamic dimensions kept: example
arguments, ``dynamic_shapes`` from ``TensorSpec.dims``. Used by the converters and the fixtures."""

from __future__ import annotations

import dataclasses
import re
from typing import Any

from portkit.errors import ConversionError
from portkit.specs import Dim, TensorSpec, make_inputs


def example_args(inputs: list[TensorSpec]) -> tuple[Any, ...]:
    """Seeded example tensors for tracing/export, one per input in order."""
    import torch

    return tuple(torch.from_numpy(a) for a in make_inputs(inputs, seed=0).values())


def export_args(inputs: list[TensorSpec]) -> tuple[Any, ...]:
    """Example tensors for ``torch.export``: as ``example_args``, but each dynamic dimension at
    least 2 inside its range (torch.export fixes a dimension whose example is 0 or 1)."""
    return example_args([dataclasses.replace(s, shape=tuple(
        n if d is None or not _free(d) else max(n, 2, d.lo) if d.hi is None else
        min(max(n, 2, d.lo), d.hi)
        for n, d in zip(s.shape or (), s.dims or (None,) * len(s.shape or ())))) for s in inputs])


def dynamic_shapes(inputs: list[TensorSpec]) -> tuple[dict[int, Any] | None, ...] | None:
    """``torch.export``'s ``dynamic_shapes`` for the inputs' dynamic dimensions: one
    ``torch.export.Dim`` per name (inputs sharing it change together), with its range; None
    when every dimension is fixed."""
    import torch

    made: dict[str, Any] = {}
    shapes: list[dict[int, Any] | None] = []
    for s in inputs:
        axes = {}
        for axis, d in enumerate(s.dims):
            if d is not None and _free(d):
                if d.name not in made:
                    made[d.name] = torch.export.Dim(re.sub(r"\W", "_", d.name), min=d.lo,
                                                    max=d.hi)
                axes[axis] = made[d.name]
        shapes.append(axes or None)
    return tuple(shapes) if made else None


def _free(d: Dim) -> bool:
    """Whether ``d`` takes more than one size (a range of one size is a fixed dimension)."""
    return d.hi is None or d.hi > max(d.lo, 1)


def dynamic_axes(inputs: list[TensorSpec]) -> list[tuple[str, int, Dim]]:
    """Each dynamic dimension of the inputs: (input, axis, its ``Dim``)."""
    return [(s.name, axis, d) for s in inputs for axis, d in enumerate(s.dims)
            if d is not None and _free(d)]


def described(axes: list[tuple[str, int, Dim]]) -> str:
    """``ids axis 1 (seq 2..128)``, for messages."""
    return ", ".join(f"{name} axis {axis} ({d.describe()})" for name, axis, d in axes)


def export_program(module: Any, inputs: list[TensorSpec], what: str) -> Any:
    """``torch.export`` of ``module`` with the inputs' dynamic dimensions, its example inputs
    those of ``inputs``.

    Raises:
        ConversionError: The export failed (a dimension the code fixes, a range it narrows).
    """
    import torch

    try:
        program = torch.export.export(module, export_args(inputs),
                                      dynamic_shapes=dynamic_shapes(inputs))
    except Exception as e:  # noqa: BLE001 - torch.export raises many kinds (guards, tracing)
        axes = dynamic_axes(inputs)
        if not axes:
            raise
        why = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise ConversionError(
            f"{what}: torch.export can't keep {described(axes)} dynamic: {why}; pass --static "
            "for a fixed-shape artifact, or a narrower --dim range") from None
    program.example_inputs = (example_args(inputs), {})
    return program
