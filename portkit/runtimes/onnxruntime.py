"""ONNX Runtime: the CPU provider, and the CUDA provider when onnxruntime-gpu sees a GPU."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from portkit.formats import Format
from portkit.options import LoadOptions
from portkit.profiles import OpTime
from portkit.runtimes.base import Runtime, Session, count
from portkit.runtimes.registry import register_runtime
from portkit.specs import Dim, TensorSpec
from portkit.traces import TracedTensor

_PROVIDERS = {"cpu": "CPUExecutionProvider", "cuda": "CUDAExecutionProvider"}
# 'tensor(float)' -> 'float32'
_ORT_TYPES = {"float": "float32", "double": "float64", "float16": "float16", "int64": "int64",
              "int32": "int32", "int8": "int8", "uint8": "uint8", "bool": "bool"}


def _spec(arg: Any) -> TensorSpec:
    """A graph input or output; a dimension named by ``dim_param`` is a ``Dim`` of that name
    (inputs that share it change together)."""
    shape = tuple(d if isinstance(d, int) else None for d in arg.shape)
    kind = arg.type.removeprefix("tensor(").removesuffix(")")
    dims = tuple(Dim(d) if isinstance(d, str) and d else None for d in arg.shape)
    return TensorSpec(arg.name, shape, _ORT_TYPES.get(kind, kind), dims if any(dims) else ())


class OrtSession(Session):
    def __init__(self, session: Any, path: Path, settings: Any = None,
                 providers: list[str] | None = None) -> None:
        super().__init__([_spec(a) for a in session.get_inputs()],
                         [_spec(a) for a in session.get_outputs()])
        self._session = session
        self._path = path
        self._settings = settings
        self._providers = providers or ["CPUExecutionProvider"]

    def _run(self, feeds: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        names = [s.name for s in self.outputs]
        return dict(zip(names, self._session.run(names, feeds)))

    def _trace(self, feeds: dict[str, np.ndarray], folder: Path) -> list[TracedTensor]:
        from portkit.runtimes.onnx_trace import trace_onnx

        return trace_onnx(self._path, feeds, folder, self._settings, self._providers)

    def _profile(self, feeds: dict[str, np.ndarray], runs: int) -> tuple[OpTime, ...]:
        from portkit.runtimes.onnx_profile import profile_onnx

        return profile_onnx(self._path, feeds, runs, self._settings, self._providers)

    def op_counts(self) -> dict[str, int]:
        import onnx

        graph = onnx.load(str(self._path), load_external_data=False).graph
        return count([n.op_type for n in graph.node])

    def weight_shapes(self) -> list[tuple[int, ...]]:
        import onnx

        graph = onnx.load(str(self._path), load_external_data=False).graph
        return [tuple(i.dims) for i in graph.initializer]


@register_runtime
class OnnxRuntime(Runtime):
    """``onnxruntime.InferenceSession`` with one execution provider per device."""

    name = "onnxruntime"
    formats = (Format.ONNX,)
    all_devices = ("cpu", "cuda")

    def devices(self) -> list[str]:
        import onnxruntime

        available = onnxruntime.get_available_providers()
        return [d for d, p in _PROVIDERS.items() if p in available]

    def _load(self, path: Path, fmt: Format, device: str, options: LoadOptions) -> Session:
        import onnxruntime

        from portkit.safety import check_onnx

        check_onnx(path)

        settings = onnxruntime.SessionOptions()
        settings.log_severity_level = 3
        if options.threads:
            settings.intra_op_num_threads = options.threads
        session = onnxruntime.InferenceSession(
            str(path), sess_options=settings, providers=[_PROVIDERS[device]]
        )
        return OrtSession(session, path, settings, [_PROVIDERS[device]])
