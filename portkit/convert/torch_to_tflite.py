"""PyTorch (TorchScript or ExportedProgram) -> TFLite with litert-torch (torch.export underneath)."""

from __future__ import annotations

from pathlib import Path

from portkit.convert._torch import example_args, load_exported_program
from portkit.convert.registry import register_edge
from portkit.formats import Format
from portkit.specs import ConvertOptions, TensorSpec


@register_edge(tool="litert-torch", sources=(Format.TORCHSCRIPT, Format.EXPORTED_PROGRAM),
               target=Format.TFLITE, cost=1.0)
def convert(src: Path, fmt: Format, dst: Path, inputs: list[TensorSpec],
            options: ConvertOptions) -> str:
    """Convert through ``litert_torch.convert``; inputs keep their layout (NCHW stays NCHW)."""
    import litert_torch

    program = load_exported_program(src, fmt, inputs)
    litert_torch.convert(program.module(), example_args(inputs)).export(str(dst))
    via = "TorchScript -> ExportedProgram (TS2EPConverter) -> " if fmt is Format.TORCHSCRIPT else ""
    return f"{via}litert_torch.convert"
