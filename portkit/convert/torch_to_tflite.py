"""PyTorch (TorchScript or ExportedProgram) -> TFLite with litert-torch (torch.export underneath).

Its variant ``nhwc-io`` wraps the module with ``litert_torch.to_channel_last_io`` so 4-D inputs
and outputs are channels-last (NHWC): the layout camera frames and most TFLite pipelines use, with
no transposes at the model's edges.

With ``--quantize dynamic | int8 | int16x8`` the float model it writes is quantized by
ai-edge-quantizer (``tflite_quantize``): seconds, where the ONNX detour through TFLiteConverter
(``torch.onnx+onnx2tf+tflite-converter``, the fallback) takes minutes. Its variant
``int8-compute`` (int8/int16x8 only) quantizes only the conv and linear ops: not full integer,
but far faster on transformers, whose int8 attention math leaves XNNPACK's fast kernels.

A dynamic first dimension (a batch) stays dynamic (``shape_signature`` -1): litert-torch exports
with it as a ``torch.export.Dim``. Any other dynamic dimension it fails to lower (litert-torch
0.10, with or without ``use_v2``), so it refuses those up front and the route through ONNX runs.
"""

from __future__ import annotations

from pathlib import Path

from portkit.convert import tflite_quantize
from portkit.convert._torch import load_exported_program
from portkit.convert.registry import Variant, register_edge
from portkit.errors import ConversionError
from portkit.formats import Format
from portkit.options import ConvertOptions
from portkit.quantization import Quantization
from portkit.runtimes.torch_export import (
    described,
    dynamic_axes,
    dynamic_shapes,
    example_args,
    export_args,
)
from portkit.specs import TensorSpec

NHWC_IO = Variant("nhwc-io", "4-D inputs and outputs channels-last (to_channel_last_io)",
                  channels_last=True)
INT8_COMPUTE = Variant(tflite_quantize.COMPUTE_ONLY, "int8/int16x8: only conv and linear ops "
                       "quantized, the rest float (as PT2E quantizes)", quantized=True)


@register_edge(tool="litert-torch", sources=(Format.TORCHSCRIPT, Format.EXPORTED_PROGRAM),
               target=Format.TFLITE, cost=1.0, variants=(NHWC_IO, INT8_COMPUTE),
               quantizes=tflite_quantize.MODES)
def convert(src: Path, fmt: Format, dst: Path, inputs: list[TensorSpec],
            options: ConvertOptions) -> str | tuple[str, Quantization]:
    """Convert through ``litert_torch.convert``; inputs keep their layout (NCHW stays NCHW)
    unless the variant is ``nhwc-io``; then quantize if asked."""
    beyond = [a for a in dynamic_axes(inputs) if a[1] != 0]
    if beyond:
        raise ConversionError(
            f"litert-torch lowers only a dynamic first dimension; {described(beyond)} "
            f"{'is' if len(beyond) == 1 else 'are'} dynamic: a route through ONNX keeps them, "
            "or pass --static for a fixed-shape TFLite")
    import litert_torch
    import torch

    module = load_exported_program(src, fmt, inputs).module()
    dynamic = dynamic_shapes(inputs)
    args = export_args(inputs) if dynamic else example_args(inputs)
    via = "TorchScript -> ExportedProgram (TS2EPConverter) -> " if fmt is Format.TORCHSCRIPT else ""
    if options.variant == NHWC_IO.name:
        with torch.no_grad():
            produced = module(*args)
        outs = produced if isinstance(produced, (tuple, list)) else (produced,)
        ins4 = [i for i, a in enumerate(args) if a.dim() == 4 and a.is_floating_point()]
        outs4 = [i for i, o in enumerate(outs) if isinstance(o, torch.Tensor) and o.dim() == 4]
        if not ins4 and not outs4:
            raise ConversionError("nhwc-io: the model has no 4-D input or output to make "
                                  "channels-last")
        module = litert_torch.to_channel_last_io(module, args=ins4, outputs=outs4)
        args = tuple(a.permute(0, 2, 3, 1).contiguous() if i in ins4 else a
                     for i, a in enumerate(args))
        via += "to_channel_last_io (NCHW inputs and outputs become NHWC) -> "

    def write(path: Path) -> str:
        try:
            litert_torch.convert(module, args, dynamic_shapes=dynamic).export(str(path))
        except Exception as e:  # noqa: BLE001 - its lowering raises anything (TypeError...)
            if dynamic is None:
                raise
            why = (str(e).strip().splitlines() or [""])[0]
            raise ConversionError(
                f"litert-torch failed to lower {described(dynamic_axes(inputs))} dynamic "
                f"({type(e).__name__}: {why}); a route through ONNX keeps it dynamic, or pass "
                "--static for a fixed-shape TFLite") from None
        return f"{via}litert_torch.convert"

    if options.quantize is None:
        return write(dst)
    return tflite_quantize.from_float(write, dst, inputs, options)
