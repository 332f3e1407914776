"""ONNX -> TFLite with onnx2tf (inputs and outputs of rank 3-5 become channels-last)."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

from portkit.convert import _onnx2tf
from portkit.convert.registry import register_edge
from portkit.formats import Format
from portkit.specs import ConvertOptions, TensorSpec


@register_edge(tool="onnx2tf", sources=(Format.ONNX,), target=Format.TFLITE, cost=3.0,
               channels_last=True)
def convert(src: Path, fmt: Format, dst: Path, inputs: list[TensorSpec],
            options: ConvertOptions) -> str:
    """Convert with ``onnx2tf.convert`` and keep its float32 ``.tflite``."""
    _model, out = _onnx2tf.run(src)
    produced = out / f"{src.stem}_float32.tflite"
    if not produced.exists():
        raise RuntimeError(f"onnx2tf wrote no {produced.name} (found: {sorted(os.listdir(out))})")
    shutil.move(str(produced), str(dst))
    return "onnx2tf.convert (float32; NCHW inputs become NHWC)"
