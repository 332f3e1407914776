"""Conversion edges register here by decorator; the planner finds routes over them.

An edge is one tool turning one format into another (``litert-torch``: TorchScript or
ExportedProgram -> TFLite). A route is a chain of edges from the source's format to the target;
routes are tried cheapest first. An edge may declare variants: converter options worth trying
when optimizing (``litert-torch[nhwc-io]``); a route with a variant runs its last edge with it.

An edge from a format to itself is a preparation (``onnx-upgrade``: ONNX of an opset ONNX
Runtime and onnx2tf no longer take -> a current opset). It declares ``when``, a test of the source
file (given its inputs on demand: a TorchScript file stores no shapes); the planner never routes
through it, and ``prepare`` puts it first in every route of a source it applies to, so it shows
as a hop (``onnx-upgrade+onnx2tf``; ``pool-rewrite``, in ``pool_rewrite``, makes pooling windows
that cover their whole input global). It keeps the format, so every route of the source applies
to what it writes.

The costs encode what the benchmark (``benchmarks/``) found: the cheapest route is the one plain
``convert`` tries first, and it converted every zoo model its source framework has with an
artifact as fast as the best (litert-torch for PyTorch, TFLiteConverter for TensorFlow).
"""

from __future__ import annotations

import functools
import importlib
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from portkit.convert.dynamic import check_kept
from portkit.convert.onnx_opset import opset
from portkit.errors import ConversionError, InternalError, UsageError
from portkit.formats import Format
from portkit.formats.tflite import flex_ops
from portkit.options import ConvertOptions, LoadOptions
from portkit.policies import Quantize
from portkit.quantization import Quantization
from portkit.results import Hop
from portkit.runtimes.tasks import input_specs
from portkit.runtimes.worker import task
from portkit.shapes import Shapes
from portkit.specs import TensorSpec

# An edge's function returns its detail (what it chose), and what quantizing did if it did.
EdgeFunc = Callable[[Path, Format, Path, list[TensorSpec], ConvertOptions],
                    "str | tuple[str, Quantization]"]
# A preparation's test: whether the source file needs it. The second argument returns the
# source's resolved inputs (``--input`` over the stored shapes), read only when called: loading
# them costs a model load, and most tests decide from the file alone.
When = Callable[[Path, Callable[[], list[TensorSpec]]], bool]

_MODULES = (
    "portkit.convert.torch_to_tflite",
    "portkit.convert.torch_to_onnx",
    "portkit.convert.onnx_to_tflite",
    "portkit.convert.torch_to_torchscript",
    "portkit.convert.torch_to_executorch",
    "portkit.convert.tf_to_savedmodel",
    "portkit.convert.tf_to_tflite",
    "portkit.convert.tf_to_onnx",
    "portkit.convert.onnx_to_savedmodel",
    "portkit.convert.onnx_upgrade",
    "portkit.convert.pool_rewrite",
)
_EDGES: dict[tuple[str, Format], Edge] = {}


@dataclass(frozen=True)
class Variant:
    """A converter option set worth trying when optimizing for latency.

    Attributes:
        name: Short name, shown in the route's name (``tool[name]``).
        about: What it changes, for the report.
        channels_last: Whether it makes channels-first inputs channels-last.
        quantized: Whether it only changes which ops are quantized (planned only with
            ``--quantize int8`` or ``int16x8``).
    """

    name: str
    about: str
    channels_last: bool = False
    quantized: bool = False


@dataclass(frozen=True)
class Edge:
    """One conversion tool from some formats to one format.

    Attributes:
        tool: The tool's name (``torch.onnx``, ``onnx2tf``); unique per target format.
        sources: Formats it reads.
        target: The format it writes.
        cost: Relative preference; routes with a lower total are tried first.
        func: The function that runs it (in a worker, through ``run_edge``).
        channels_last: Whether it turns channels-first inputs into channels-last.
        quantizes: The ``--quantize`` modes it honours (TFLite quantization).
        variants: Option sets besides its default, tried by ``--optimize latency``.
        when: For a preparation (an edge from ``target`` to itself): whether a source file
            needs it, given its inputs on demand (``When``; runs in a worker).
        opsets: For an edge writing ONNX: the lowest and highest default-domain opset it
            writes as asked (``--opset``), measured with the frameworks here; None otherwise,
            and for a preparation that keeps the source's opset.
    """

    tool: str
    sources: tuple[Format, ...]
    target: Format
    cost: float
    func: EdgeFunc
    channels_last: bool = False
    quantizes: tuple[Quantize, ...] = ()
    variants: tuple[Variant, ...] = ()
    when: When | None = None
    opsets: tuple[int, int] | None = None

    def writes_opset(self, opset: int) -> bool:
        """Whether it writes ONNX of ``opset`` when asked to (False: it writes no ONNX)."""
        return self.opsets is not None and self.opsets[0] <= opset <= self.opsets[1]

    @property
    def opset_range(self) -> str:
        """``torch.onnx writes opsets 18-23``, for messages."""
        low, high = self.opsets or (0, 0)
        return f"{self.tool} writes opsets {low}-{high}"


@dataclass(frozen=True)
class Route:
    """A chain of edges, the last one run with ``variant`` if set; its name joins the tools
    with ``+`` and appends ``[variant]``."""

    edges: tuple[Edge, ...]
    variant: Variant | None = None

    @property
    def name(self) -> str:
        tools = "+".join(e.tool for e in self.edges)
        return f"{tools}[{self.variant.name}]" if self.variant else tools

    @property
    def cost(self) -> float:
        return sum(e.cost for e in self.edges)

    @property
    def channels_last(self) -> bool:
        return any(e.channels_last for e in self.edges) or bool(
            self.variant and self.variant.channels_last)


def register_edge(*, tool: str, sources: tuple[Format, ...], target: Format, cost: float,
                  channels_last: bool = False, quantizes: tuple[Quantize, ...] = (),
                  variants: tuple[Variant, ...] = (), when: When | None = None,
                  opsets: tuple[int, int] | None = None) -> Callable[[EdgeFunc], EdgeFunc]:
    """Decorator: register ``fn(src, src_format, dst, inputs, options) -> detail`` as an edge.

    Raises:
        InternalError: The tool already has an edge to ``target``, the edge would convert a
            format to itself without ``when``, a preparation (``when``) reads other formats, or
            ``opsets`` is missing on an edge writing ONNX (a preparation may keep the source's
            opset and leave it out), given on one that doesn't, or not ``(low, high)`` with
            1 <= low <= high.
    """

    def decorate(fn: EdgeFunc) -> EdgeFunc:
        key = (tool, target)
        if key in _EDGES and _qualified(_EDGES[key].func) != _qualified(fn):
            raise InternalError(f"two conversion edges named {tool!r} to {target.value}")
        if when is not None and sources != (target,):
            raise InternalError(f"preparation {tool!r}: sources {sources} must be ({target},)")
        if when is None and (target in sources or not sources):
            raise InternalError(f"edge {tool!r}: sources {sources} must be non-empty, without {target}")
        if (opsets is not None) != (target is Format.ONNX) and (when is None or opsets):
            raise InternalError(f"edge {tool!r}: an edge writing ONNX declares the opsets it "
                                f"writes (opsets=(low, high)), others none; got {opsets}")
        if opsets is not None and not 1 <= opsets[0] <= opsets[1]:
            raise InternalError(f"edge {tool!r}: opsets {opsets} must be (low, high), "
                                "1 <= low <= high")
        _EDGES[key] = Edge(tool, sources, target, cost, fn, channels_last, quantizes, variants,
                           when, opsets)
        return fn

    return decorate


def _qualified(fn: EdgeFunc) -> str:
    return f"{fn.__module__}.{fn.__qualname__}"


def edges() -> list[Edge]:
    """Every registered edge, in the order of ``_MODULES`` (not of whichever module some caller
    imported first): preparations run in this order."""
    for module in _MODULES:
        importlib.import_module(module)
    order = {m: i for i, m in enumerate(_MODULES)}
    return sorted(_EDGES.values(), key=lambda e: order.get(e.func.__module__, len(order)))


def plan(source: Format, target: Format, max_hops: int = 3, *,
         quantize: Quantize | None = None, variants: bool = False) -> list[Route]:
    """Every route from ``source`` to ``target`` without cycles or detours, cheapest first.

    A detour is a hop whose tool could have read an earlier format of the route directly
    (``.pt2 -> TorchScript -> TFLite`` when the TFLite converter reads ``.pt2`` itself).

    Args:
        source: The source model's format.
        target: The wanted format.
        max_hops: The longest route considered.
        quantize: Keep only routes whose last hop honours this ``--quantize`` mode.
        variants: Also list each route once per variant of its last edge, right after it
            (a variant that only changes which ops are quantized only for int8/int16x8).

    Returns:
        Routes sorted by total cost, then by hop count, then by name.
    """
    all_edges = edges()
    routes: list[Route] = []

    def extend(fmt: Format, path: tuple[Edge, ...], seen: frozenset[Format]) -> None:
        for e in all_edges:
            if e.when is not None:  # a preparation: put first by ``prepare``, never routed
                continue
            if fmt not in e.sources or e.target in seen or (seen - {fmt}) & set(e.sources):
                continue
            if e.target == target:
                if quantize is None or quantize in e.quantizes:
                    routes.append(Route(path + (e,)))
            elif len(path) + 1 < max_hops:
                extend(e.target, path + (e,), seen | {e.target})

    extend(source, (), frozenset({source}))
    ordered = sorted(routes, key=lambda r: (r.cost, len(r.edges), r.name))
    if not variants:
        return ordered
    calibrated = quantize is not None and quantize.calibrated
    return [v for r in ordered for v in (r, *(Route(r.edges, x) for x in r.edges[-1].variants
                                              if calibrated or not x.quantized))]


def by_opset(routes: list[Route], opset: int | None) -> tuple[list[Route], dict[str, str]]:
    """The routes that can honour ``--opset``: each of their hops writing ONNX writes it
    (routes writing no ONNX have no opset to honour, and are kept).

    Returns:
        The routes kept, and why each route dropped was dropped, by route name.

    Raises:
        UsageError: ``opset`` is given but no route writes ONNX, or no route can write it.
    """
    if opset is None or not routes:
        return routes, {}
    onnx = {e.tool: e for r in routes for e in r.edges if e.opsets is not None and not e.when}
    if not onnx:
        raise UsageError(f"--opset {opset}: no route of this conversion writes ONNX "
                         f"({', '.join(r.name for r in routes)}); drop --opset")
    dropped = {r.name: "; ".join(e.opset_range for e in r.edges
                                 if e.opsets is not None and not e.when
                                 and not e.writes_opset(opset))
               for r in routes}
    kept = [r for r in routes if not dropped[r.name]]
    if not kept:
        raise UsageError(f"--opset {opset}: " + ", ".join(e.opset_range for e in onnx.values())
                         + "; pick one in range")
    return kept, {name: f"not tried: --opset {opset}: {why}"
                  for name, why in dropped.items() if why}


def preparations(fmt: Format) -> list[Edge]:
    """The preparations (edges from ``fmt`` to itself) a ``fmt`` source may need."""
    return [e for e in edges() if e.when is not None and e.target is fmt]


@task
def needed(src: str, fmt: Format, given: list[TensorSpec] | None = None,
           shapes: Shapes = Shapes(), load: LoadOptions = LoadOptions()) -> list[str]:
    """The tools of the preparations ``src`` needs, in registration order (in a worker: the
    tests read the file with its framework).

    Args:
        src, fmt: The source.
        given, shapes, load: ``--input``, ``--dim``/``--static`` and how the source is opened:
            the source's inputs, resolved as the first hop resolves them, for a test that asks
            (resolving raises ``UsageError`` where they are unknown, as for a TorchScript file
            whose shapes come only from ``--inputs``: such a test answers without them).
    """
    inputs = functools.cache(lambda: input_specs(src, fmt, list(given or ()), load, shapes))
    return [e.tool for e in preparations(fmt) if e.when is not None and e.when(Path(src), inputs)]


def prepare(routes: list[Route], tools: list[str], fmt: Format) -> list[Route]:
    """``routes``, each with the preparations called ``tools`` put first."""
    first = tuple(_EDGES[tool, fmt] for tool in tools)
    return [Route(first + r.edges, r.variant) for r in routes]


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


@task
def run_edge(tool: str, target: Format, src: str, src_format: Format, dst: str,
             inputs: list[TensorSpec] | None, options: ConvertOptions,
             given: list[TensorSpec] | None = None, shapes: Shapes = Shapes()) -> Hop:
    """Run one edge (in a worker), time the converter itself, and check what it wrote.

    Args:
        tool, target: Which edge.
        src, src_format: What it reads.
        dst: Where it writes.
        inputs: The source's inputs; None for a first hop that runs beside the reference: it
            reads them from the source itself (``given`` over the stored shapes), as a converter
            run alone would, and that is part of its time.
        options: The user's options (and the route's variant).
        given: ``--input`` specs, when ``inputs`` is None.
        shapes: ``--dim`` and ``--static``, when ``inputs`` is None.

    Raises:
        InternalError: No such edge, or it wrote nothing.
        ConversionError: ``options.no_flex`` and the TFLite model needs the Flex runtime, or
            an ONNX hop wrote another opset than ``options.opset``.
    """
    edges()
    if (tool, target) not in _EDGES:
        raise InternalError(f"no conversion edge {tool!r} to {target.value}")
    edge = _EDGES[tool, target]
    if options.variant is not None and options.variant not in {v.name for v in edge.variants}:
        raise InternalError(f"edge {tool!r} has no variant {options.variant!r}")
    start = time.perf_counter()
    if inputs is None:
        inputs = input_specs(src, src_format, list(given or ()), options.load, shapes)
    done = edge.func(Path(src), src_format, Path(dst), inputs, options)
    detail, quantization = done if isinstance(done, tuple) else (done, None)
    seconds = time.perf_counter() - start
    if not Path(dst).exists():
        raise InternalError(f"{tool} reported success but wrote no {dst}")
    check_kept(tool, target, Path(dst), inputs)  # dynamic dimensions stay dynamic
    if edge.opsets is not None and options.opset is not None and edge.when is None:
        if (written := opset(Path(dst))) != options.opset:
            raise ConversionError(f"{tool} wrote opset {written}, not {options.opset} "
                                  "(--opset); pick another --opset or leave it out")
    if target is Format.TFLITE and options.no_flex:
        if flex := flex_ops(Path(dst)):
            raise ConversionError(f"{tool} emitted ops that need the Flex runtime: "
                                  f"{', '.join(flex)} (--no-flex)")
    return Hop(src_format, edge.target, tool, seconds, detail, quantization)
