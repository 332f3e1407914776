"""PyTorch -> ONNX with torch.onnx: two edges, one per exporter.

``torch.onnx`` is the dynamo exporter on an ExportedProgram (TorchScript sources are converted
with TS2EPConverter first); ``torch.onnx-legacy`` is the TorchScript exporter, with constant
folding, for TorchScript sources. As separate edges they are separate routes, so the planner
falls back from one to the other and the report names the exporter that made the artifact.

For TorchScript the legacy exporter goes first: on every fixture its ONNX ran and matched, and it
exports in a fraction of the time. (Its ONNX keeps the traced shape arithmetic, which onnx2tf
fails on for some models; the dynamo exporter's doesn't, since portkit folds that arithmetic
after TS2EPConverter: see ``runtimes.static_shapes``.)

Dynamic dimensions stay dynamic (``dim_param``): the dynamo exporter writes those of the
ExportedProgram (``_torch.load_exported_program`` gives it the inputs' ``dims``), the legacy
exporter is given them as ``dynamic_axes``, named as portkit names them.
"""

from __future__ import annotations

from pathlib import Path

from portkit.convert._torch import load_exported_program, output_names
from portkit.convert.dynamic import name_onnx_dims
from portkit.convert.registry import register_edge
from portkit.formats import Format
from portkit.options import ConvertOptions
from portkit.runtimes.torch_export import example_args
from portkit.specs import TensorSpec

LEGACY_OPSET = 17
# The opsets each exporter writes as asked, measured with torch 2.13 and onnx 1.23: the dynamo
# exporter writes 18 for any opset below 18 (and for 99), asked or not, so those are refused;
# it writes 19-25 as asked, and 23 is the newest torch declares (``ONNX_MAX_OPSET``). The
# legacy exporter writes what it is asked up to 23 and refuses 24; torch declares 7-20 for it
# (``ONNX_MIN_OPSET``, ``ONNX_TORCHSCRIPT_EXPORTER_MAX_OPSET``), and ONNX Runtime runs no
# opset below 7.
DYNAMO_OPSETS = (18, 23)
LEGACY_OPSETS = (7, 20)


@register_edge(tool="torch.onnx", sources=(Format.TORCHSCRIPT, Format.EXPORTED_PROGRAM),
               target=Format.ONNX, cost=1.0, opsets=DYNAMO_OPSETS)
def export_dynamo(src: Path, fmt: Format, dst: Path, inputs: list[TensorSpec],
                  options: ConvertOptions) -> str:
    """``torch.onnx.export(..., dynamo=True)`` on the source's ExportedProgram."""
    import torch

    program = load_exported_program(src, fmt, inputs)
    args = example_args(inputs)
    torch.onnx.export(
        program, args, str(dst), dynamo=True, external_data=False, opset_version=options.opset,
        input_names=[s.name for s in inputs], output_names=output_names(program.module(), args),
    )
    _name_dims(dst, inputs)
    return f"dynamo exporter, opset {_check(dst)}"


@register_edge(tool="torch.onnx-legacy", sources=(Format.TORCHSCRIPT,), target=Format.ONNX,
               cost=0.9, opsets=LEGACY_OPSETS)
def export_legacy(src: Path, fmt: Format, dst: Path, inputs: list[TensorSpec],
                  options: ConvertOptions) -> str:
    """``torch.onnx.export(..., dynamo=False)`` on the TorchScript module."""
    import torch

    module = torch.jit.load(str(src), map_location="cpu").eval()
    args = example_args(inputs)
    torch.onnx.export(
        module, args, str(dst), dynamo=False, opset_version=options.opset or LEGACY_OPSET,
        input_names=[s.name for s in inputs], output_names=output_names(module, args),
        dynamic_axes={s.name: {axis: d.name for axis, d in enumerate(s.dims) if d is not None}
                      for s in inputs if s.dynamic} or None,
    )
    return f"TorchScript (legacy) exporter, opset {_check(dst)}"


def _name_dims(path: Path, inputs: list[TensorSpec]) -> None:
    """Rename the dynamo exporter's ``dim_param`` symbols (``s23``) to the inputs' dimension
    names (``batch``), as the legacy exporter writes them (``dynamic.name_onnx_dims``)."""
    import onnx

    if not any(s.dynamic for s in inputs):
        return
    model = onnx.load(str(path), load_external_data=False)
    name_onnx_dims(model, inputs)
    onnx.save(model, str(path))


def _check(path: Path) -> int:
    """Post-condition: the file passes ``onnx.checker``; returns its default-domain opset."""
    import onnx

    onnx.checker.check_model(str(path))
    model = onnx.load(str(path), load_external_data=False)
    return next(o.version for o in model.opset_import if o.domain in ("", "ai.onnx"))
