"""PyTorch (TorchScript or ExportedProgram) -> ExecuTorch program (``.pte``) with ExecuTorch's
own exporter: ``to_edge_transform_and_lower`` then ``to_executorch``.

Two edges: ``executorch-xnnpack`` lowers what the XNNPACK partitioner takes to its delegate (the
CPU backend ExecuTorch ships for phones) and leaves the rest to portable kernels;
``executorch-portable`` lowers nothing, the route tried when the delegate fails to lower or its
program does not match.

A dynamic dimension becomes a bounded one: ExecuTorch plans memory for the largest size, so a
dimension without an upper bound gets the top of ``shapes.DEFAULT_RANGE`` (or its example, if
larger), and the program refuses a size beyond it.

``--quantize fp16`` runs the model in float16 (``half``), its inputs and outputs still float32.
``--quantize int8`` (int8 weights and activations, calibrated) and ``dynamic`` (int8 weights,
activations quantized per run) go through PT2E with the XNNPACK quantizer (torchao's
``prepare_pt2e``/``convert_pt2e``): per-channel symmetric weights, calibrated on
``--calibration`` less the samples held back to validate on. ``--keep-float NAME`` leaves a
module (by its name in the model: ``features.3``) float; ``--keep-float auto`` finds the
fewest (``executorch_keep_float``, which holds the PT2E steps both use).
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

from portkit.convert._torch import load_exported_program
from portkit.convert.executorch_keep_float import (
    export,
    keep_float_search,
    modules_of,
    quantize_module,
)
from portkit.convert.registry import register_edge
from portkit.convert.tflite_quantize import JUDGE_SAMPLES
from portkit.errors import ConversionError, UsageError
from portkit.formats import Format
from portkit.options import ConvertOptions
from portkit.policies import Quantize
from portkit.quantization import Quantization
from portkit.runtimes.torch_export import dynamic_shapes, example_args, export_args
from portkit.shapes import DEFAULT_RANGE
from portkit.specs import TensorSpec, load_calibration, make_inputs

SOURCES = (Format.TORCHSCRIPT, Format.EXPORTED_PROGRAM)
MODES = (Quantize.DYNAMIC, Quantize.INT8)
TOOL = "torchao PT2E (XNNPACKQuantizer)"


@register_edge(tool="executorch-xnnpack", sources=SOURCES, target=Format.EXECUTORCH, cost=1.0,
               quantizes=(Quantize.FP16, *MODES))
def xnnpack(src: Path, fmt: Format, dst: Path, inputs: list[TensorSpec],
            options: ConvertOptions) -> str | tuple[str, Quantization]:
    """Lower to the XNNPACK delegate (what it refuses runs on portable kernels)."""
    return _convert(src, fmt, dst, inputs, options, delegate=True)


@register_edge(tool="executorch-portable", sources=SOURCES, target=Format.EXECUTORCH, cost=2.0)
def portable(src: Path, fmt: Format, dst: Path, inputs: list[TensorSpec],
             options: ConvertOptions) -> str:
    """Portable kernels only: no delegate."""
    detail = _convert(src, fmt, dst, inputs, options, delegate=False)
    assert isinstance(detail, str)
    return detail


def bounded(inputs: list[TensorSpec]) -> list[TensorSpec]:
    """``inputs`` with every dynamic dimension given an upper bound (ExecuTorch plans memory
    for the largest size): its own, else the default range's top or the example, if larger."""
    out = []
    for spec in inputs:
        dims = tuple(
            d if d is None or d.hi is not None
            else dataclasses.replace(d, hi=max(DEFAULT_RANGE[1], int(size or 1)))
            for d, size in zip(spec.dims, spec.shape or ()))
        out.append(dataclasses.replace(spec, dims=dims) if spec.dims else spec)
    return out


def _convert(src: Path, fmt: Format, dst: Path, inputs: list[TensorSpec],
             options: ConvertOptions, *, delegate: bool) -> str | tuple[str, Quantization]:
    inputs = bounded(inputs)
    program = load_exported_program(src, fmt, inputs)
    via = "TorchScript -> ExportedProgram (TS2EPConverter) -> " if fmt is Format.TORCHSCRIPT else ""
    quantization = None
    if options.quantize is Quantize.FP16:
        program, quantization = half(program, inputs)
        via += f"{quantization.recipe} -> "
    elif options.quantize is not None:
        if options.quantize not in MODES:
            raise UsageError(f"--quantize {options.quantize.value}: ExecuTorch quantizes "
                             f"{' or '.join(m.value for m in MODES)} (PT2E)")
        program, quantization = quantize(program, inputs, options)
        via += f"{quantization.recipe} -> "
    lowered = lower(program, delegate)
    dst.write_bytes(lowered)
    how = "XnnpackPartitioner" if delegate else "no delegate: portable kernels"
    detail = f"{via}to_edge_transform_and_lower ({how}) -> to_executorch"
    if quantization is None:
        return detail
    return detail, dataclasses.replace(quantization, bytes=len(lowered))


def half(program: Any, inputs: list[TensorSpec]) -> tuple[Any, Quantization]:
    """``program`` in float16 (weights and math), its float inputs cast to float16 on the way
    in and its outputs back to float32 on the way out, so it takes what the source takes: half
    the weights' bytes; XNNPACK runs the float16 kernels where the CPU has them (on x86 without
    them, slower than float32: ``--optimize latency`` times it)."""
    import torch

    class Half(torch.nn.Module):
        def __init__(self, module: Any) -> None:
            super().__init__()
            self.module = module.half()

        def forward(self, *args: Any) -> Any:
            out = self.module(*(a.half() if a.is_floating_point() else a for a in args))
            return torch.utils._pytree.tree_map(
                lambda t: t.float() if isinstance(t, torch.Tensor) and t.is_floating_point()
                else t, out)

    report = Quantization(mode=Quantize.FP16.value, tool="torch",
                          recipe="module.half() (float16 weights and math, float32 inputs and "
                                 "outputs cast at the edges)")
    dynamic = dynamic_shapes(inputs)
    args = export_args(inputs) if dynamic else example_args(inputs)
    # forward(*args): its inputs are one tuple, and so are their dynamic shapes
    return torch.export.export(Half(program.module()), args,
                               dynamic_shapes=(dynamic,) if dynamic else None), report


def lower(program: Any, delegate: bool) -> bytes:
    """The ``.pte`` bytes of ``program``, lowered to XNNPACK when ``delegate``."""
    from executorch.exir import to_edge_transform_and_lower

    partitioners = []
    if delegate:
        from executorch.backends.xnnpack.partition.xnnpack_partitioner import XnnpackPartitioner

        partitioners = [XnnpackPartitioner()]
    try:
        edge = to_edge_transform_and_lower(program, partitioner=partitioners)
        return bytes(edge.to_executorch().buffer)
    except Exception as e:  # noqa: BLE001 - lowering raises anything (asserts, RuntimeError)
        why = (str(e).strip().splitlines() or [type(e).__name__])[0][:300]
        what = "XNNPACK" if delegate else "portable kernels"
        raise ConversionError(f"ExecuTorch could not lower the program to {what} "
                              f"({type(e).__name__}: {why})") from None


def quantize(program: Any, inputs: list[TensorSpec], options: ConvertOptions
             ) -> tuple[Any, Quantization]:
    """``program`` quantized with PT2E for XNNPACK, as ``options`` ask.

    Args:
        program: The float ExportedProgram.
        inputs: Its inputs, dynamic dimensions bounded (calibration samples are in their names
            and layout).
        options: ``quantize`` (one of ``MODES``), ``calibration``, ``holdout``,
            ``keep_float``/``keep_float_auto`` and ``judge``.

    Returns:
        The quantized ExportedProgram, and what quantizing did (its ``bytes`` filled later).

    Raises:
        UsageError: A ``--keep-float`` name is no module with an op PT2E quantizes (a flag
            about the source: every route would refuse it), or calibration data that doesn't
            fit.
    """
    mode = options.quantize
    assert mode in MODES, mode
    module = program.module()
    names = (modules_of(module, inputs, mode) if options.keep_float or options.keep_float_auto
             else [])
    known = {".".join(n.split(".")[:i + 1]) for n in names for i in range(n.count(".") + 1)}
    unknown = [n for n in options.keep_float if n not in known]
    if unknown:
        shown = ", ".join(names[:12]) + (f" and {len(names) - 12} more" if len(names) > 12 else "")
        shown = shown or ("none: its ops carry no module names (a TorchScript source's "
                          "don't; a .pt2 from torch.export does)")
        raise UsageError(f"--keep-float {', '.join(unknown)}: no module of the model with an op "
                         f"that --quantize {mode.value} quantizes; name a module as the model "
                         f"does (or one holding it): {shown}")
    samples = _samples(inputs, options)
    kept = tuple(options.keep_float)
    trials = 1
    note = ""
    found = None
    if options.keep_float_auto:
        found = keep_float_search(module, inputs, samples, names, options)
        quantized, kept, trials, note = found.model, found.kept, found.trials, found.note
    else:
        quantized = quantize_module(module, inputs, samples, mode, kept)
    about = ("int8 weights and activations, calibrated" if mode.calibrated
             else "int8 weights, activations quantized per run")
    floats = f"; {len(kept)} module(s) kept float" if kept else ""
    recipe = f"XNNPACKQuantizer symmetric per-channel ({about}{floats})"
    report = Quantization(
        mode=mode.value, tool=TOOL, recipe=recipe,
        calibration_samples=len(samples) if mode.calibrated else 0,
        held_back=options.holdout if mode.calibrated else 0, keep_float=kept,
        keep_float_auto=options.keep_float_auto, trials=trials,
        search_seconds=found.seconds if found else None,
        search_peak_mb=found.peak_mb if found else None, note=note)
    return export(quantized, inputs), report


def _samples(inputs: list[TensorSpec], options: ConvertOptions) -> list[tuple[Any, ...]]:
    """The samples to calibrate on and that ``--keep-float auto`` judges on, as argument
    tuples: ``--calibration`` less the samples held back; without it (dynamic), seeded inputs,
    as the TFLite path judges."""
    import torch

    if options.calibration is not None:
        feeds = load_calibration(options.calibration, inputs, options.holdout,
                                 options.allow_nonfinite)
    else:
        feeds = [make_inputs(inputs, seed=i) for i in range(JUDGE_SAMPLES)]
    return [tuple(torch.from_numpy(f[s.name]) for s in inputs) for f in feeds]
