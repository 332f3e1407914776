"""What a runtime exposes of one run for ``portkit debug``: every intermediate tensor, its
producer and inputs, its value in an ``.npy`` file (``Session.trace``); plain values only."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class TracedTensor:
    """One tensor a model computed, exposed by a runtime's ``Session.trace`` (``portkit debug``).

    Attributes:
        name: The tensor's name in its framework (ONNX value name, TFLite tensor name, FX node
            name, Keras layer output name).
        node: The node (op, layer) that produced it; ``""`` for a graph input.
        op_type: That node's op (``Conv``, ``CONV_2D``, ``aten.convolution.default``);
            ``input`` for a graph input.
        inputs: The traced tensors it was computed from, by name (weights and constants left
            out).
        shape: Its shape (sample 0).
        dtype: Its dtype (a quantized tensor is stored dequantized, as float32).
        file: The ``.npy`` file holding its value (sample 0), written by the worker.
        origin: The name it had upstream, where the converter kept it (the FX node torch.onnx
            records in the ONNX node's metadata); ``""`` when none is known (onnx2tf and
            litert-torch keep none: their TFLite tensors are named after TF ops and module
            scopes).
        node_id: The node's id in Model Explorer's graph of the file, for overlays.
    """

    name: str
    node: str
    op_type: str
    inputs: tuple[str, ...]
    shape: tuple[int, ...]
    dtype: str
    file: str
    origin: str = ""
    node_id: str = ""


@dataclass(frozen=True)
class Trace:
    """Every intermediate tensor of one run of a model, in topological order (graph inputs
    first), and which of them are the model's outputs."""

    path: str
    format: str
    runtime: str
    tensors: tuple[TracedTensor, ...]
    outputs: tuple[str, ...]
