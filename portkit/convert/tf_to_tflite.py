"""TensorFlow (SavedModel, ``.keras``, ``.h5``) -> TFLite with ``tf.lite.TFLiteConverter``.

Keras models are exported to a SavedModel first, with the input shapes being converted, and
converted with ``from_saved_model``: the ``from_concrete_functions`` path on a Keras 3 model
writes a model whose outputs are all NaN.
A dimension the source keeps dynamic stays so (a ``None`` in the exported signature, -1 in the
flatbuffer's ``shape_signature``); one the converter can only fix (an RNN's TensorList with a
free batch) fails the route with a ``ConversionError`` that suggests ``--static``.
Conversion tries builtin ops only, then builtins plus Select TF ops (Flex) when some op has no
builtin kernel, unless ``--no-flex``. ``--quantize fp16`` is TFLiteConverter's; the other
modes quantize the float model it writes with ai-edge-quantizer (``tflite_quantize``), as every
route does: one quantizer, whose per-op error and ``--keep-float`` work for every source.
"""

from __future__ import annotations

import dataclasses
import os
import re
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from portkit.convert import tflite_quantize
from portkit.convert.dynamic import static_only
from portkit.convert.registry import register_edge
from portkit.errors import ConversionError
from portkit.formats import Format
from portkit.options import ConvertOptions
from portkit.policies import Quantize
from portkit.quantization import Quantization
from portkit.runtimes.tensorflow import export_keras, load_keras, signature
from portkit.safety import check_savedmodel
from portkit.specs import TensorSpec

# "tf.MatrixDeterminant {device = ""}" in the converter's list of ops without a builtin.
_UNSUPPORTED_OP = re.compile(r"\btf\.([A-Z][A-Za-z0-9_]*)")
# "'tf.TensorListReserve' op requires element_shape to be static": a Keras RNN with a free batch.
_NEEDS_STATIC = re.compile(r"'tf\.(\w+)' op requires element_shape to be static")


@register_edge(tool="tflite-converter", sources=(Format.SAVEDMODEL, Format.KERAS, Format.H5),
               target=Format.TFLITE, cost=1.0, quantizes=(Quantize.FP16, *tflite_quantize.MODES))
def convert(src: Path, fmt: Format, dst: Path, inputs: list[TensorSpec],
            options: ConvertOptions) -> str | tuple[str, Quantization]:
    """Convert with ``TFLiteConverter.from_saved_model`` (float16 weights with ``--quantize
    fp16``); other quantization modes: float, then ``tflite_quantize``."""
    if options.quantize in tflite_quantize.MODES:
        floats = dataclasses.replace(options, quantize=None, calibration=None)
        return tflite_quantize.from_float(
            lambda path: str(convert(src, fmt, path, inputs, floats)), dst, inputs, options)
    import tensorflow as tf

    saved, sig = src, options.load.signature
    if fmt is Format.SAVEDMODEL:
        check_savedmodel(src, options.load.trust_model)
    if fmt is not Format.SAVEDMODEL:
        saved, sig = Path(os.getcwd()) / "exported", None
        export_keras(load_keras(src, fmt, options.load), saved, inputs)
    loaded = tf.saved_model.load(str(saved))
    sig, _fn = signature(src, loaded, sig)

    def converter() -> Any:
        c = tf.lite.TFLiteConverter.from_saved_model(str(saved), signature_keys=[sig])
        if options.quantize is Quantize.FP16:
            c.optimizations = [tf.lite.Optimize.DEFAULT]
            c.target_spec.supported_types = [tf.float16]
        return c

    data, flex = builtins_first(converter, options, inputs)
    dst.write_bytes(data)
    notes = [f"signature {sig}", options.quantize.value if options.quantize else "float32", *flex]
    return "TFLiteConverter.from_saved_model (" + "; ".join(notes) + ")"


def builtins_first(converter: Callable[[], Any], options: ConvertOptions,
                   inputs: Sequence[TensorSpec] = ()) -> tuple[bytes, list[str]]:
    """Convert with builtin ops only; if some op has no builtin, again with Select TF ops (Flex),
    unless ``--no-flex``.

    Args:
        converter: Makes a fresh, configured ``TFLiteConverter``.
        options: The conversion options (``no_flex``, ``quantize``).
        inputs: The source's inputs (their ``dims``: the dimensions kept dynamic).

    Returns:
        The flatbuffer, and a note naming the Flex ops (empty when builtins sufficed).

    Raises:
        ConversionError: An op has no builtin and ``--no-flex`` was given, or an op needs a
            static shape where ``inputs`` keep a dimension dynamic (``--static`` fixes it).
    """
    import tensorflow as tf

    try:
        return _convert(converter(), [tf.lite.OpsSet.TFLITE_BUILTINS]), []
    except _NeedsStatic as e:
        if not any(s.dynamic for s in inputs):
            raise ConversionError(e.text) from None
        raise static_only("TFLiteConverter", inputs, f"tf.{e.op} (an RNN's loop state) needs "
                          "a static element shape") from None
    except _NoBuiltin as e:
        if options.no_flex:
            raise ConversionError(
                f"ops with no TFLite builtin: {', '.join(e.ops)}; remove --no-flex to ship them "
                "with the Flex runtime (Select TF ops), or change the model") from None
        data = _convert(converter(), [tf.lite.OpsSet.TFLITE_BUILTINS,
                                      tf.lite.OpsSet.SELECT_TF_OPS])
        return data, [f"Select TF ops (Flex) for {', '.join(e.ops)}"]


class _NoBuiltin(Exception):
    def __init__(self, ops: list[str]) -> None:
        super().__init__(", ".join(ops))
        self.ops = ops


class _NeedsStatic(Exception):
    def __init__(self, op: str, text: str) -> None:
        super().__init__(op)
        self.op, self.text = op, text


def _convert(converter: Any, ops: list[Any]) -> bytes:
    converter.target_spec.supported_ops = ops
    try:
        return converter.convert()
    except Exception as e:  # noqa: BLE001 - the converter raises ConverterError or others
        text = str(e)
        static = _NEEDS_STATIC.search(text)
        if static:
            raise _NeedsStatic(static[1], text) from None
        missing = sorted(set(_UNSUPPORTED_OP.findall(text)))
        if missing and "not supported" in text:
            raise _NoBuiltin(missing) from None
        raise
