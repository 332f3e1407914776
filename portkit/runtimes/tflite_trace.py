"""Every tensor a TFLite model computes, from the interpreter with
``experimental_preserve_all_tensors`` (intermediate buffers are not reused).

The trace runs on the builtin kernels without the default (XNNPACK) delegate: a delegate fuses
the ops it takes into one node whose intermediates can't be read. Quantized tensors are stored
dequantized (``(q - zero_point) * scale``, per channel where the tensor has several scales).

Names: a TFLite op has no name, so ``node`` is ``OP_NAME#INDEX`` and ``node_id`` the op's index
in the main subgraph as a string, as Model Explorer's LiteRT adapter numbers its nodes (its
``GraphInputs`` node, which holds the graph inputs, comes next: the number of ops). Neither
converter keeps upstream names in tensor names portkit could use as ``origin``: onnx2tf names
them after the Keras layers it builds (``model/tf.nn.convolution/convolution``), litert-torch
after module scopes (``.../torch.nn.modules.conv.Conv2d_0``), so ``origin`` stays empty.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from portkit.runtimes.tracing import TensorWriter, traceable
from portkit.traces import TracedTensor


def dequantize(value: np.ndarray, detail: dict[str, Any]) -> np.ndarray:
    """A tensor as float32 when it is quantized (per tensor or per channel), else unchanged."""
    params = detail.get("quantization_parameters") or {}
    scales = np.asarray(params.get("scales", ()), dtype=np.float32)
    if not scales.size or value.dtype.kind not in "iu":
        return value
    zeros = np.asarray(params.get("zero_points", ()), dtype=np.float32)
    zeros = zeros if zeros.size == scales.size else np.zeros_like(scales)
    if scales.size > 1 and value.ndim:
        shape = [1] * value.ndim
        shape[int(params.get("quantized_dimension", 0))] = scales.size
        scales, zeros = scales.reshape(shape), zeros.reshape(shape)
    return ((value.astype(np.float32) - zeros) * scales).astype(np.float32)


def trace_tflite(path: Path, feeds: list[np.ndarray], folder: Path, threads: int
                 ) -> tuple[list[TracedTensor], list[str]]:
    """Run ``path`` once keeping every tensor.

    Args:
        path: The ``.tflite`` file.
        feeds: One array per input, in the interpreter's input order, already quantized where
            the input is.
        folder: Where the ``.npy`` files go.
        threads: Interpreter threads.

    Returns:
        The traced tensors (inputs, then each op's outputs in execution order) and the traced
        names of the outputs.
    """
    from ai_edge_litert.interpreter import Interpreter, OpResolverType

    it = Interpreter(model_path=str(path), num_threads=threads,
                     experimental_preserve_all_tensors=True,
                     experimental_op_resolver_type=OpResolverType.BUILTIN_WITHOUT_DEFAULT_DELEGATES)
    it.allocate_tensors()
    details = {int(d["index"]): d for d in it.get_tensor_details()}
    names: dict[int, str] = {}

    def name(index: int) -> str:
        if index not in names:
            base = str(details[index]["name"]) or f"tensor_{index}"
            names[index] = base if base not in names.values() else f"{base}#{index}"
        return names[index]

    for detail, value in zip(it.get_input_details(), feeds):
        it.set_tensor(detail["index"], np.ascontiguousarray(value))
    it.invoke()
    writer = TensorWriter(folder)
    ops = it._get_ops_details()
    for detail in it.get_input_details():
        index = int(detail["index"])
        writer.add(name(index), dequantize(it.get_tensor(index), details[index]), node="",
                   op_type="input", node_id=str(len(ops)))  # Model Explorer's GraphInputs
    for op in ops:
        node = f"{op['op_name']}#{op['index']}"
        inputs = tuple(name(int(i)) for i in op["inputs"] if int(i) >= 0)
        for out in op["outputs"]:
            index = int(out)
            try:
                value = dequantize(it.get_tensor(index), details[index])
            except ValueError:  # a tensor without data (an empty optional output)
                continue
            if traceable(value):
                writer.add(name(index), value, node=node, op_type=str(op["op_name"]),
                           inputs=inputs, node_id=str(op["index"]))
    outputs = [name(int(d["index"])) for d in it.get_output_details()]
    return writer.tensors, outputs
