"""ONNX -> TFLite with onnx2tf (inputs and outputs of rank 3-5 become channels-last).

onnx2tf builds a tf_keras model and, left to itself, writes a SavedModel, a float32 and a
float16 ``.tflite`` (mostly the time of those conversions). portkit asks for the model only
(``disable_model_save``) and converts it once, as onnx2tf does
(``TFLiteConverter.from_keras_model``), builtin ops first: the same float32 flatbuffer in about
half the time of onnx2tf's CLI (resnet18 on two cores: 36 s against 70 s).

Dynamic dimensions (``dim_param``) the pipeline keeps dynamic stay -1 in the flatbuffer's
``shape_signature``; an artifact that fixed one fails the route (``dynamic.check_kept``, run
after every edge).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from portkit.convert import _onnx2tf
from portkit.convert.registry import register_edge
from portkit.convert.tf_to_tflite import builtins_first
from portkit.formats import Format
from portkit.options import ConvertOptions
from portkit.specs import TensorSpec


@register_edge(tool="onnx2tf", sources=(Format.ONNX,), target=Format.TFLITE, cost=3.0,
               channels_last=True)
def convert(src: Path, fmt: Format, dst: Path, inputs: list[TensorSpec],
            options: ConvertOptions) -> str:
    """Build the model with ``onnx2tf.convert`` and convert it to a float32 ``.tflite``."""
    import tensorflow as tf

    model, _out = _onnx2tf.run(src, inputs, disable_model_save=True)

    def converter() -> Any:
        return tf.lite.TFLiteConverter.from_keras_model(model)

    data, flex = builtins_first(converter, options, inputs)
    dst.write_bytes(data)
    return "; ".join(["onnx2tf.convert -> TFLiteConverter.from_keras_model (float32; NCHW "
                      "inputs become NHWC)", *flex])
