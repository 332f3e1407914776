"""Every node output of a PyTorch model, from an FX interpreter over its ExportedProgram.

A TorchScript archive is first turned into an ExportedProgram with ``TS2EPConverter`` and
``static_shapes.fold_static_shapes`` (as portkit's torch.onnx edge does), on the traced feeds.
The program is then decomposed as torch.onnx's dynamo exporter decomposes it (its ONNX
registry's decomposition table), so the FX node names here are the names that exporter gives
ONNX values and records in each ONNX node's ``pkg.torch.onnx.fx_node`` metadata; where that
private API is missing, the program is traced as saved.

``node_id`` is the name the node had in the program as saved (followed back through the
decomposition's ``from_node`` provenance): Model Explorer's PyTorch adapter shows the saved
``.pt2`` and names its nodes by FX name.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from portkit.formats import Format
from portkit.runtimes.tracing import TensorWriter, traceable
from portkit.traces import TracedTensor


def exported_program(path: Path, fmt: Format, args: tuple[Any, ...]) -> Any:
    """The file's ExportedProgram: loaded (``.pt2``) or converted from TorchScript on ``args``
    with its shape arithmetic folded, as portkit's torch.onnx edge converts it."""
    import torch

    if fmt is Format.EXPORTED_PROGRAM:
        return torch.export.load(str(path))
    from torch._export.converter import TS2EPConverter

    from portkit.runtimes.static_shapes import fold_static_shapes

    module = torch.jit.load(str(path), map_location="cpu").eval()
    return fold_static_shapes(TS2EPConverter(module, args).convert(), args)


def onnx_decomposed(program: Any) -> Any:
    """``program`` decomposed as torch.onnx's dynamo exporter decomposes it (unchanged if this
    torch lacks the private API or the decomposition fails)."""
    try:
        from torch.onnx._internal.exporter import _fx_passes, _registration

        return _fx_passes.decompose_with_registry(program,
                                                  _registration.ONNXRegistry.from_torchlib())
    except Exception:  # noqa: BLE001 - names are a matching hint; the plain program still runs
        return program


def _numpy(value: Any) -> np.ndarray | None:
    import torch

    if not isinstance(value, torch.Tensor) or value.is_complex() or value.is_quantized:
        return None
    value = value.detach().cpu()
    if value.dtype in (torch.bfloat16, torch.float8_e4m3fn, torch.float8_e5m2):
        value = value.float()
    return value.numpy()


def _saved_name(n: Any) -> str:
    """The name of the node ``n`` came from before decomposition (its own name if unknown)."""
    name, sources = n.name, n.meta.get("from_node")
    while sources:
        source = sources[-1] if isinstance(sources, list) else sources
        name, sources = getattr(source, "name", name), getattr(source, "from_node", None)
    return name


def _producer(n: Any) -> Any:
    """The node that computed ``n``: for ``getitem`` of an untraced tuple (batch norm's outputs),
    the op that returned the tuple."""
    import operator

    if n.target is operator.getitem and n.args and hasattr(n.args[0], "target"):
        return n.args[0]
    return n


def _inputs(n: Any, writer: TensorWriter, name: Callable[[Any], str]) -> list[Any]:
    """The nodes ``n`` was computed from, through an untraced tuple to the op's own inputs."""
    found = []
    for i in n.all_input_nodes:
        found += [i] if name(i) in writer or i is not _producer(n) else i.all_input_nodes
    return found


def trace_program(path: Path, fmt: Format, args: tuple[Any, ...], folder: Path,
                  input_names: list[str]) -> tuple[list[TracedTensor], list[str]]:
    """Run the program node by node, writing each tensor-valued node's output as it comes.

    Args:
        path: The ``.pt2`` or TorchScript file.
        fmt: Its format.
        args: The forward arguments (tensors on CPU, Python scalars), in order.
        folder: Where the ``.npy`` files go.
        input_names: The session's input names, given to the program's placeholders in order
            (TorchScript's converter renames ``x`` to ``x_1``).

    Returns:
        The traced tensors (user inputs, then nodes in graph order) and the traced names of
        the outputs.
    """
    import torch
    import torch.fx
    from torch.utils import _pytree

    program = onnx_decomposed(exported_program(path, fmt, args))
    module = program.module()
    writer = TensorWriter(folder)
    placeholders = [n.name for n in module.graph.nodes if n.op == "placeholder"]
    renamed = dict(zip(placeholders, input_names))

    def name(n: Any) -> str:
        return renamed.get(n.name, n.name)

    class Tracer(torch.fx.Interpreter):
        def run_node(self, n: torch.fx.Node) -> Any:
            result = super().run_node(n)
            if n.op in ("placeholder", "call_function", "call_method", "call_module"):
                value = _numpy(result)
                if value is not None and traceable(value):
                    input_ = n.op == "placeholder"
                    op = _producer(n)
                    writer.add(name(n), value, node="" if input_ else n.name,
                               op_type="input" if input_ else str(op.target),
                               inputs=tuple(name(i) for i in _inputs(n, writer, name)),
                               node_id=_saved_name(n))
            return result

    with torch.no_grad():
        Tracer(module).run(*args)
    out = next(n for n in module.graph.nodes if n.op == "output")
    outputs = [name(leaf) for leaf in _pytree.tree_leaves(out.args[0])
               if isinstance(leaf, torch.fx.Node) and name(leaf) in writer]
    return writer.tensors, outputs
