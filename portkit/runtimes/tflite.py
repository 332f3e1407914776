"""TFLite through ``ai_edge_litert`` (CPU, XNNPACK delegate by default)."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import numpy as np

from portkit.formats import Format
from portkit.runtimes.base import Runtime, Session, count
from portkit.runtimes.registry import register_runtime
from portkit.specs import TensorSpec


def _signature_names(interpreter: Any, kind: str) -> dict[int, str]:
    """Tensor index -> the clean name the model's first signature gives it."""
    signatures = interpreter.get_signature_list()
    if not signatures:
        return {}
    runner = interpreter.get_signature_runner(next(iter(signatures)))
    details = runner.get_input_details() if kind == "inputs" else runner.get_output_details()
    return {d["index"]: name for name, d in details.items()}


def _specs(details: list[dict[str, Any]], names: dict[int, str]) -> list[TensorSpec]:
    return [
        TensorSpec(names.get(d["index"], d["name"]), tuple(int(x) for x in d["shape"]),
                   np.dtype(d["dtype"]).name)
        for d in details
    ]


class TfliteSession(Session):
    def __init__(self, interpreter: Any) -> None:
        self._in = interpreter.get_input_details()
        self._out = interpreter.get_output_details()
        super().__init__(_specs(self._in, _signature_names(interpreter, "inputs")),
                         _specs(self._out, _signature_names(interpreter, "outputs")))
        self._interpreter = interpreter

    def _run(self, feeds: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        it = self._interpreter
        for spec, d in zip(self.inputs, self._in):
            it.set_tensor(d["index"], np.ascontiguousarray(feeds[spec.name], dtype=d["dtype"]))
        it.invoke()
        return {spec.name: it.get_tensor(d["index"]).copy() for spec, d in zip(self.outputs, self._out)}

    def op_counts(self) -> dict[str, int]:
        return count([op["op_name"] for op in self._interpreter._get_ops_details()])


@register_runtime
class TfliteRuntime(Runtime):
    """``ai_edge_litert.interpreter.Interpreter`` with one thread per core."""

    name = "tflite"
    formats = (Format.TFLITE,)

    def _load(self, path: Path, fmt: Format, device: str) -> Session:
        from ai_edge_litert.interpreter import Interpreter

        interpreter = Interpreter(model_path=str(path), num_threads=os.cpu_count() or 1)
        interpreter.allocate_tensors()
        return TfliteSession(interpreter)
