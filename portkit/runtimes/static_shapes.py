"""Folding traced shape arithmetic to constants, for programs converted from TorchScript.

A traced model that computes shapes from ``x.size()`` (ShuffleNet's channel shuffle:
``b, c, h, w = x.size(); x.view(b, g, c // g, h, w)``) keeps that arithmetic through
TS2EPConverter as symbolic sizes and a data-dependent ``.item()`` (``_local_scalar_dense``) on
0-d tensors; litert-torch can't lower those ("ConcretizationTypeError ... int32[]"). The input
shapes are static, so every value computed only from shapes, weights and literals is a constant:
the program runs once on the example inputs, those scalars are written into the graph as
literals (0-d tensors as constant buffers), their runtime assertions dropped, and the module is
exported again with static shapes.
"""

from __future__ import annotations

from typing import Any


def fold_static_shapes(program: Any, args: tuple[Any, ...]) -> Any:
    """``program`` re-exported with every scalar that depends on no input's values folded.

    Args:
        program: An ExportedProgram whose input shapes are those of ``args``.
        args: Example inputs (their shapes are the model's, their values don't matter).

    Returns:
        A new ExportedProgram with static shapes and no shape arithmetic.
    """
    import torch
    from torch.fx.node import map_arg

    module = program.module()
    graph = module.graph
    static = _static_nodes(graph)
    scalars: dict[Any, Any] = {}
    tensors: dict[Any, Any] = {}

    class Recorder(torch.fx.Interpreter):
        def run_node(self, n: Any) -> Any:
            value = super().run_node(n)
            if n in static and n.op == "call_function":
                if type(value) in (int, float, bool):
                    scalars[n] = value
                elif isinstance(value, torch.Tensor) and value.dim() == 0:
                    tensors[n] = value.detach().clone()
            return value

    with torch.no_grad():
        Recorder(module).run(*args)
    for n in list(graph.nodes):
        n.args = map_arg(n.args, lambda a: scalars.get(a, a))
        n.kwargs = map_arg(n.kwargs, lambda a: scalars.get(a, a))
    for i, (n, value) in enumerate(tensors.items()):  # 0-d tensors of traced arithmetic
        if all(user in static for user in n.users):
            continue
        name = f"_portkit_folded_{i}"
        module.register_buffer(name, value, persistent=False)
        with graph.inserting_before(n):
            n.replace_all_uses_with(graph.get_attr(name))
    checks = {torch.ops.aten._assert_scalar.default, torch.ops.aten.sym_constrain_range.default,
              torch.ops.aten.sym_constrain_range_for_size.default}
    for n in list(graph.nodes):  # checks of folded values: they hold for these shapes
        if n.target in checks and not n.all_input_nodes:
            graph.erase_node(n)
    graph.eliminate_dead_code()
    module.recompile()
    return torch.export.export(module, args)


def _static_nodes(graph: Any) -> set[Any]:
    """The nodes whose values follow from input shapes, weights and literals alone."""
    import torch

    shape_ops = {torch.ops.aten.sym_size.int, torch.ops.aten.sym_numel.default,
                 torch.ops.aten.sym_stride.int}
    static: set[Any] = set()
    for n in graph.nodes:
        if n.op == "get_attr":
            static.add(n)
        elif n.op == "call_function":
            if torch.Tag.nondeterministic_seeded in getattr(n.target, "tags", ()):
                continue
            if n.target in shape_ops or all(d in static for d in n.all_input_nodes):
                static.add(n)
    return static
