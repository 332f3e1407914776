"""PyTorch: TorchScript archives and ExportedPrograms, eager on CPU (CUDA when present)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from portkit.formats import Format
from portkit.options import LoadOptions
from portkit.runtimes.base import Runtime, Session, count
from portkit.runtimes.registry import register_runtime
from portkit.specs import TensorSpec


def torch_dtype_name(dtype: Any) -> str:
    """``torch.float32`` -> ``float32``."""
    return str(dtype).replace("torch.", "")


def flatten_outputs(value: Any, prefix: str = "output") -> dict[str, np.ndarray]:
    """Name a module's (possibly nested) outputs ``output_0, output_1, ...``, dict keys kept."""
    import torch

    flat: list[tuple[str | None, Any]] = []

    def walk(v: Any, key: str | None = None) -> None:
        if isinstance(v, torch.Tensor):
            flat.append((key, v))
        elif isinstance(v, dict):
            for k, item in v.items():
                walk(item, str(k))
        elif isinstance(v, (list, tuple)):
            for item in v:
                walk(item)

    walk(value)
    return {
        key or f"{prefix}_{i}": t.detach().cpu().numpy() for i, (key, t) in enumerate(flat)
    }


# TorchScript scalar argument types portkit can feed (from a --const), as numpy dtypes.
SCALAR_DTYPES = {"int": "int64", "float": "float64", "bool": "bool"}


class TorchSession(Session):
    def __init__(self, module: Any, inputs: list[TensorSpec], outputs: list[TensorSpec],
                 device: str, ops: list[str], scalar_args: dict[str, str] | None = None) -> None:
        super().__init__(inputs, outputs, scalar_args)
        self._module = module
        self._device = device
        self._ops = ops

    def _run(self, feeds: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        import torch

        args = [_scalar(feeds[s.name], self.scalar_args[s.name]) if s.name in self.scalar_args
                else torch.from_numpy(np.ascontiguousarray(feeds[s.name])).to(self._device)
                for s in self.inputs]
        with torch.no_grad():
            return flatten_outputs(self._module(*args))

    def op_counts(self) -> dict[str, int]:
        return count(self._ops)


def _scalar(array: np.ndarray, kind: str) -> Any:
    """A 0-d array as the Python scalar a TorchScript argument takes."""
    value = np.asarray(array).item()
    return {"int": int, "float": float, "bool": bool}.get(kind, lambda v: v)(value)


def script_inputs(module: Any) -> tuple[list[TensorSpec], dict[str, str]]:
    """A ScriptModule's ``forward`` arguments from its schema: tensors (shape unknown) and
    Python scalars (``sr: int`` as a 0-d int64 input), with the scalars' types by name."""
    inputs, scalars = [], {}
    for arg in module.forward.schema.arguments[1:]:
        kind = str(arg.type)
        if kind in SCALAR_DTYPES:
            inputs.append(TensorSpec(arg.name, (), SCALAR_DTYPES[kind]))
            scalars[arg.name] = kind
        else:
            inputs.append(TensorSpec(arg.name, None, ""))  # TorchScript keeps no shapes
    return inputs, scalars


@register_runtime
class TorchRuntime(Runtime):
    """PyTorch eager (``torch.jit.load`` / ``torch.export.load``)."""

    name = "torch"
    formats = (Format.TORCHSCRIPT, Format.EXPORTED_PROGRAM)
    all_devices = ("cpu", "cuda")

    def devices(self) -> list[str]:
        import torch

        return ["cpu", "cuda"] if torch.cuda.is_available() else ["cpu"]

    def _load(self, path: Path, fmt: Format, device: str, options: LoadOptions) -> Session:
        import torch

        torch.manual_seed(0)
        if options.threads:
            torch.set_num_threads(options.threads)
        torch.backends.cuda.matmul.allow_tf32 = False
        torch.backends.cudnn.allow_tf32 = False
        if fmt is Format.TORCHSCRIPT:
            module = torch.jit.load(str(path), map_location=device).eval()
            inputs, scalars = script_inputs(module)
            ops = [n.kind() for n in module.inlined_graph.nodes()
                   if not n.kind().startswith("prim::")]
            return TorchSession(module, inputs, [], device, ops, scalars)
        ep = torch.export.load(str(path))
        user_inputs = set(ep.graph_signature.user_inputs)
        inputs = []
        ops = []
        for node in ep.graph.nodes:
            if node.op == "placeholder" and node.name in user_inputs:
                val = node.meta.get("val")
                shape = tuple(int(d) if isinstance(d, int) else None for d in val.shape)
                inputs.append(TensorSpec(node.name, shape, torch_dtype_name(val.dtype)))
            elif node.op == "call_function":
                ops.append(str(node.target))
        outputs = [TensorSpec(n, None, "") for n in ep.graph_signature.user_outputs]
        return TorchSession(ep.module().to(device), inputs, outputs, device, ops)
