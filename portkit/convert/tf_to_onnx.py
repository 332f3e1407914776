"""TensorFlow (SavedModel, ``.keras``, ``.h5``) and TFLite -> ONNX with tf2onnx.

Keras models are exported to a SavedModel first (with Keras's own signature: the batch free);
SavedModels go through tf2onnx's SavedModel
loader (inputs keep the signature's names, outputs its keys). TFLite models go through
``from_tflite``; their inputs and outputs are renamed from tensor names
(``serving_default_image:0``) to the signature's (``image``).

tf2onnx logs an op it can't map, leaves it in the graph and returns success; portkit adds
handlers for the two such ops Keras models commonly hold (``Erfc`` from exact GELU, ``TFL_GELU``)
and refuses a model whose graph still holds an op ONNX doesn't define. A dynamic input dimension
is written as a ``dim_param`` named as portkit names it (``batch``, not tf2onnx's ``unk__12``);
one tf2onnx fixed fails the route (``dynamic.check_kept``, run after every edge).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from portkit.convert.dynamic import name_onnx_dims
from portkit.convert.registry import register_edge
from portkit.errors import ConversionError
from portkit.formats import Format
from portkit.options import ConvertOptions
from portkit.runtimes.tensorflow import (
    keras_name,
    load_keras,
    signature,
    signature_shape,
)
from portkit.safety import check_savedmodel
from portkit.specs import TensorSpec


def newest_opset() -> int:
    """The newest ONNX opset tf2onnx writes."""
    from tf2onnx import constants

    return max(constants.OPSET_TO_IR_VERSION)


# What tf2onnx 1.17 writes as asked (measured): opsets 1-18, refusing 19 and up; ONNX Runtime
# runs none below 7.
OPSETS = (7, 18)


@register_edge(tool="tf2onnx", sources=(Format.SAVEDMODEL, Format.KERAS, Format.H5, Format.TFLITE),
               target=Format.ONNX, cost=1.0, opsets=OPSETS)
def convert(src: Path, fmt: Format, dst: Path, inputs: list[TensorSpec],
            options: ConvertOptions) -> str:
    """Convert with tf2onnx at ``--opset`` (default: the newest it supports)."""
    opset = options.opset or newest_opset()
    if opset > newest_opset():
        raise ConversionError(
            f"tf2onnx writes opsets up to {newest_opset()}, not {opset} (--opset)")
    if fmt is Format.TFLITE:
        model = _from_tflite(src, opset)
        how = "tf2onnx.convert.from_tflite"
    elif fmt is Format.SAVEDMODEL:
        check_savedmodel(src, options.load.trust_model)
        model, sig = _from_saved_model(src, src, options.load.signature, opset)
        how = f"tf2onnx SavedModel loader (signature {sig})"
    else:  # Keras: from the model itself, without a SavedModel written and read back
        model = _from_keras(load_keras(src, fmt, options.load), inputs, opset)
        how = "tf2onnx.convert.from_keras"
    _check(model)
    name_onnx_dims(model, inputs)
    import onnx

    onnx.save(model, str(dst))
    return f"{how}, opset {opset}"


def _from_saved_model(saved: Path, src: Path, sig: str | None, opset: int) -> tuple[Any, str]:
    import tensorflow as tf
    from tf2onnx import tf_loader
    from tf2onnx.convert import _convert_common

    sig, _fn = signature(src, tf.saved_model.load(str(saved)), sig)
    graph, ins, outs, tables, renames = tf_loader.from_saved_model(
        str(saved), None, None, tag="serve", signatures=[sig], return_initialized_tables=True,
        return_tensors_to_rename=True,
    )
    model, _ = _convert_common(
        graph, name=src.stem, opset=opset, input_names=ins, output_names=outs,
        initialized_tables=tables, tensors_to_rename=renames, custom_op_handlers=_handlers(),
    )
    return model, sig


def _from_keras(model: Any, inputs: list[TensorSpec], opset: int) -> Any:
    """``tf2onnx.convert.from_keras`` with the inputs' signature (``None`` where they keep a
    dimension dynamic). It converts the model's own graph: writing it as a SavedModel and
    loading that back first cost ResNet50 about 9 s of 25."""
    import tensorflow as tf
    import tf2onnx

    by_name = {s.name: s for s in inputs}
    specs = [by_name.get(keras_name(t), None) for t in model.inputs]
    signature = [tf.TensorSpec(signature_shape(s), s.dtype, name=s.name) if s is not None
                 else tf.TensorSpec(t.shape, t.dtype, name=keras_name(t))
                 for s, t in zip(specs, model.inputs)]
    onnx_model, _ = tf2onnx.convert.from_keras(model, input_signature=signature, opset=opset,
                                               custom_op_handlers=_handlers())
    return onnx_model


def _from_tflite(src: Path, opset: int) -> Any:
    import tf2onnx
    from ai_edge_litert.interpreter import Interpreter

    model, _ = tf2onnx.convert.from_tflite(str(src), opset=opset, custom_op_handlers=_handlers())
    interpreter = Interpreter(model_path=str(src))
    signatures = interpreter.get_signature_list()
    if len(signatures) == 1:
        runner = interpreter.get_signature_runner(next(iter(signatures)))
        by_index = {d["index"]: name
                    for details in (runner.get_input_details(), runner.get_output_details())
                    for name, d in details.items()}
        _rename(model, {t["name"]: by_index[t["index"]] for t in interpreter.get_tensor_details()
                        if t["index"] in by_index})
    return model


def _rename(model: Any, names: dict[str, str]) -> None:
    """Rename graph inputs/outputs (and every reference to them) to clean signature names."""
    graph = model.graph
    mapping = {old: new for old, new in names.items()
               if any(v.name == old for v in [*graph.input, *graph.output])}
    for value in [*graph.input, *graph.output]:
        value.name = mapping.get(value.name, value.name)
    for node in graph.node:
        node.input[:] = [mapping.get(n, n) for n in node.input]
        node.output[:] = [mapping.get(n, n) for n in node.output]


def _check(model: Any) -> None:
    """Post-condition: every op is one ONNX defines, and the checker passes."""
    import onnx

    unknown = sorted({n.op_type for n in model.graph.node
                      if not onnx.defs.has(n.op_type, n.domain or "")})
    if unknown:
        raise ConversionError(f"tf2onnx left ops ONNX doesn't define: {', '.join(unknown)}")
    onnx.checker.check_model(model)


def _handlers() -> dict[str, tuple[Any, list[Any]]]:
    return {"Erfc": (_erfc, []), "TFL_GELU": (_tfl_gelu, [])}


def _erfc(ctx: Any, node: Any, name: str, args: Any) -> None:
    """``Erfc(x) = 1 - Erf(x)`` (Keras's exact GELU lowers to Erfc)."""
    from tf2onnx import utils

    dtype = utils.map_onnx_to_numpy_type(ctx.get_dtype(node.input[0]))
    erf = ctx.make_node("Erf", [node.input[0]], op_name_scope=node.name)
    one = ctx.make_const(utils.make_name(node.name + "_one"), np.array(1, dtype=dtype))
    node.type = "Sub"
    ctx.replace_inputs(node, [one.output[0], erf.output[0]])


def _tfl_gelu(ctx: Any, node: Any, name: str, args: Any) -> None:
    """TFLite's GELU: ``x * 0.5 * (1 + erf(x / sqrt 2))``, or the tanh form when approximate."""
    from tf2onnx import utils

    x = node.input[0]
    dtype = utils.map_onnx_to_numpy_type(ctx.get_dtype(x))

    def const(v: float) -> str:
        return ctx.make_const(utils.make_name(node.name + "_c"), np.array(v, dtype=dtype)).output[0]

    def op(kind: str, *ins: str) -> str:
        return ctx.make_node(kind, list(ins), op_name_scope=node.name).output[0]

    if node.get_attr_value("approximate", False):
        inner = op("Mul", const(np.sqrt(2 / np.pi)),
                   op("Add", x, op("Mul", const(0.044715), op("Pow", x, const(3.0)))))
        t = op("Tanh", inner)
    else:
        t = op("Erf", op("Mul", x, const(1 / np.sqrt(2))))
    half = op("Mul", const(0.5), op("Add", const(1.0), t))
    node.type = "Mul"
    ctx.replace_inputs(node, [x, half])
    for attr in list(node.attr):
        if attr != "T":
            del node.attr[attr]
