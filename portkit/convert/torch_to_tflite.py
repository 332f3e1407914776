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
A ``Buckets`` dimension (``--seq-buckets``, when no route kept a sequence dynamic) is written as
one signature per size (``seq_16``, ``seq_64``...: ``litert_torch.signature`` for each), which
the TFLite runtime picks by the input's length.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

from portkit.convert import tflite_quantize
from portkit.convert._torch import load_exported_program
from portkit.convert.dynamic import static_only
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
from portkit.shapes import Buckets, shape_at
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
    buckets = [(name, axis, d) for name, axis, d in dynamic_axes(inputs)
               if isinstance(d, Buckets)]
    if len({d.name for _n, _a, d in buckets}) > 1:
        raise ConversionError(f"buckets along one dimension only, not {described(buckets)}")
    beyond = [a for a in dynamic_axes(inputs) if a[1] != 0 and not isinstance(a[2], Buckets)]
    if beyond:
        why = (f"litert-torch lowers only a dynamic first dimension; {described(beyond)} "
               f"{'is' if len(beyond) == 1 else 'are'} dynamic: a route through ONNX keeps them")
        if options.seq_buckets is not None:  # the fallback's cue: a signature per bucket
            raise static_only("litert-torch", inputs, why)
        # Else a plain refusal, as before --seq-buckets: --route litert-torch stays exit 3.
        raise ConversionError(f"{why}, or pass --static for a fixed-shape TFLite")
    import litert_torch
    import torch

    module = load_exported_program(src, fmt, inputs).module()
    free = [_unbucketed(s) for s in inputs]  # each signature's: the buckets' axes fixed
    dynamic = dynamic_shapes(free)
    args = export_args(free) if dynamic else example_args(free)
    via = "TorchScript -> ExportedProgram (TS2EPConverter) -> " if fmt is Format.TORCHSCRIPT else ""
    if options.variant == NHWC_IO.name:
        if buckets:
            raise ConversionError("nhwc-io: not with buckets (a sequence model has no 4-D "
                                  "input to make channels-last)")
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
        if buckets:
            return write_buckets(path)
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

    def write_buckets(path: Path) -> str:
        d = buckets[0][2]
        assert isinstance(d, Buckets)
        converter = litert_torch
        for size in d.sizes:
            at = [_unbucketed(dataclasses.replace(s, shape=shape_at(s, {d.name: size})))
                  for s in inputs]
            converter = converter.signature(f"seq_{size}", module,
                                            export_args(at) if dynamic else example_args(at),
                                            dynamic_shapes=dynamic)
        try:
            converter.convert().export(str(path))
        except Exception as e:  # noqa: BLE001 - its lowering raises anything (TypeError...)
            why = (str(e).strip().splitlines() or [""])[0]
            raise ConversionError(f"litert-torch failed to write a signature per size of "
                                  f"{d.describe()} ({type(e).__name__}: {why}); pass --static "
                                  "for a fixed-shape TFLite") from None
        return (f"{via}litert_torch.signature per size of {d.describe()} "
                f"({', '.join(f'seq_{n}' for n in d.sizes)})")

    if options.quantize is None:
        return write(dst)
    return tflite_quantize.from_float(write, dst, inputs, options)


def _unbucketed(spec: TensorSpec) -> TensorSpec:
    """``spec`` with its ``Buckets`` dimensions fixed (each signature fixes them at a size)."""
    dims = tuple(None if isinstance(d, Buckets) else d for d in spec.dims)
    return dataclasses.replace(spec, dims=dims if any(dims) else ())
