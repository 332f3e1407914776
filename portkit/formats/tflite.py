"""The TFLite flatbuffer, read without an interpreter: what a mobile engineer checks in a
``.tflite`` before shipping it (ops, Flex and custom ops, tensors, quantization, precision, its
signatures when it holds several: ``--seq-buckets`` writes one per sequence length).

Nothing here builds an interpreter: a model with Flex (Select TF ops) ops can't be loaded by the
pip interpreters, yet its report must still say which ops need the Flex runtime.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from portkit.errors import InvalidModelError

_FLEX_PREFIX = "Flex"


@dataclass(frozen=True)
class TensorInfo:
    """One input or output of a TFLite model.

    Attributes:
        name: The signature's name for it (else the tensor's).
        shape: Its shape (-1 where the signature leaves a dimension free).
        dtype: numpy dtype name (``int8`` for a quantized tensor).
        scale: Quantization scales (empty when not quantized).
        zero_point: Quantization zero points.
        layout: ``NHWC`` or ``NCHW`` for 4-D image-like tensors (guessed from the channel
            count), else None.
        resizable: Whether the shape signature leaves some dimension free (-1 in ``shape``):
            an app may resize it (``Interpreter.resize_tensor_input``) to any size there.
    """

    name: str
    shape: tuple[int, ...]
    dtype: str
    scale: tuple[float, ...] = ()
    zero_point: tuple[int, ...] = ()
    layout: str | None = None
    resizable: bool = False


@dataclass(frozen=True)
class Signature:
    """One signature of a ``.tflite`` that holds several.

    Attributes:
        name: Its key (``seq_16``).
        inputs: Its inputs, in its order, as its subgraph declares them.
        outputs: Its outputs.
    """

    name: str
    inputs: tuple[TensorInfo, ...]
    outputs: tuple[TensorInfo, ...]


@dataclass(frozen=True)
class MobileReport:
    """The ``.tflite``'s size, ops, runtime needs, tensors and precision.

    Attributes:
        size_bytes: File size.
        op_counts: Op histogram over every subgraph, most frequent first.
        flex_ops: TensorFlow ops that need the Flex (Select TF ops) runtime.
        custom_ops: Other custom ops (need a registered kernel).
        builtin_only: Whether the plain builtin interpreter runs it (no Flex or custom ops).
        inputs: The first signature's inputs (else the main subgraph's).
        outputs: Its outputs.
        precision: ``float32``, ``float16`` (fp16 weights), ``dynamic`` (int8 weights, float
            activations), ``int4`` (int4 weights, float activations) or ``int8``/``int16x8``
            (quantized activations).
        signatures: Every signature, in the file's order, when it holds several (a bucketed
            file's ``seq_16``, ``seq_64``...: ``bucket_axes``); else empty (``inputs`` and
            ``outputs`` are the one's).
    """

    size_bytes: int
    op_counts: dict[str, int]
    flex_ops: tuple[str, ...]
    custom_ops: tuple[str, ...]
    builtin_only: bool
    inputs: tuple[TensorInfo, ...]
    outputs: tuple[TensorInfo, ...]
    precision: str
    signatures: tuple[Signature, ...] = ()


def _schema() -> Any:
    from ai_edge_litert import schema_py_generated

    return schema_py_generated


def _model(path: Path) -> tuple[Any, bytes]:
    data = path.read_bytes()
    try:
        return _schema().Model.GetRootAs(data, 0), data
    except Exception as e:  # noqa: BLE001 - a malformed flatbuffer raises anything
        raise InvalidModelError(f"{path}: not a readable TFLite flatbuffer ({e})") from None


def _op_names(model: Any) -> list[str]:
    """Each operator code's name: the builtin's name, ``Flex<Op>``, or the custom code."""
    schema = _schema()
    builtin = {v: k for k, v in vars(schema.BuiltinOperator).items() if not k.startswith("_")}
    names = []
    for i in range(model.OperatorCodesLength()):
        code = model.OperatorCodes(i)
        number = max(code.BuiltinCode(), code.DeprecatedBuiltinCode())
        custom = code.CustomCode()
        if number == schema.BuiltinOperator.CUSTOM and custom is not None:
            names.append(custom.decode() if isinstance(custom, bytes) else str(custom))
        else:
            names.append(builtin.get(number, f"BUILTIN_{number}"))
    return names


def op_counts(path: Path) -> dict[str, int]:
    """Op histogram of a ``.tflite`` over every subgraph, most frequent first."""
    model, _ = _model(path)
    names = _op_names(model)
    ops = Counter()
    for s in range(model.SubgraphsLength()):
        graph = model.Subgraphs(s)
        for j in range(graph.OperatorsLength()):
            ops[names[graph.Operators(j).OpcodeIndex()]] += 1
    return dict(ops.most_common())


def _check_tensor_indices(path: Path, model: Any) -> None:
    """Every tensor index a subgraph or an op names is one of its subgraph's tensors (-1: an
    optional input left out), as the interpreter checks when it loads the file.

    Raises:
        InvalidModelError: One is not, naming the subgraph, the op and the index.
    """
    for s in range(model.SubgraphsLength()):
        graph = model.Subgraphs(s)
        count = graph.TensorsLength()
        lists = [("its inputs", graph.InputsAsNumpy()), ("its outputs", graph.OutputsAsNumpy())]
        for j in range(graph.OperatorsLength()):
            op = graph.Operators(j)
            lists += [(f"op {j}'s inputs", op.InputsAsNumpy()),
                      (f"op {j}'s outputs", op.OutputsAsNumpy())]
        for where, indices in lists:
            bad = [int(i) for i in (indices if not isinstance(indices, int) else ())
                   if not -1 <= int(i) < count]
            if bad:
                raise InvalidModelError(
                    f"{path}: subgraph {s}: {where} name tensor {bad[0]}, but the subgraph has "
                    f"{count} tensors; check that the file is complete and was exported by a "
                    "supported version")


def flex_ops(path: Path) -> list[str]:
    """The TensorFlow ops of a ``.tflite`` that need the Flex runtime (``FlexFoo`` -> ``Foo``)."""
    return sorted(n.removeprefix(_FLEX_PREFIX) for n in op_counts(path)
                  if n.startswith(_FLEX_PREFIX))


def mobile_report(path: Path) -> MobileReport:
    """Read a ``.tflite``'s mobile report from its flatbuffer (no interpreter).

    Raises:
        InvalidModelError: The file is not a readable TFLite flatbuffer.
    """
    model, data = _model(path)
    try:
        ops = op_counts(path)
        _check_tensor_indices(path, model)
        graph = model.Subgraphs(0)
        inputs, outputs = _io(model, graph)
        precision = _precision(model, graph, inputs, ops)
        found = _signatures(model)
    except InvalidModelError:
        raise
    except Exception as e:  # noqa: BLE001 - offsets in a corrupt file point anywhere
        raise InvalidModelError(f"{path}: a TFLite flatbuffer with broken tables ({e}); check "
                                "that the file is complete") from None
    flex = tuple(sorted(n.removeprefix(_FLEX_PREFIX) for n in ops if n.startswith(_FLEX_PREFIX)))
    custom = tuple(sorted(n for n in ops
                          if n not in _builtin_names() and not n.startswith(_FLEX_PREFIX)))
    return MobileReport(len(data), ops, flex, custom, not flex and not custom, inputs, outputs,
                        precision, found if len(found) > 1 else ())


def signatures(path: Path) -> tuple[Signature, ...]:
    """Every signature of a ``.tflite`` with its inputs and outputs, in the file's order (empty
    for a file without signatures).

    Raises:
        InvalidModelError: The file is not a readable TFLite flatbuffer.
    """
    model, _ = _model(path)
    try:
        return _signatures(model)
    except Exception as e:  # noqa: BLE001 - offsets in a corrupt file point anywhere
        raise InvalidModelError(f"{path}: a TFLite flatbuffer with broken signature tables "
                                f"({e}); check that the file is complete") from None


def bucket_axes(found: tuple[Signature, ...]) -> tuple[tuple[str, int, tuple[int, ...]], ...]:
    """The axes along which the signatures of a bucketed file (``--seq-buckets``: one per
    length) differ: each as its input's name, the axis and the size in each signature,
    smallest first. A file is bucketed when it holds several signatures that take the same
    inputs (names, dtypes, ranks) and give the same outputs, each at fixed sizes of its own;
    empty for any other file (one signature, a language model's prefill and decode).

    Args:
        found: The file's signatures (``signatures``).
    """
    def kind(s: Signature) -> tuple[tuple[str, str, int], ...]:
        return tuple((t.name, t.dtype, len(t.shape)) for t in s.inputs + s.outputs)

    shapes = sorted({tuple(t.shape for t in s.inputs) for s in found})
    if len(found) < 2 or len({kind(s) for s in found}) != 1 or len(shapes) != len(found) \
            or any(d < 0 for shape in shapes for dims in shape for d in dims):
        return ()
    return tuple((t.name, axis, tuple(shape[i][axis] for shape in shapes))
                 for i, t in enumerate(found[0].inputs) for axis in range(len(t.shape))
                 if len({shape[i][axis] for shape in shapes}) > 1)


def _builtin_names() -> set[str]:
    return {k for k in vars(_schema().BuiltinOperator) if not k.startswith("_")}


def _io(model: Any, graph: Any) -> tuple[tuple[TensorInfo, ...], tuple[TensorInfo, ...]]:
    """The main subgraph's inputs and outputs, named as the first signature names them."""
    def name_map(kind: str) -> dict[int, str]:
        if not model.SignatureDefsLength():
            return {}
        sig = model.SignatureDefs(0)
        count = sig.InputsLength() if kind == "in" else sig.OutputsLength()
        get = sig.Inputs if kind == "in" else sig.Outputs
        return {get(i).TensorIndex(): get(i).Name().decode() for i in range(count)}

    ins, outs = name_map("in"), name_map("out")
    return (tuple(_info(graph, int(i), ins.get(int(i))) for i in graph.InputsAsNumpy()),
            tuple(_info(graph, int(i), outs.get(int(i))) for i in graph.OutputsAsNumpy()))


def _info(graph: Any, index: int, name: str | None) -> TensorInfo:
    """Tensor ``index`` of ``graph``, under ``name`` (else its own)."""
    t = graph.Tensors(index)
    shape = tuple(int(d) for d in (t.ShapeSignatureAsNumpy() if t.ShapeSignatureLength()
                                   else t.ShapeAsNumpy() if t.ShapeLength() else ()))
    q = t.Quantization()
    scale = tuple(float(x) for x in q.ScaleAsNumpy()) if q and q.ScaleLength() else ()
    zero = tuple(int(x) for x in q.ZeroPointAsNumpy()) if q and q.ZeroPointLength() else ()
    return TensorInfo(name or t.Name().decode(), shape, _dtype(t.Type()), scale, zero,
                      _layout(shape), any(d < 0 for d in shape))


def _signatures(model: Any) -> tuple[Signature, ...]:
    """Each signature of ``model`` with its tensors, read from the subgraph it runs."""
    found = []
    for k in range(model.SignatureDefsLength()):
        sig = model.SignatureDefs(k)
        graph = model.Subgraphs(sig.SubgraphIndex())
        key = sig.SignatureKey()
        found.append(Signature(
            key.decode() if isinstance(key, bytes) else str(key or f"signature_{k}"),
            tuple(_info(graph, sig.Inputs(i).TensorIndex(), sig.Inputs(i).Name().decode())
                  for i in range(sig.InputsLength())),
            tuple(_info(graph, sig.Outputs(i).TensorIndex(), sig.Outputs(i).Name().decode())
                  for i in range(sig.OutputsLength()))))
    return tuple(found)


def _dtype(code: int) -> str:
    names = {v: k for k, v in vars(_schema().TensorType).items() if not k.startswith("_")}
    name = names.get(code, str(code)).lower()
    return {"float32": "float32", "float16": "float16", "bool": "bool"}.get(name, name)


def _layout(shape: tuple[int, ...]) -> str | None:
    if len(shape) != 4:
        return None
    channels = (1, 3, 4)
    if shape[3] in channels and shape[1] not in channels:
        return "NHWC"
    if shape[1] in channels and shape[3] not in channels:
        return "NCHW"
    return None


def _precision(model: Any, graph: Any, inputs: tuple[TensorInfo, ...],
               ops: dict[str, int]) -> str:
    types = Counter(_dtype(graph.Tensors(i).Type()) for i in range(graph.TensorsLength()))
    if types.get("int16"):
        return "int16x8"
    if types.get("int4"):
        return "int4"  # int4 weights (a language model's), activations float
    if "DEQUANTIZE" in ops and types.get("float16"):
        return "float16"
    if types.get("int8") or types.get("uint8"):
        float_math = types.get("float32", 0) > len(inputs) + 2 * ops.get("QUANTIZE", 0) + 2
        return "dynamic" if float_math and "QUANTIZE" not in ops else "int8"
    return "float32"
