"""ONNX -> SavedModel with onnx2tf (4-D inputs become NHWC; signature ``serving_default`` keyed
by the ONNX input and output names).

onnx2tf builds a tf_keras model; with ``disable_model_save`` it returns it without writing its
own SavedModel and two ``.tflite`` files, and portkit saves only the SavedModel.
"""

from __future__ import annotations

from pathlib import Path

from portkit.convert import _onnx2tf
from portkit.convert.registry import register_edge
from portkit.formats import Format
from portkit.options import ConvertOptions
from portkit.specs import TensorSpec


@register_edge(tool="onnx2tf", sources=(Format.ONNX,), target=Format.SAVEDMODEL, cost=2.5,
               channels_last=True)
def convert(src: Path, fmt: Format, dst: Path, inputs: list[TensorSpec],
            options: ConvertOptions) -> str:
    """Build the tf_keras model with onnx2tf and ``tf.saved_model.save`` it."""
    import tensorflow as tf

    model, _out = _onnx2tf.run(src, inputs, disable_model_save=True)
    tf.saved_model.save(model, str(dst))
    return "onnx2tf.convert -> tf.saved_model.save (NCHW inputs become NHWC)"
