"""Conversion edges register here by decorator; the planner finds routes over them.

An edge is one tool turning one format into another (``litert-torch``: TorchScript or
ExportedProgram -> TFLite). A route is a chain of edges from the source's format to the target;
routes are tried cheapest first.
"""

from __future__ import annotations

import importlib
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from portkit.errors import ConversionError, InternalError, UsageError
from portkit.formats import Format
from portkit.specs import ConvertOptions, TensorSpec

EdgeFunc = Callable[[Path, Format, Path, list[TensorSpec], ConvertOptions], str]

_MODULES = (
    "portkit.convert.torch_to_tflite",
    "portkit.convert.torch_to_onnx",
    "portkit.convert.onnx_to_tflite",
    "portkit.convert.torch_to_torchscript",
    "portkit.convert.tf_to_savedmodel",
    "portkit.convert.tf_to_tflite",
    "portkit.convert.tf_to_onnx",
    "portkit.convert.onnx_to_savedmodel",
)
_EDGES: dict[tuple[str, Format], Edge] = {}


@dataclass(frozen=True)
class Edge:
    """One conversion tool from some formats to one format.

    Attributes:
        tool: The tool's name (``torch.onnx``, ``onnx2tf``); unique per target format.
        sources: Formats it reads.
        target: The format it writes.
        cost: Relative preference; routes with a lower total are tried first.
        func: ``module:function`` a worker calls to run it.
        channels_last: Whether it turns channels-first inputs into channels-last.
        quantizes: Whether it honours ``--quantize`` (TFLite quantization).
    """

    tool: str
    sources: tuple[Format, ...]
    target: Format
    cost: float
    func: str
    channels_last: bool = False
    quantizes: bool = False


@dataclass(frozen=True)
class Route:
    """A chain of edges; its name joins the tools with ``+``."""

    edges: tuple[Edge, ...]

    @property
    def name(self) -> str:
        return "+".join(e.tool for e in self.edges)

    @property
    def cost(self) -> float:
        return sum(e.cost for e in self.edges)

    @property
    def channels_last(self) -> bool:
        return any(e.channels_last for e in self.edges)


@dataclass(frozen=True)
class Hop:
    """One edge as it ran: the converter's own time, and what it chose (exporter, options)."""

    source: Format
    target: Format
    tool: str
    seconds: float
    detail: str


def register_edge(*, tool: str, sources: tuple[Format, ...], target: Format, cost: float,
                  channels_last: bool = False,
                  quantizes: bool = False) -> Callable[[EdgeFunc], EdgeFunc]:
    """Decorator: register ``fn(src, src_format, dst, inputs, options) -> detail`` as an edge.

    Raises:
        InternalError: The tool already has an edge to ``target``, or the edge would convert a
            format to itself.
    """

    def decorate(fn: EdgeFunc) -> EdgeFunc:
        func = f"{fn.__module__}:{fn.__name__}"
        key = (tool, target)
        if key in _EDGES and _EDGES[key].func != func:
            raise InternalError(f"two conversion edges named {tool!r} to {target.value}")
        if target in sources or not sources:
            raise InternalError(f"edge {tool!r}: sources {sources} must be non-empty, without {target}")
        _EDGES[key] = Edge(tool, sources, target, cost, func, channels_last, quantizes)
        return fn

    return decorate


def edges() -> list[Edge]:
    """Every registered edge."""
    for module in _MODULES:
        importlib.import_module(module)
    return list(_EDGES.values())


def plan(source: Format, target: Format, max_hops: int = 3, *,
         quantize: bool = False) -> list[Route]:
    """Every route from ``source`` to ``target`` without cycles or detours, cheapest first.

    A detour is a hop whose tool could have read an earlier format of the route directly
    (``.pt2 -> TorchScript -> TFLite`` when the TFLite converter reads ``.pt2`` itself).

    Args:
        source: The source model's format.
        target: The wanted format.
        max_hops: The longest route considered.
        quantize: Keep only routes whose last hop quantizes (``--quantize``).

    Returns:
        Routes sorted by total cost, then by hop count, then by name.
    """
    all_edges = edges()
    routes: list[Route] = []

    def extend(fmt: Format, path: tuple[Edge, ...], seen: frozenset[Format]) -> None:
        for e in all_edges:
            if fmt not in e.sources or e.target in seen or (seen - {fmt}) & set(e.sources):
                continue
            if e.target == target:
                if e.quantizes or not quantize:
                    routes.append(Route(path + (e,)))
            elif len(path) + 1 < max_hops:
                extend(e.target, path + (e,), seen | {e.target})

    extend(source, (), frozenset({source}))
    return sorted(routes, key=lambda r: (r.cost, len(r.edges), r.name))


def pick(routes: list[Route], name: str | None) -> list[Route]:
    """Keep only the route called ``name`` (all routes when ``name`` is None).

    Raises:
        UsageError: No planned route has that name.
    """
    if name is None:
        return routes
    chosen = [r for r in routes if r.name == name]
    if not chosen:
        known = ", ".join(r.name for r in routes) or "none"
        raise UsageError(f"--route {name}: not a route for this conversion; routes: {known}")
    return chosen


def run_edge(tool: str, target: Format, src: str, src_format: Format, dst: str,
             inputs: list[TensorSpec], options: ConvertOptions) -> Hop:
    """Run one edge (in a worker), time the converter itself, and check what it wrote.

    Raises:
        InternalError: No such edge, or it wrote nothing.
        ConversionError: ``options.no_flex`` and the TFLite model needs the Flex runtime.
    """
    edges()
    if (tool, target) not in _EDGES:
        raise InternalError(f"no conversion edge {tool!r} to {target.value}")
    edge = _EDGES[tool, target]
    module, name = edge.func.split(":")
    fn: EdgeFunc = getattr(importlib.import_module(module), name)
    start = time.perf_counter()
    detail = fn(Path(src), src_format, Path(dst), inputs, options)
    seconds = time.perf_counter() - start
    if not Path(dst).exists():
        raise InternalError(f"{tool} reported success but wrote no {dst}")
    if target is Format.TFLITE and options.no_flex:
        from portkit.validators.mobile import flex_ops

        if flex := flex_ops(Path(dst)):
            raise ConversionError(f"{tool} emitted ops that need the Flex runtime: "
                                  f"{', '.join(flex)} (--no-flex)")
    return Hop(src_format, edge.target, tool, seconds, detail)
