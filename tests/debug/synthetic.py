"""Synthetic traces for the debug layer's pure logic: tensors given as arrays, written as the
``.npy`` files a worker writes, in the order given (topological)."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from portkit.traces import Trace, TracedTensor

# name -> (op_type, inputs, value[, origin])
Spec = tuple


def trace(folder: Path, tensors: dict[str, Spec], outputs: tuple[str, ...],
          fmt: str = "onnx") -> Trace:
    """A trace of ``tensors`` (graph inputs have op type ``input``)."""
    folder.mkdir(parents=True, exist_ok=True)
    found = []
    for i, (name, spec) in enumerate(tensors.items()):
        op, inputs, value = spec[:3]
        origin = spec[3] if len(spec) > 3 else ""
        value = np.asarray(value)
        file = folder / f"{i}.npy"
        np.save(file, value)
        found.append(TracedTensor(name=name, node="" if op == "input" else f"{name}_node",
                                  op_type=op, inputs=tuple(inputs), shape=tuple(value.shape),
                                  dtype=value.dtype.name, file=str(file), origin=origin,
                                  node_id=str(i)))
    return Trace(str(folder), fmt, "synthetic", tuple(found), outputs)


def conv(x: np.ndarray, w: np.ndarray) -> np.ndarray:
    """A 1x1 convolution of NCHW ``x`` with ``w`` (out, in)."""
    return np.einsum("oc,nchw->nohw", w, x).astype(np.float32)


def nhwc(x: np.ndarray) -> np.ndarray:
    return np.ascontiguousarray(x.transpose(0, 2, 3, 1))
