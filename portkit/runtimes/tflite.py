"""TFLite through ``ai_edge_litert`` (CPU, XNNPACK delegate by default)."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import numpy as np

from portkit.formats import Format
from portkit.options import LoadOptions
from portkit.profiles import OpTime
from portkit.runtimes.base import Runtime, Session, count
from portkit.runtimes.registry import register_runtime
from portkit.specs import TensorSpec
from portkit.traces import TracedTensor


def _signature_names(interpreter: Any, kind: str) -> dict[int, str]:
    """Tensor index -> the clean name the model's first signature gives it."""
    signatures = interpreter.get_signature_list()
    if not signatures:
        return {}
    runner = interpreter.get_signature_runner(next(iter(signatures)))
    details = runner.get_input_details() if kind == "inputs" else runner.get_output_details()
    return {d["index"]: name for name, d in details.items()}


def _specs(details: list[dict[str, Any]], names: dict[int, str]) -> list[TensorSpec]:
    """Tensors as specs: a dimension the signature leaves free (-1) is None."""
    return [
        TensorSpec(names.get(d["index"], d["name"]),
                   tuple(int(x) if x >= 0 else None for x in d.get("shape_signature", d["shape"])),
                   np.dtype(d["dtype"]).name)
        for d in details
    ]


def _quantize(x: np.ndarray, detail: dict[str, Any]) -> np.ndarray:
    """A float feed for a quantized (int8/int16) input: ``round(x / scale) + zero_point``."""
    scale, zero = detail["quantization"]
    dtype = np.dtype(detail["dtype"])
    if scale and x.dtype.kind == "f" and dtype.kind in "iu":
        info = np.iinfo(dtype)
        return np.clip(np.round(x / scale) + zero, info.min, info.max).astype(dtype)
    return x.astype(dtype, copy=False)


def _dequantize(y: np.ndarray, detail: dict[str, Any]) -> np.ndarray:
    """A quantized output as float32: ``(y - zero_point) * scale``; others as they are."""
    scale, zero = detail["quantization"]
    if scale and y.dtype.kind in "iu":
        return ((y.astype(np.float32) - zero) * scale).astype(np.float32)
    return y.copy()


class TfliteSession(Session):
    """Quantized inputs take float feeds and quantized outputs come back as float (dequantized
    with the tensor's scale and zero point), so they compare with a float reference."""

    def __init__(self, interpreter: Any, path: Path | None = None, threads: int = 1) -> None:
        self._in = interpreter.get_input_details()
        self._out = interpreter.get_output_details()
        super().__init__(_specs(self._in, _signature_names(interpreter, "inputs")),
                         _specs(self._out, _signature_names(interpreter, "outputs")))
        self._interpreter = interpreter
        self._shapes = {d["index"]: tuple(d["shape"]) for d in self._in}  # as allocated now
        self._path = path
        self._threads = threads
        self._traced_outputs: list[str] = []

    def _trace(self, feeds: dict[str, np.ndarray], folder: Path) -> list[TracedTensor]:
        from portkit.runtimes.tflite_trace import trace_tflite

        if self._path is None:
            return super()._trace(feeds, folder)
        tensors, self._traced_outputs = trace_tflite(
            self._path, [_quantize(feeds[s.name], d) for s, d in zip(self.inputs, self._in)],
            folder, self._threads)
        return tensors

    def traced_outputs(self) -> list[str]:
        return self._traced_outputs or super().traced_outputs()

    def _profile(self, feeds: dict[str, np.ndarray], runs: int) -> tuple[OpTime, ...]:
        from portkit.runtimes.litert_profile import profile_tflite

        if self._path is None:
            return super()._profile(feeds, runs)
        quantized = {s.name: _quantize(feeds[s.name], d) for s, d in zip(self.inputs, self._in)}
        return profile_tflite(str(self._path), quantized, runs, self._threads)

    def _run(self, feeds: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        it = self._interpreter
        self._resize(feeds)
        for spec, d in zip(self.inputs, self._in):
            it.set_tensor(d["index"], np.ascontiguousarray(_quantize(feeds[spec.name], d)))
        it.invoke()
        return {spec.name: _dequantize(it.get_tensor(d["index"]), d)
                for spec, d in zip(self.outputs, self._out)}

    def _resize(self, feeds: dict[str, np.ndarray]) -> None:
        """Resize the inputs to the feeds' shapes (only dimensions the signature leaves free,
        -1: a fixed one is refused) and allocate the tensors again."""
        it = self._interpreter
        changed = [(d, tuple(feeds[spec.name].shape)) for spec, d in zip(self.inputs, self._in)
                   if self._shapes[d["index"]] != tuple(feeds[spec.name].shape)]
        if not changed:
            return
        for d, shape in changed:
            fixed = [i for i, x in enumerate(d.get("shape_signature", d["shape"]))
                     if x >= 0 and i < len(shape) and x != shape[i]]
            if fixed or len(shape) != len(d["shape"]):
                signature = [int(x) for x in d.get("shape_signature", d["shape"])]
                raise ValueError(
                    f"input {d['name']!r} is fixed at {'x'.join(map(str, d['shape']))} in this "
                    f"model (shape_signature {signature}); it "
                    f"can't take {'x'.join(map(str, shape))}: the converter wrote a static "
                    "dimension where the source's is dynamic (--static judges it at the "
                    "example size only)")
            it.resize_tensor_input(d["index"], list(shape), strict=True)
            self._shapes[d["index"]] = shape
        it.allocate_tensors()

    def op_counts(self) -> dict[str, int]:
        return count([op["op_name"] for op in self._interpreter._get_ops_details()])


ONE_THREAD = "cpu-1thread"


@register_runtime
class TfliteRuntime(Runtime):
    """``ai_edge_litert.interpreter.Interpreter`` (XNNPACK) with one thread per core, and on one
    thread as a device of its own (``cpu-1thread``): multi-threaded kernels may sum in another
    order, and phones often run a model on one thread."""

    name = "tflite"
    formats = (Format.TFLITE,)
    all_devices = ("cpu", ONE_THREAD)

    def devices(self) -> list[str]:
        return ["cpu", ONE_THREAD] if (os.cpu_count() or 1) > 1 else ["cpu"]

    def unavailable(self, device: str) -> str:
        return "one core here: the cpu run already used one thread"

    def verify(self, path: Path) -> None:
        """Let the interpreter read ``path`` (flatbuffer verifier, schema version, kernels for
        every op) without delegates or tensors, which a large model makes slow.

        Raises:
            InvalidModelError: The interpreter refuses the file.
        """
        from ai_edge_litert.interpreter import Interpreter, OpResolverType

        with self.load_errors(path, Format.TFLITE):
            Interpreter(model_path=str(path), experimental_op_resolver_type=(
                OpResolverType.BUILTIN_WITHOUT_DEFAULT_DELEGATES))

    def _load(self, path: Path, fmt: Format, device: str, options: LoadOptions) -> Session:
        from ai_edge_litert.interpreter import Interpreter

        threads = 1 if device == ONE_THREAD else options.threads or os.cpu_count() or 1
        interpreter = Interpreter(model_path=str(path), num_threads=threads)
        interpreter.allocate_tensors()
        return TfliteSession(interpreter, path, threads)
