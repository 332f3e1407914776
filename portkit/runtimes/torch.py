"""PyTorch: TorchScript archives and ExportedPrograms, eager on CPU (CUDA when present); a
Hugging Face causal-LM directory as a ``Decoder`` (transformers, eager, with a ``DynamicCache``).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from portkit.errors import UsageError
from portkit.formats import Format
from portkit.formats.hf import check_trust, read_hf
from portkit.options import LoadOptions
from portkit.options.generation import Export
from portkit.runtimes.base import Runtime, Session, count
from portkit.runtimes.decoding import Decoder
from portkit.runtimes.registry import register_runtime
from portkit.specs import Dim, TensorSpec
from portkit.traces import TracedTensor


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


# Each dimension's (lowest, highest) size an ExportedProgram takes; None where not known.
DimRanges = tuple[tuple[int, float] | None, ...]


class TorchSession(Session):
    def __init__(self, module: Any, inputs: list[TensorSpec], outputs: list[TensorSpec],
                 device: str, ops: list[str], scalar_args: dict[str, str] | None = None,
                 ranges: dict[str, DimRanges] | None = None, name: str = "",
                 path: Path | None = None, fmt: Format | None = None) -> None:
        super().__init__(inputs, outputs, scalar_args)
        self._module = module
        self._device = device
        self._ops = ops
        self._ranges = ranges or {}
        self._name = name
        self._path = path
        self._fmt = fmt
        self._traced_outputs: list[str] = []

    def _run(self, feeds: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        import torch

        for input_name, dims in self._ranges.items():
            refuse_shape(self._name, input_name, tuple(feeds[input_name].shape), dims)
        args = [_scalar(feeds[s.name], self.scalar_args[s.name]) if s.name in self.scalar_args
                else torch.from_numpy(np.ascontiguousarray(feeds[s.name])).to(self._device)
                for s in self.inputs]
        with torch.no_grad():
            return flatten_outputs(self._module(*args))

    def op_counts(self) -> dict[str, int]:
        return count(self._ops)

    def weight_shapes(self) -> list[tuple[int, ...]]:
        return [tuple(t.shape) for t in self._module.state_dict().values()]

    def _trace(self, feeds: dict[str, np.ndarray], folder: Path) -> list[TracedTensor]:
        import torch

        from portkit.runtimes.torch_trace import trace_program

        if self._path is None or self._fmt is None:
            return super()._trace(feeds, folder)
        for input_name, dims in self._ranges.items():
            refuse_shape(self._name, input_name, tuple(feeds[input_name].shape), dims)
        args = tuple(_scalar(feeds[s.name], self.scalar_args[s.name])
                     if s.name in self.scalar_args
                     else torch.from_numpy(np.ascontiguousarray(feeds[s.name]))
                     for s in self.inputs)
        tensors, self._traced_outputs = trace_program(self._path, self._fmt, args, folder,
                                                           [s.name for s in self.inputs])
        return tensors

    def traced_outputs(self) -> list[str]:
        return self._traced_outputs or super().traced_outputs()


def refuse_shape(model: str, name: str, shape: tuple[int, ...], dims: DimRanges) -> None:
    """Refuse a shape an ExportedProgram was not exported for, before its guards fail deep in
    the run.

    Raises:
        UsageError: The rank differs or a dimension is out of its range, naming the shape the
            program takes.
    """
    fits = len(shape) == len(dims) and all(
        r is None or r[0] <= d <= r[1] for d, r in zip(shape, dims))
    if fits:
        return
    takes = "x".join("?" if r is None else str(r[0]) if r[0] == r[1]
                     else f"{r[0]}..{r[1] if r[1] != float('inf') else 'inf'}" for r in dims)
    example = "x".join("1" if r is None else str(max(r[0], 1)) for r in dims) or "scalar"
    raise UsageError(
        f"{model}: input {name!r} is {'x'.join(map(str, shape)) or 'scalar'} but the "
        f"ExportedProgram takes {takes or 'a scalar'} (the shapes it was exported for); pass "
        f"--input {name}:{example}, or export it again with a torch.export.Dim for the "
        "dimension that changes"
    )


def exported_ranges(ep: Any, val: Any) -> DimRanges:
    """The sizes each dimension of a placeholder's value takes: a fixed size for an int, the
    ``range_constraints`` of a plain symbol, None for an expression."""
    ranges: dict[str, tuple[int, float]] = {}
    for sym, vr in ep.range_constraints.items():
        bounds = [_bound(vr.lower), _bound(vr.upper)]
        if isinstance(bounds[0], int):
            ranges[str(sym)] = (bounds[0], bounds[1])
    found: list[tuple[int, float] | None] = []
    for d in val.shape:
        if isinstance(d, int):
            found.append((d, d))
        else:
            found.append(ranges.get(str(d)))
    return tuple(found)


def exported_inputs(ep: Any) -> tuple[list[TensorSpec], dict[str, DimRanges]]:
    """An ExportedProgram's inputs: sizes from the example inputs it was exported with (a
    fixed dimension's own), a symbolic dimension as a ``Dim`` with its range (named ``batch``
    when first, else ``INPUT.AXIS``; inputs sharing a symbol share the name); and each input's
    ``DimRanges``."""
    import torch

    user_inputs = list(ep.graph_signature.user_inputs)
    examples = [x for x in torch.utils._pytree.tree_leaves(getattr(ep, "example_inputs", None)
                                                          or ()) if isinstance(x, torch.Tensor)]
    by_input = dict(zip(user_inputs, examples)) if len(examples) == len(user_inputs) else {}
    names: dict[str, str] = {}
    inputs, ranges = [], {}
    for node in ep.graph.nodes:
        if node.op != "placeholder" or node.name not in user_inputs:
            continue
        val = node.meta.get("val")
        ranges[node.name] = exported_ranges(ep, val)
        example = by_input.get(node.name)
        shape: list[int | None] = []
        dims: list[Dim | None] = []
        for axis, (d, r) in enumerate(zip(val.shape, ranges[node.name])):
            if isinstance(d, int):
                shape.append(d)
                dims.append(None)
                continue
            wanted = "batch" if axis == 0 else f"{node.name}.{axis}"
            name = names.setdefault(str(d), wanted if wanted not in names.values()
                                    else f"{node.name}.{axis}")
            shape.append(int(example.shape[axis]) if example is not None else None)
            lo, hi = r if r is not None else (1, float("inf"))
            dims.append(Dim(name, max(int(lo), 1), None if hi == float("inf") else int(hi)))
        inputs.append(TensorSpec(node.name, tuple(shape), torch_dtype_name(val.dtype),
                                 tuple(dims) if any(dims) else ()))
    return inputs, ranges


def _bound(value: Any) -> float:
    """A sympy range bound as an int; ``inf`` for an infinite one (``int_oo``)."""
    if isinstance(value, int) or getattr(value, "is_Integer", False):  # a sympy Integer
        return int(value)
    return float("inf")


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
            return TorchSession(module, inputs, [], device, ops, scalars, name=path.name,
                                path=path, fmt=fmt)
        ep = torch.export.load(str(path))
        inputs, ranges = exported_inputs(ep)
        ops = [str(n.target) for n in ep.graph.nodes if n.op == "call_function"]
        outputs = [TensorSpec(n, None, "") for n in ep.graph_signature.user_outputs]
        return TorchSession(ep.module().to(device), inputs, outputs, device, ops,
                            ranges=ranges, name=path.name, path=path, fmt=fmt)


class TransformersDecoder(Decoder):
    """A transformers causal LM run eagerly, one ``DynamicCache`` kept across steps: the cache
    ``model.generate`` builds (a sliding-window layer keeps only its window's last positions).

    Its ``max_seq`` is None: an eager dynamic cache has no fixed length.
    """

    def __init__(self, model: Any, vocab: int) -> None:
        super().__init__(vocab, None)
        self._model = model
        self._cache: Any = None

    def _prefill(self, ids: np.ndarray) -> np.ndarray:
        from transformers import DynamicCache

        self._cache = DynamicCache(config=self._model.config)
        return self._step(ids, 0)

    def _decode(self, token: int) -> np.ndarray:
        return self._step(np.asarray([token], np.int64), self._length - 1)

    def _step(self, ids: np.ndarray, start: int) -> np.ndarray:
        """Run ``ids`` at positions ``start..`` on the kept cache; the last one's logits."""
        import torch

        positions = torch.arange(start, start + ids.size, dtype=torch.int64)[None]
        with torch.no_grad():
            out = self._model(input_ids=torch.from_numpy(ids)[None], position_ids=positions,
                              cache=self._cache, use_cache=True, logits_to_keep=1)
        return out.logits[0, -1].float().numpy()

    def cache(self) -> list[tuple[np.ndarray, np.ndarray]]:
        """Each layer's (keys, values) the cache holds, ``[kv_heads, positions, head_dim]``:
        every position used so far, or a sliding-window layer's last ``window - 1``."""
        if self._cache is None:
            return []
        return [(layer.keys[0].float().numpy(), layer.values[0].float().numpy())
                for layer in self._cache.layers if getattr(layer, "keys", None) is not None]


def load_decoder(path: Path, export: Export) -> Decoder:
    """The Hugging Face directory at ``path`` as a ``Decoder`` (transformers, eager, float32,
    CPU): the source the converted artifacts are compared with.

    Args:
        path: A causal-LM directory (``config.json`` + ``*.safetensors``).
        export: Its ``trust_model`` lets the directory's own modelling code run.

    Returns:
        A ``TransformersDecoder``.

    Raises:
        UsageError: The directory is not a safetensors causal LM (``read_hf``).
        UnsafeModelError: It ships modelling code and ``export.trust_model`` is false.
    """
    import torch
    from transformers import AutoModelForCausalLM

    model_dir = read_hf(path)
    check_trust(model_dir, export.trust_model)
    model = AutoModelForCausalLM.from_pretrained(
        path, dtype=torch.float32, trust_remote_code=export.trust_model,
        use_safetensors=True).eval()
    return TransformersDecoder(model, model_dir.vocab_size)
