"""Loading a PyTorch source for export: an ExportedProgram and example arguments."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from portkit.formats import Format
from portkit.runtimes.static_shapes import fold_static_shapes
from portkit.runtimes.worker import task
from portkit.specs import TensorSpec, make_inputs


def example_args(inputs: list[TensorSpec]) -> tuple[Any, ...]:
    """Seeded example tensors for tracing/export, one per input in order."""
    import torch

    return tuple(torch.from_numpy(a) for a in make_inputs(inputs, seed=0).values())


def load_exported_program(src: Path, fmt: Format, inputs: list[TensorSpec]) -> Any:
    """An ExportedProgram of the source: loaded (``.pt2``) or converted from TorchScript, its
    traced shape arithmetic folded for the static input shapes (``runtimes.static_shapes``)."""
    import torch

    if fmt is Format.EXPORTED_PROGRAM:
        return torch.export.load(str(src))
    from torch._export.converter import TS2EPConverter

    module = torch.jit.load(str(src), map_location="cpu").eval()
    args = example_args(inputs)
    return fold_static_shapes(TS2EPConverter(module, args).convert(), args)


def output_names(module: Any, args: tuple[Any, ...]) -> list[str]:
    """The names portkit gives the module's outputs (as the torch runtime does)."""
    import torch

    from portkit.runtimes.torch import flatten_outputs

    with torch.no_grad():
        return list(flatten_outputs(module(*args)))


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
    given) and save the ExportedProgram (``.pt2``)."""
    import torch

    specs = [TensorSpec(s.name, s.shape, s.dtype or "float32") for s in inputs]
    torch.export.save(torch.export.export(module.eval(), example_args(specs)), str(dst))
