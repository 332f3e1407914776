"""ExportedProgram -> TorchScript by tracing the program's module on example inputs."""

from __future__ import annotations

from pathlib import Path

from portkit.convert._torch import load_exported_program
from portkit.convert.registry import register_edge
from portkit.formats import Format
from portkit.options import ConvertOptions
from portkit.runtimes.torch_export import example_args
from portkit.specs import TensorSpec


@register_edge(tool="torch.jit.trace", sources=(Format.EXPORTED_PROGRAM,),
               target=Format.TORCHSCRIPT, cost=1.0)
def convert(src: Path, fmt: Format, dst: Path, inputs: list[TensorSpec],
            options: ConvertOptions) -> str:
    """Trace ``program.module()`` and save the TorchScript archive."""
    import torch

    program = load_exported_program(src, fmt, inputs)
    traced = torch.jit.trace(program.module(), example_args(inputs), check_trace=False)
    torch.jit.save(traced, str(dst))
    return "torch.jit.trace of ExportedProgram.module()"
