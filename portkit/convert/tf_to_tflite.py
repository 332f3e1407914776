"""TensorFlow (SavedModel, ``.keras``, ``.h5``) -> TFLite with ``tf.lite.TFLiteConverter``.

Keras models are exported to a SavedModel first, with the input shapes being converted, and
converted with ``from_saved_model``: the ``from_concrete_functions`` path on a Keras 3 model
writes a model whose outputs are all NaN.
Conversion tries builtin ops only, then builtins plus Select TF ops (Flex) when some op has no
builtin kernel, unless ``--no-flex``. Quantization (``--quantize``) happens here.
"""

from __future__ import annotations

import os
import re
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np

from portkit.convert.registry import register_edge
from portkit.errors import ConversionError
from portkit.formats import Format
from portkit.options import ConvertOptions
from portkit.policies import Quantize
from portkit.runtimes.binding import bind_inputs
from portkit.runtimes.tensorflow import export_keras, load_keras, signature
from portkit.safety import check_savedmodel
from portkit.specs import TensorSpec, load_inputs_file

# "tf.MatrixDeterminant {device = ""}" in the converter's list of ops without a builtin.
_UNSUPPORTED_OP = re.compile(r"\btf\.([A-Z][A-Za-z0-9_]*)")


@register_edge(tool="tflite-converter", sources=(Format.SAVEDMODEL, Format.KERAS, Format.H5),
               target=Format.TFLITE, cost=1.0, quantizes=True)
def convert(src: Path, fmt: Format, dst: Path, inputs: list[TensorSpec],
            options: ConvertOptions) -> str:
    """Convert with ``TFLiteConverter.from_saved_model`` and the requested quantization."""
    import tensorflow as tf

    saved, sig = src, options.load.signature
    if fmt is Format.SAVEDMODEL:
        check_savedmodel(src, options.load.trust_model)
    if fmt is not Format.SAVEDMODEL:
        saved, sig = Path(os.getcwd()) / "exported", None
        export_keras(load_keras(src, fmt, options.load), saved, inputs)
    loaded = tf.saved_model.load(str(saved))
    sig, fn = signature(src, loaded, sig)

    def converter() -> Any:
        c = tf.lite.TFLiteConverter.from_saved_model(str(saved), signature_keys=[sig])
        _quantization(c, options, fn, inputs)
        return c

    data, flex = builtins_first(converter, options)
    dst.write_bytes(data)
    notes = [f"signature {sig}", options.quantize.value if options.quantize else "float32", *flex]
    return "TFLiteConverter.from_saved_model (" + "; ".join(notes) + ")"


def builtins_first(converter: Callable[[], Any], options: ConvertOptions) -> tuple[bytes, list[str]]:
    """Convert with builtin ops only; if some op has no builtin, again with Select TF ops (Flex),
    unless ``--no-flex``.

    Args:
        converter: Makes a fresh, configured ``TFLiteConverter``.
        options: The conversion options (``no_flex``, ``quantize``).

    Returns:
        The flatbuffer, and a note naming the Flex ops (empty when builtins sufficed).

    Raises:
        ConversionError: An op has no builtin and ``--no-flex`` was given.
    """
    import tensorflow as tf

    try:
        return _convert(converter(), [tf.lite.OpsSet.TFLITE_BUILTINS], options), []
    except _NoBuiltin as e:
        if options.no_flex:
            raise ConversionError(
                f"ops with no TFLite builtin: {', '.join(e.ops)}; remove --no-flex to ship them "
                "with the Flex runtime (Select TF ops), or change the model") from None
        data = _convert(converter(), [tf.lite.OpsSet.TFLITE_BUILTINS,
                                      tf.lite.OpsSet.SELECT_TF_OPS], options)
        return data, [f"Select TF ops (Flex) for {', '.join(e.ops)}"]


class _NoBuiltin(Exception):
    def __init__(self, ops: list[str]) -> None:
        super().__init__(", ".join(ops))
        self.ops = ops


def _convert(converter: Any, ops: list[Any], options: ConvertOptions) -> bytes:
    import tensorflow as tf

    if not (options.quantize and options.quantize.calibrated):  # else _quantization set them
        converter.target_spec.supported_ops = ops
    elif tf.lite.OpsSet.SELECT_TF_OPS in ops:
        converter.target_spec.supported_ops = [*converter.target_spec.supported_ops,
                                               tf.lite.OpsSet.SELECT_TF_OPS]
    try:
        return converter.convert()
    except Exception as e:  # noqa: BLE001 - the converter raises ConverterError or others
        text = str(e)
        missing = sorted(set(_UNSUPPORTED_OP.findall(text)))
        if missing and "not supported" in text:
            raise _NoBuiltin(missing) from None
        raise


def _quantization(converter: Any, options: ConvertOptions, fn: Any,
                  inputs: list[TensorSpec]) -> None:
    import tensorflow as tf

    mode = options.quantize
    if mode is None:
        return
    converter.optimizations = [tf.lite.Optimize.DEFAULT]
    if mode is Quantize.FP16:
        converter.target_spec.supported_types = [tf.float16]
        return
    if mode is Quantize.DYNAMIC:
        return
    converter.representative_dataset = lambda: _calibration(options, fn, inputs)
    if mode is Quantize.INT8:
        converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
        if options.int8_io:
            converter.inference_input_type = tf.int8
            converter.inference_output_type = tf.int8
    else:
        converter.target_spec.supported_ops = [
            tf.lite.OpsSet.EXPERIMENTAL_TFLITE_BUILTINS_ACTIVATIONS_INT16_WEIGHTS_INT8]


def _calibration(options: ConvertOptions, fn: Any,
                 inputs: list[TensorSpec]) -> Iterator[dict[str, np.ndarray]]:
    """Calibration samples, mapped to the signature's input names and layout."""
    assert options.calibration is not None
    wanted = [TensorSpec(k, tuple(t.shape.as_list()), t.dtype.name)
              for k, t in fn.structured_input_signature[1].items()]
    bindings = bind_inputs(inputs, wanted)
    dtypes = {s.name: s.dtype for s in wanted}
    for sample in load_inputs_file(options.calibration, inputs, what="--calibration",
                                   allow_nonfinite=options.allow_nonfinite):
        yield {b.artifact: b.to_artifact(sample[b.source]).astype(dtypes[b.artifact])
               for b in bindings}
