"""Loading a PyTorch source for export: an ExportedProgram and example arguments.

A dynamic dimension (``TensorSpec.dims``) stays dynamic: a ``.pt2`` carries its own, and is
exported again only when the inputs ask for other ones (``--static``, a ``--dim`` range); a
TorchScript module is exported with ``torch.export.Dim`` for each (its traced shape arithmetic is
folded to constants only when every shape is static).
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

from portkit.errors import UsageError
from portkit.formats import Format
from portkit.runtimes.static_shapes import fold_static_shapes
from portkit.runtimes.torch_export import (
    dynamic_axes,
    example_args,
    export_args,
    export_program,
)
from portkit.runtimes.worker import task
from portkit.shapes import Shapes, resolve_inputs
from portkit.specs import TensorSpec


def load_exported_program(src: Path, fmt: Format, inputs: list[TensorSpec]) -> Any:
    """An ExportedProgram of the source whose dynamic dimensions are the inputs' ``dims``.

    A ``.pt2`` is loaded, and exported again only when its own dimensions differ (``--static``,
    a ``--dim`` range). TorchScript is converted with TS2EPConverter, then exported with the
    inputs' dynamic dimensions; with none, its traced shape arithmetic is folded for the static
    shapes instead (``runtimes.static_shapes``).

    Raises:
        ConversionError: ``torch.export`` can't keep a dynamic dimension dynamic.
    """
    import torch

    if fmt is Format.EXPORTED_PROGRAM:
        program = torch.export.load(str(src))
        if _dims_of(program) == _dims_of_specs(inputs):
            return program
        return export_program(program.module(), inputs, f"{src.name} (an ExportedProgram)")
    from torch._export.converter import TS2EPConverter

    module = torch.jit.load(str(src), map_location="cpu").eval()
    if not dynamic_axes(inputs):
        args = example_args(inputs)
        return fold_static_shapes(TS2EPConverter(module, args).convert(), args)
    converted = TS2EPConverter(module, export_args(inputs)).convert()
    return export_program(converted.module(), inputs,
                          f"{src.name} (TorchScript, through TS2EPConverter)")


def _dims_of(program: Any) -> list[tuple[str, int, int, int | None]]:
    """A program's dynamic dimensions as (input, axis, lo, hi)."""
    from portkit.runtimes.torch import exported_inputs

    return _dims_of_specs(exported_inputs(program)[0])


def _dims_of_specs(inputs: list[TensorSpec]) -> list[tuple[str, int, int, int | None]]:
    """The inputs' dynamic dimensions as (input, axis, lo, hi)."""
    return sorted((s.name, axis, d.lo, d.hi) for s in inputs for axis, d in enumerate(s.dims)
                  if d is not None)


def output_names(module: Any, args: tuple[Any, ...]) -> list[str]:
    """The names portkit gives the module's outputs (as the torch runtime does)."""
    import torch

    from portkit.runtimes.torch import flatten_outputs

    with torch.no_grad():
        return list(flatten_outputs(module(*args)))


def module_inputs(what: str, given: list[TensorSpec], shapes: Shapes
                  ) -> tuple[list[TensorSpec], Shapes]:
    """The inputs an ``nn.Module`` (the API's) or a trusted pickle is exported with, which store
    no shapes: ``--input``'s, a named dimension (``x:Nx3x224x224``) dynamic over its ``--dim``
    range (default ``shapes.DEFAULT_RANGE``); and the ``Shapes`` left for the ``.pt2`` (the
    ranges spent here dropped: the program names its dimensions itself; each of them
    ``required``, as the user asked for it).

    Raises:
        UsageError: No input is given, a shape is not known, or a ``--dim`` names no dimension.
    """
    if not given:
        raise UsageError(f"{what}: it stores no input shapes; pass --input NAME:SHAPE (the API's "
                         "inputs=['x:1x3x224x224', ...]) for every input, a name for a dynamic "
                         "dimension (x:Nx3x224x224)")
    stored = [TensorSpec(s.name, s.shape, "") for s in given]
    specs = resolve_inputs(what, stored, given, shapes=shapes)
    specs = [dataclasses.replace(s, dtype=s.dtype or "float32") for s in specs]
    asked = tuple(dict.fromkeys(d.name for s in specs for d in s.dynamic))
    return specs, dataclasses.replace(shapes, ranges=(), required=shapes.required + asked)


@task
def export_pickled_module(src: str, dst: str, inputs: list[TensorSpec]) -> None:
    """Unpickle a trusted ``torch.save``d module (``weights_only=False``) and save it as .pt2.

    Raises:
        InvalidModelError: The pickle holds no ``nn.Module``.
    """
    import torch

    from portkit.errors import InvalidModelError

    module = torch.load(src, map_location="cpu", weights_only=False)
    if not isinstance(module, torch.nn.Module):
        raise InvalidModelError(f"{src}: the pickle holds a {type(module).__name__}, not a "
                                "torch.nn.Module")
    save_exported(module, inputs, Path(dst))


def save_exported(module: Any, inputs: list[TensorSpec], dst: Path) -> None:
    """``torch.export`` an ``nn.Module`` on seeded example inputs (float32 where no dtype is
    given), each dynamic dimension (``dims``) a ``torch.export.Dim``, and save the
    ExportedProgram (``.pt2``); its example inputs are ``inputs``' shapes.

    Raises:
        ConversionError: torch.export can't keep a dynamic dimension dynamic.
    """
    import torch

    specs = [dataclasses.replace(s, dtype=s.dtype or "float32") for s in inputs]
    torch.export.save(export_program(module.eval(), specs, type(module).__name__), str(dst))
