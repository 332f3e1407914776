"""``--const NAME=VALUE``: bind inputs of the source to constants before any route runs.

Real models take configuration inputs (a sample rate) that branch the graph; converters fail on
the branch (TS2EPConverter on ``prim::If``, onnx2tf on ``If``). Bound to a constant, the branch
folds away and the prepared source converts like any other; the reference still runs the
original source, with the constant fed.

- TorchScript: a scripted wrapper calls ``forward`` with the constant in place of the argument,
  then ``torch.jit.freeze`` inlines it and propagates constants, which removes the ``prim::If``.
  The wrapper's source is generated (TorchScript compiles source code, not closures) into the
  worker's scratch folder. The detail counts the ``prim::If`` the constants decide, and says
  what decides those left (module attributes a model keeps between calls, input shapes).
- ONNX: each bound input becomes an initializer, then onnxscript's optimizer folds constants
  and inlines each ``If`` whose condition became constant (``onnx_fold``); initializers left
  unused are dropped. The detail counts the ``If`` nodes the constants decide (nested ones too)
  and those left, which other inputs decide.
"""

from __future__ import annotations

import importlib.util
import tempfile
import time
from collections import Counter
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from portkit.convert import onnx_fold
from portkit.errors import UsageError
from portkit.formats import Format
from portkit.options import Scalar, shown
from portkit.results import Hop
from portkit.runtimes.worker import task

TOOL = "bind-constants"
FORMATS = (Format.TORCHSCRIPT, Format.ONNX)


def check_format(src: Path, fmt: Format) -> None:
    """Refuse ``--const`` on a format it can't bind.

    Raises:
        UsageError: Not TorchScript or ONNX.
    """
    if fmt not in FORMATS:
        raise UsageError(f"{src}: --const binds inputs of TorchScript and ONNX models, not "
                         f"{fmt.value}; drop --const (or convert the model to ONNX first)")


@task
def bind_constants(src: str, fmt: Format, dst: str, constants: Mapping[str, Scalar]) -> Hop:
    """Write ``src`` with ``constants`` bound into ``dst`` (same format), as a hop of its own
    (timed here, in the worker, like a converter).

    Raises:
        UsageError: The format can't be bound, or a constant names no input (or one of a type
            it can't take).
    """
    check_format(Path(src), fmt)
    started = time.perf_counter()
    bind = _bind_torchscript if fmt is Format.TORCHSCRIPT else _bind_onnx
    detail = bind(Path(src), Path(dst), dict(constants))
    return Hop(fmt, fmt, TOOL, time.perf_counter() - started, detail)


_WRAPPER = '''import torch
from torch import Tensor
from typing import Dict, List, Optional, Tuple


class Bound(torch.nn.Module):
    def __init__(self, inner: torch.nn.Module) -> None:
        super().__init__()
        self.inner = inner

    def forward(self{params}):
        return self.inner({call})
'''
_PY_TYPES: dict[str, type] = {"int": int, "float": float, "bool": bool}


def _bind_torchscript(src: Path, dst: Path, constants: dict[str, Scalar]) -> str:
    import torch

    module = torch.jit.load(str(src), map_location="cpu").eval()
    args = module.forward.schema.arguments[1:]
    types = {a.name: str(a.type) for a in args}
    unknown = [n for n in constants if n not in types]
    if unknown:
        raise UsageError(f"{src}: --const {', '.join(unknown)}: forward has no such argument; "
                         f"it takes {', '.join(f'{n}: {t}' for n, t in types.items())}")
    literals = {}
    for name, value in constants.items():
        kind = types[name]
        if kind not in _PY_TYPES:
            raise UsageError(f"{src}: --const {name}: forward takes {name}: {kind}; --const "
                             "binds int, float and bool arguments")
        if kind != "float" and isinstance(value, float) and not value.is_integer():
            raise UsageError(f"{src}: --const {name}={value}: forward takes {name}: {kind}")
        literals[name] = repr(_PY_TYPES[kind](value))
    params = "".join(f", {a.name}: {a.type.annotation_str}" for a in args
                     if a.name not in constants)
    call = ", ".join(literals.get(a.name, a.name) for a in args)
    with tempfile.TemporaryDirectory(prefix="portkit-const-") as folder:
        code = Path(folder) / "_portkit_bound.py"
        code.write_text(_WRAPPER.format(params=params, call=call))
        spec = importlib.util.spec_from_file_location("_portkit_bound", code)
        wrapper: Any = importlib.util.module_from_spec(spec)  # type: ignore[arg-type]
        spec.loader.exec_module(wrapper)  # type: ignore[union-attr]
        scripted = torch.jit.script(wrapper.Bound(module).eval())
    decided = sum(_decided_by(n, set(constants)) == "the constants"
                  for n in _ifs(module.inlined_graph))
    torch.jit.save(torch.jit.freeze(scripted), str(dst))
    written = torch.jit.load(str(dst), map_location="cpu")  # what the routes will read
    left = Counter(_decided_by(n, set(constants)) for n in _ifs(written.inlined_graph))
    unfolded = left.pop("the constants", 0) + left.pop("literals", 0)  # a literal once bound
    folded = f"{max(decided - unfolded, 0)} of {decided} prim::If decided by them folded" \
        if decided else "no prim::If decided by them"
    if left:
        folded += f"; {sum(left.values())} left, decided by " + ", ".join(
            f"{what} ({n})" for what, n in left.most_common())
    return (f"torch.jit.script wrapper passing {shown(constants)} -> torch.jit.freeze "
            f"({folded})")


def _ifs(graph: Any) -> list[Any]:
    """The ``prim::If`` nodes of a TorchScript graph (or block), nested blocks included."""
    found = []
    for node in graph.nodes():
        if node.kind() == "prim::If":
            found.append(node)
        for block in node.blocks():
            found += _ifs(block)
    return found


def _decided_by(node: Any, names: set[str]) -> str:
    """What decides a ``prim::If``'s condition, followed back through the graph: module
    attributes (state a module may keep between calls) before input shapes before the values
    of inputs; ``the constants`` when only the arguments ``names`` (and literals) do."""
    found, seen, stack = set(), set(), [node.inputsAt(0)]
    while stack:
        value = stack.pop()
        if value.unique() in seen:
            continue
        seen.add(value.unique())
        producer = value.node()
        kind = producer.kind()
        if kind == "prim::Param":
            found.add("the constants" if value.debugName().split(".")[0] in names
                      else "input values")
        elif kind == "prim::GetAttr":
            found.add("module attributes")
        elif kind != "prim::Constant":
            if kind in ("aten::size", "aten::dim", "aten::len"):
                found.add("input shapes")
            stack.extend(producer.inputs())
    for what in ("module attributes", "input shapes", "input values"):
        if what in found:
            return what
    return "the constants" if found else "literals"


def _bind_onnx(src: Path, dst: Path, constants: dict[str, Scalar]) -> str:
    import numpy as np
    import onnx
    from onnx import numpy_helper

    model = onnx.load(str(src))
    graph = model.graph
    initializers = {i.name for i in graph.initializer}
    inputs = {i.name: i for i in graph.input if i.name not in initializers}
    unknown = [n for n in constants if n not in inputs]
    if unknown:
        raise UsageError(f"{src}: --const {', '.join(unknown)}: no such input; the model's "
                         f"inputs are {', '.join(inputs) or '(none)'}")
    for name, value in constants.items():
        info = inputs[name]
        tensor_type = info.type.tensor_type
        dims = [d.dim_value if d.HasField("dim_value") else None for d in tensor_type.shape.dim]
        if None in dims:
            raise UsageError(f"{src}: --const {name}: the input's shape is not fixed "
                             f"({dims}); --const binds inputs of a fixed shape")
        dtype = onnx.helper.tensor_dtype_to_np_dtype(tensor_type.elem_type)
        if dtype.kind in "iub" and isinstance(value, float) and not value.is_integer():
            raise UsageError(f"{src}: --const {name}={value}: the input is {dtype.name}; give "
                             "a whole number")
        graph.input.remove(info)
        graph.initializer.append(numpy_helper.from_array(np.full(dims, value, dtype), name))
    decided, _others = onnx_fold.count_ifs(model, constants)
    optimized = onnx_fold.fold(model)
    _drop_unused_initializers(optimized.graph)
    onnx.checker.check_model(optimized)
    onnx.save(optimized, str(dst))
    left, others = onnx_fold.count_ifs(optimized, constants)
    folded = f"{decided - left} of {decided} If decided by them inlined" if decided else \
        "no If decided by them"
    if others:
        folded += f"; {others} If left, decided by other inputs (their shapes, say)"
    return f"{shown(constants)} as initializers -> onnxscript's optimizer ({folded})"


def _drop_unused_initializers(graph: Any) -> None:
    """Remove initializers no node (nor subgraph) reads and no output names."""
    used = {o.name for o in graph.output} | {i for n in onnx_fold.nodes(graph) for i in n.input}
    keep = [i for i in graph.initializer if i.name in used]
    del graph.initializer[:]
    graph.initializer.extend(keep)
