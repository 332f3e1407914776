"""ONNX's own reference evaluator (``onnx.reference.ReferenceEvaluator``): the reference of last
resort for ONNX sources ONNX Runtime won't load.

ONNX Runtime 1.32 has no kernels for opsets below 7 (``BatchNormalization``-6 in older zoos), so
without this such a model has no reference at all. The evaluator is plain numpy, slow but
written from the spec, and runs every opset; portkit uses it only for sources (never to check
an artifact), and only when the runtimes before it refuse the file. Reports name it as the
reference's runtime.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from portkit.formats import Format
from portkit.options import LoadOptions
from portkit.runtimes.base import Runtime, Session, count
from portkit.runtimes.registry import register_runtime
from portkit.specs import TensorSpec
from portkit.traces import TracedTensor


def _spec(value: Any) -> TensorSpec:
    from onnx.helper import tensor_dtype_to_np_dtype

    tensor = value.type.tensor_type
    shape = tuple(d.dim_value if d.HasField("dim_value") else None for d in tensor.shape.dim)
    return TensorSpec(value.name, shape, np.dtype(tensor_dtype_to_np_dtype(tensor.elem_type)).name)


class ReferenceSession(Session):
    def __init__(self, model: Any) -> None:
        from onnx.reference import ReferenceEvaluator

        # Below IR version 4 initializers are listed among the graph's inputs too.
        weights = {t.name for t in model.graph.initializer}
        super().__init__([_spec(v) for v in model.graph.input if v.name not in weights],
                         [_spec(v) for v in model.graph.output])
        self._ops = [n.op_type for n in model.graph.node]
        self._evaluator = ReferenceEvaluator(model)
        self._graph = model.graph

    def _run(self, feeds: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        names = [s.name for s in self.outputs]
        return dict(zip(names, self._evaluator.run(names, feeds), strict=True))

    def op_counts(self) -> dict[str, int]:
        return count(self._ops)

    def weight_shapes(self) -> list[tuple[int, ...]]:
        return [tuple(i.dims) for i in self._graph.initializer]

    def _trace(self, feeds: dict[str, np.ndarray], folder: Path) -> list[TracedTensor]:
        from portkit.runtimes.onnx_trace import record, start

        names = [out for node in self._graph.node for out in node.output if out]
        writer = start(self._graph, feeds, folder)
        record(writer, self._graph, dict(zip(names, self._evaluator.run(names, feeds))))
        return writer.tensors


@register_runtime
class OnnxReference(Runtime):
    """``onnx.reference.ReferenceEvaluator`` on the CPU, for sources only."""

    name = "onnx-reference"
    formats = (Format.ONNX,)
    fallback = True

    def _load(self, path: Path, fmt: Format, device: str, options: LoadOptions) -> Session:
        import onnx

        from portkit.safety import check_onnx

        check_onnx(path)
        return ReferenceSession(onnx.load(str(path), load_external_data=True))
