"""The source made ready before any route runs: an ``nn.Module`` or a trusted pickle exported
as an ExportedProgram, and ``--const`` values bound into the source (a hop of its own)."""

from __future__ import annotations

import contextlib
import sys
from pathlib import Path
from typing import Any

from portkit.convert import constants
from portkit.convert._torch import export_pickled_module, module_inputs
from portkit.errors import UsageError
from portkit.formats import Format
from portkit.io import owned_tempdir
from portkit.options import ConvertJob, shown
from portkit.results import Hop
from portkit.runtimes import worker
from portkit.runtimes.context import RunContext
from portkit.runtimes.torch_export import save_module_program
from portkit.shapes import Shapes
from portkit.specs import TensorSpec


def save_module(module: Any, inputs: list[TensorSpec], shapes: Shapes,
                stack: contextlib.ExitStack, timeout: float) -> tuple[Path, Shapes]:
    """Save an ``nn.Module`` as an ExportedProgram (``.pt2``) in a temporary folder that
    ``stack`` removes, a dimension named in ``inputs`` dynamic over its ``shapes`` range;
    exported within ``timeout`` seconds (``torch_export.save_module_program``).

    Returns:
        The file, and the ``Shapes`` left for it (``_torch.module_inputs``).

    Raises:
        UsageError: ``module`` is no ``nn.Module``, or not every input's shape is given.
        WorkerTimeoutError: torch.export ran past ``timeout``.
    """
    torch = sys.modules.get("torch")  # a module of the caller's means torch is imported
    if torch is None or not isinstance(module, torch.nn.Module):
        raise UsageError(f"convert(): the source is {_called(module)}, not a model; pass a model "
                         "file's path (str or pathlib.Path), a SavedModel directory or a "
                         "torch.nn.Module")
    specs, left = module_inputs("convert(module, ...)", inputs, shapes)
    folder = stack.enter_context(owned_tempdir("module"))
    path = folder / f"{type(module).__name__}.pt2"
    save_module_program(module, specs, path, timeout)
    return path, left


def _called(value: Any) -> str:
    """``None``, ``an int``, ``a list``: what a value is, for a message."""
    if value is None:
        return "None"
    name = type(value).__name__
    return f"{'an' if name[:1].lower() in 'aeiou' else 'a'} {name}"


def export_trusted_pickle(src: Path, job: ConvertJob, stack: contextlib.ExitStack,
                           ctx: RunContext) -> tuple[Path, Format, Shapes]:
    """``--trust-model`` on a pickled module: unpickle it in a worker and save it as ``.pt2``
    (with the ``Shapes`` left for it, as ``save_module``)."""
    inputs, left = module_inputs(f"{src} (a pickled module)",
                                 list(job.feed.inputs), job.feed.shapes)
    folder = stack.enter_context(owned_tempdir("pickle"))
    dst = folder / f"{src.stem}.pt2"
    with ctx.progress(f"Unpickling {src.name} (--trust-model) and exporting it"):
        worker.call(export_pickled_module, timeout=ctx.timeout, what=str(src), src=str(src),
                    dst=str(dst), inputs=inputs)
    return dst, Format.EXPORTED_PROGRAM, left


def bound_source(src: Path, fmt: Format, job: ConvertJob, stack: contextlib.ExitStack,
                    ctx: RunContext) -> tuple[Path, Hop]:
    """``--const``: the source with those inputs bound (a file of the same name and format in a
    temporary folder), made in the worker its format's hops use; and that step as a hop."""
    folder = stack.enter_context(owned_tempdir("const"))
    dst = folder / src.name
    with ctx.progress(f"Binding --const {shown(job.feed.constants)} into {src.name}"):
        hop: Hop = ctx.pool.call(f"convert-from-{fmt.value}", constants.bind_constants,
                                 timeout=ctx.timeout, what=f"--const on {src.name}", src=str(src),
                                 fmt=fmt, dst=str(dst), constants=dict(job.feed.constants))
    return dst, hop


