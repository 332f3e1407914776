"""ONNX graphs folded where a bound value decides them: constants from ``--const`` and input
shapes fixed at their example size. Both leave ``If`` nodes whose condition is now a constant;
onnxscript's optimizer folds the condition chain (``Equal``, ``Cast``, ``Shape``, ``Gather``...)
and inlines the branch taken, so converters that can't take an ``If`` (onnx2tf) never see it.

onnxscript keeps every ``ConstantOfShape`` by default (folding one may grow the file); a small
one (``SMALL`` elements at most) is what shape arithmetic builds (the pads of a reflection pad,
say), and an ``If`` on a shape downstream folds only once it does.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Iterator, Mapping, Sequence
from typing import Any

# The most elements a ConstantOfShape may make and still be folded (shape arithmetic).
SMALL = 1024


def fold(model: Any) -> Any:
    """``model`` (a ``ModelProto``) with its constants folded and each ``If`` whose condition
    folds inlined (``onnxscript.optimizer.optimize_ir``, small ``ConstantOfShape`` folded too).

    Returns:
        A new ``ModelProto``.
    """
    import onnx_ir as ir
    from onnxscript.optimizer import optimize_ir

    def small(node: Any) -> bool | None:
        if node.op_type != "ConstantOfShape" or not node.inputs or node.inputs[0] is None:
            return None
        shape = node.inputs[0].const_value
        return True if shape is not None and math.prod(shape.numpy().tolist()) <= SMALL else None

    folded = ir.serde.deserialize_model(model)
    optimize_ir(folded, should_fold=small)
    return ir.serde.serialize_model(folded)


def fix_shapes(model: Any, shapes: Mapping[str, Sequence[int]]) -> None:
    """Set the graph inputs named in ``shapes`` to those static shapes, in place, and drop the
    graph's recorded intermediate shapes (inferred for the free dimensions, they would keep
    shape inference from seeing the fixed ones)."""
    for value in model.graph.input:
        if value.name in shapes:
            dims = value.type.tensor_type.shape.dim
            for axis, size in zip(dims, shapes[value.name]):
                axis.ClearField("dim_param")
                axis.dim_value = int(size)
    del model.graph.value_info[:]


def nodes(graph: Any) -> Iterator[Any]:
    """Every node of ``graph`` and of the subgraphs its nodes hold (an ``If``'s branches, a
    ``Loop``'s body), each node before its subgraphs' nodes: the order values are made in."""
    for node in graph.node:
        yield node
        for sub in subgraphs(node):
            yield from nodes(sub)


def subgraphs(node: Any) -> list[Any]:
    """The graphs a node holds as attributes (an ``If``'s two branches, a ``Loop``'s body)."""
    return [g for attr in node.attribute
            for g in ([attr.g] if attr.HasField("g") else list(attr.graphs))]


def count_ifs(model: Any, names: Iterable[str]) -> tuple[int, int]:
    """How many ``If`` nodes (in subgraphs too) have a condition computed from the values
    ``names`` (inputs or initializers) and constants alone, and how many others.

    Returns:
        (decided by ``names``, decided by anything else).
    """
    bound = set(names)
    constant = {i.name for i in model.graph.initializer} | {
        i.name for node in nodes(model.graph) for sub in subgraphs(node)
        for i in sub.initializer}
    counts = [0, 0]
    for node in nodes(model.graph):
        if node.op_type == "If":
            counts[0 if node.input[0] in bound else 1] += 1
        used = [i for i in node.input if i]
        if node.op_type == "Constant":
            constant.update(node.output)
        elif used and all(i in bound or i in constant for i in used) \
                and any(i in bound for i in used):
            bound.update(node.output)
    return counts[0], counts[1]


def has_control_flow(model: Any) -> bool:
    """Whether the graph (outside subgraphs) holds an ``If`` or a ``Loop``."""
    return any(n.op_type in ("If", "Loop") for n in model.graph.node)
