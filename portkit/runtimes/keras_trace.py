"""Every layer output of a Keras model, from a second model that returns them all.

Works for functional and sequential models whose layers are each called once (a layer shared
between calls has no single output and is left out). A SavedModel signature keeps no layers, so
it is not traced. Tensors are named after their layers (``NAME:i`` for a layer's i-th of several
outputs); ``node_id`` is the layer's name.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from portkit.runtimes.tracing import TensorWriter, traceable
from portkit.traces import TracedTensor


def _tensor_name(tensor: Any) -> str:
    """``layer`` for a layer's only output, ``layer:i`` for one of several."""
    layer, _node, index = tensor._keras_history
    outputs = layer.output if isinstance(layer.output, (list, tuple)) else [layer.output]
    return layer.name if len(outputs) == 1 else f"{layer.name}:{index}"


def trace_keras(model: Any, feeds: list[np.ndarray], input_names: list[str], folder: Path,
                device: str) -> tuple[list[TracedTensor], list[str]]:
    """Run ``model`` once returning every layer's output.

    Args:
        model: A loaded Keras model.
        feeds: One array per model input, in order.
        input_names: The session's names for them.
        folder: Where the ``.npy`` files go.
        device: A TensorFlow device string (``/CPU:0``).

    Returns:
        The traced tensors (inputs, then layers in order) and the traced names of the outputs.
    """
    import keras
    import tensorflow as tf

    writer = TensorWriter(folder)
    renamed = {_tensor_name(t): n for t, n in zip(model.inputs, input_names)}
    for name, value in zip(input_names, feeds):
        writer.add(name, value, node="", op_type="input")
    tensors: list[tuple[Any, Any]] = []
    for layer in model.layers:
        if isinstance(layer, keras.layers.InputLayer):
            continue
        try:
            out = layer.output
        except (AttributeError, ValueError):  # a shared layer: no single output
            continue
        tensors += [(layer, t) for t in (out if isinstance(out, (list, tuple)) else [out])]
    probe = keras.Model(model.inputs, [t for _, t in tensors])
    with tf.device(device):
        values = probe(feeds if len(feeds) > 1 else feeds[0], training=False)
    values = values if isinstance(values, (list, tuple)) else [values]
    for (layer, tensor), value in zip(tensors, values):
        array = np.asarray(value)
        if not traceable(array):
            continue
        node = layer._inbound_nodes[0] if layer._inbound_nodes else None
        inputs = [renamed.get(_tensor_name(t), _tensor_name(t))
                  for t in (node.input_tensors if node else [])]
        writer.add(_tensor_name(tensor), array, node=layer.name, op_type=type(layer).__name__,
                   inputs=tuple(inputs), node_id=layer.name)
    outputs = [n for n in (_tensor_name(t) for t in model.outputs) if n in writer]
    return writer.tensors, outputs
