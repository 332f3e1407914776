"""Pooling windows that cover their whole input, rewritten as global pooling before converting:
the ``pool-rewrite`` preparation, of an ExportedProgram (before litert-torch and torch.onnx), of
a TorchScript module (the same, on the program every torch edge converts it to) and of an ONNX
model (before onnx2tf).

transformers' EfficientNet ends in ``nn.AvgPool2d(1280, ceil_mode=True)`` over a 7x7 map: one
window, hanging far off the input. TFLite has no such window: litert-torch and onnx2tf pad the
map to the window (1280x1280 per channel) and pool that, 60x slower than ONNX Runtime and ~16 GB
to prepare under XNNPACK. When the window is the whole input the pooling is a global mean or max
(``aten.mean.dim`` / ``aten.amax`` keeping the spatial axes as 1x1; ``GlobalAveragePool`` /
``GlobalMaxPool``), which every converter lowers to a plain reduction.

A window is rewritten only where that is exact (``whole_input``): one output position per axis,
the window starting at the first padded position reaching past the input's end, no dilation;
for an average, each output divides by the input's size: no ``divisor_override``, and padding
(if any) not counted (PyTorch and ONNX Runtime divide a window hanging off the input with
``ceil_mode`` by the part of it over the input and its padding, so without padding that is the
input). A max never picks padding. Spatial sizes must be static. The artifact is still
compared with the original source, not with the rewritten one.

A preparation keeps its format, so a TorchScript source's rewrite is TorchScript again: the
module converted to an ExportedProgram as the torch edges convert it (``load_exported_program``),
rewritten, and traced back (as the ``torch.jit.trace`` edge writes TorchScript). Every route of a
TorchScript source then still applies, under its own name (``pool-rewrite+torch.onnx-legacy``).
TorchScript stores no shapes, so the test asks for the inputs (``--input``), and only of a module
whose graph has a pooling op: for the others it is one ``torch.jit.load``.
"""

from __future__ import annotations

import shutil
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from portkit.convert._torch import load_exported_program
from portkit.convert.registry import register_edge
from portkit.errors import PortkitError
from portkit.formats import Format
from portkit.options import ConvertOptions
from portkit.runtimes.torch_export import example_args, export_program
from portkit.specs import TensorSpec


@dataclass(frozen=True)
class Window:
    """One pooling op's geometry, per spatial axis.

    Attributes:
        op: The op's name, for the report (``AvgPool2d``, ``AveragePool``).
        average: An average (else a max).
        spatial: The input's spatial sizes.
        out: The output's spatial sizes.
        kernel: The window's sizes.
        pads_begin: Padding before each axis.
        pads_end: Padding after each axis.
        dilations: The window's dilations.
        count_include_pad: An average divides by padded positions too.
        divisor_override: An average divides by a fixed number instead.
    """

    op: str
    average: bool
    spatial: tuple[int, ...]
    out: tuple[int, ...]
    kernel: tuple[int, ...]
    pads_begin: tuple[int, ...]
    pads_end: tuple[int, ...]
    dilations: tuple[int, ...]
    count_include_pad: bool = False
    divisor_override: bool = False

    @property
    def whole_input(self) -> bool:
        """Whether the op equals a global mean (max) over the spatial axes, sizes kept as 1."""
        n = len(self.spatial)
        if not n or any(len(t) != n for t in (self.out, self.kernel, self.pads_begin,
                                                self.pads_end, self.dilations)):
            return False
        covers = all(o == 1 and d == 1 and k >= s + b for o, d, k, s, b in zip(
            self.out, self.dilations, self.kernel, self.spatial, self.pads_begin))
        if not covers or not self.average:
            return covers
        padded = any(self.pads_begin) or any(self.pads_end)
        return not self.divisor_override and not (self.count_include_pad and padded)

    @property
    def described(self) -> str:
        """``AvgPool2d 1280x1280 over 7x7 -> global mean``."""
        size = "x".join(map(str, self.kernel))
        over = "x".join(map(str, self.spatial))
        return f"{self.op} {size} over {over} -> global {'mean' if self.average else 'max'}"


def summary(done: Sequence[str]) -> str:
    """The hop's detail: each rewrite once, with a count where repeated."""
    counts = {d: done.count(d) for d in dict.fromkeys(done)}
    return "; ".join(d if n == 1 else f"{d} (x{n})" for d, n in counts.items()) or (
        "no pooling window covers its whole input: nothing rewritten")


def _ints(values: Any) -> tuple[int, ...] | None:
    """``values`` as ints, or None if any is symbolic (a dynamic size)."""
    if not all(isinstance(v, int) for v in values):
        return None
    return tuple(values)


def _first_line(e: Exception) -> str:
    """An exception's first line, for a hop's detail."""
    return (str(e).strip().splitlines() or [type(e).__name__])[0][:200]


# ---- PyTorch: aten.avg_pool2d / max_pool2d(_with_indices) -> aten.mean.dim / aten.amax ----

def _pair(value: Any, default: int) -> tuple[int, int]:
    """An ``int[2]`` argument as a pair (``[]`` and None: ``default``; one value: both axes)."""
    if value is None or (isinstance(value, (list, tuple)) and not value):
        return default, default
    if isinstance(value, int):
        return value, value
    return (value[0], value[0]) if len(value) == 1 else (value[0], value[1])


def _torch_window(node: Any) -> Window | None:
    """The window of an ``aten.avg_pool2d`` / ``max_pool2d(_with_indices)`` node whose shapes
    are known and static (None for other nodes)."""
    import torch

    aten = torch.ops.aten
    avg = node.target is aten.avg_pool2d.default
    if node.op != "call_function" or not (avg or node.target in (
            aten.max_pool2d.default, aten.max_pool2d_with_indices.default)):
        return None
    names = (["kernel_size", "stride", "padding", "ceil_mode", "count_include_pad",
              "divisor_override"] if avg else
             ["kernel_size", "stride", "padding", "dilation", "ceil_mode"])
    given = dict(zip(names, node.args[1:])) | dict(node.kwargs)
    source, val = node.args[0].meta.get("val"), node.meta.get("val")
    if isinstance(val, (tuple, list)):  # max_pool2d_with_indices: (values, indices)
        val = val[0]
    if source is None or val is None or source.dim() not in (3, 4):
        return None
    spatial, out = _ints(source.shape[-2:]), _ints(val.shape[-2:])
    if spatial is None or out is None:
        return None
    pads = _pair(given.get("padding"), 0)
    return Window(
        op="AvgPool2d" if avg else "MaxPool2d", average=avg, spatial=spatial, out=out,
        kernel=_pair(given["kernel_size"], 0), pads_begin=pads, pads_end=pads,
        dilations=_pair(given.get("dilation"), 1),
        count_include_pad=bool(given.get("count_include_pad", True)),
        divisor_override=given.get("divisor_override") is not None)


def _torch_targets(graph: Any) -> list[tuple[Any, Window]]:
    """The pooling nodes of ``graph`` to rewrite (a max pool's indices must be unused)."""
    import operator

    found = []
    for node in graph.nodes:
        window = _torch_window(node)
        if window is None or not window.whole_input:
            continue
        if isinstance(node.meta.get("val"), (tuple, list)) and not all(
                u.target is operator.getitem and u.args[1] == 0 for u in node.users):
            continue  # the indices are used
        found.append((node, window))
    return found


def rewrite_graph(graph: Any) -> list[str]:
    """Replace in ``graph`` (an FX graph of ATen ops, as ``torch.export`` writes it) each
    pooling node whose window covers its whole input with ``aten.mean.dim`` / ``aten.amax``
    over the last two axes, keepdim.

    Returns:
        What was rewritten (``Window.described``), one entry per node.
    """
    import torch

    done = []
    for node, window in _torch_targets(graph):
        reduce = torch.ops.aten.mean.dim if window.average else torch.ops.aten.amax.default
        with graph.inserting_after(node):
            new = graph.call_function(reduce, (node.args[0], [-2, -1], True))
        new.meta["val"] = node.meta["val"][0] if isinstance(
            node.meta["val"], (tuple, list)) else node.meta["val"]
        uses = list(node.users) if isinstance(node.meta["val"], (tuple, list)) else [node]
        for use in uses:  # a max pool with indices: its ``getitem(..., 0)``s
            use.replace_all_uses_with(new)
            if use is not node:
                graph.erase_node(use)
        graph.erase_node(node)
        done.append(window.described)
    return done


def program_needs(path: Path, inputs: Callable[[], list[TensorSpec]]) -> bool:
    """Whether the ExportedProgram at ``path`` has a pooling window covering its whole input
    (``registry.When``; the program holds its shapes, ``inputs`` is not needed)."""
    import torch

    return bool(_torch_targets(torch.export.load(str(path)).graph))


def rewrite_program(program: Any, inputs: list[TensorSpec], what: str) -> tuple[Any, list[str]]:
    """``program`` with its whole-input pooling windows made global (``rewrite_graph`` on its
    module, exported again with the inputs' dynamic dimensions).

    Returns:
        The program (``program`` itself when nothing was rewritten), and what was rewritten.
    """
    module = program.module()
    done = rewrite_graph(module.graph)
    if not done:
        return program, []
    module.recompile()
    return export_program(module, inputs, what), done


@register_edge(tool="pool-rewrite", sources=(Format.EXPORTED_PROGRAM,),
               target=Format.EXPORTED_PROGRAM, cost=0.1, when=program_needs)
def rewrite_exported(src: Path, fmt: Format, dst: Path, inputs: list[TensorSpec],
                     options: ConvertOptions) -> str:
    """Rewrite the source's whole-input pooling windows as global means/maxes (``.pt2``).

    A program that ``torch.export`` can't export again once rewritten is passed on as loaded
    (the detail says why): this hop starts every route, and must not fail them all.
    """
    import torch

    program = load_exported_program(src, fmt, inputs)
    try:
        program, done = rewrite_program(program, inputs,
                                        f"{src.name} (pooling windows rewritten)")
    except Exception as e:  # noqa: BLE001 - torch.export raises many kinds
        torch.export.save(program, str(dst))
        return ("nothing rewritten: torch.export failed on the rewritten program "
                f"({_first_line(e)})")
    torch.export.save(program, str(dst))
    return summary(done)


# ---- TorchScript: the same rewrite on its ExportedProgram, traced back to TorchScript ----

# The TorchScript ops ``_torch_window`` reads once converted (``aten.avg_pool2d``...).
_SCRIPT_POOLS = frozenset({"aten::avg_pool2d", "aten::max_pool2d",
                           "aten::max_pool2d_with_indices"})


def _kinds(block: Any) -> Iterator[str]:
    """The kinds of a TorchScript block's nodes, those of nested blocks (``if``, loops) too."""
    for node in block.nodes():
        yield node.kind()
        for inner in node.blocks():
            yield from _kinds(inner)


def script_needs(path: Path, inputs: Callable[[], list[TensorSpec]]) -> bool:
    """Whether the TorchScript module at ``path`` has a pooling window covering its whole input
    at the inputs' sizes (``registry.When``).

    Its inlined graph is searched for pooling ops first; only a module with some is converted
    to an ExportedProgram (as its routes convert it) to learn their sizes, which TorchScript
    does not store. Without inputs (no ``--input``) or without a program, nothing is rewritten:
    the routes meet that error themselves and report it.
    """
    import torch

    module = torch.jit.load(str(path), map_location="cpu")
    if _SCRIPT_POOLS.isdisjoint(_kinds(module.inlined_graph)):
        return False
    try:
        specs = inputs()
    except PortkitError:
        return False
    try:
        program = load_exported_program(path, Format.TORCHSCRIPT, specs)
    except Exception:  # noqa: BLE001 - TS2EPConverter and torch.export raise many kinds
        return False
    return bool(_torch_targets(program.graph))


@register_edge(tool="pool-rewrite", sources=(Format.TORCHSCRIPT,), target=Format.TORCHSCRIPT,
               cost=0.1, when=script_needs)
def rewrite_script(src: Path, fmt: Format, dst: Path, inputs: list[TensorSpec],
                   options: ConvertOptions) -> str:
    """Rewrite the source's whole-input pooling windows as global means/maxes (TorchScript):
    the ExportedProgram every torch edge makes of it, rewritten and traced back.

    A module that won't convert, trace back, or convert back to an ExportedProgram as the next
    hop converts it, is passed on as it is (the detail says why): this hop starts every route,
    and must not fail them all (``torch.onnx-legacy`` reads TorchScript without exporting it).
    """
    import torch

    try:
        module = load_exported_program(src, fmt, inputs).module()
        done = rewrite_graph(module.graph)
        if done:
            module.recompile()
            traced = torch.jit.trace(module, example_args(inputs), check_trace=False)
            torch.jit.save(traced, str(dst))
            load_exported_program(dst, fmt, inputs)  # what every torch edge makes of it first
    except Exception as e:  # noqa: BLE001 - TS2EPConverter, export and tracing raise many kinds
        shutil.copyfile(src, dst)
        return ("nothing rewritten: the module did not go through torch.export and back to "
                f"TorchScript ({_first_line(e)})")
    if not done:
        shutil.copyfile(src, dst)
    return summary(done)


# ---- ONNX: AveragePool / MaxPool -> GlobalAveragePool / GlobalMaxPool ----

_GLOBAL = {"AveragePool": "GlobalAveragePool", "MaxPool": "GlobalMaxPool"}


def _shape(value: Any) -> tuple[int | None, ...] | None:
    """A ``ValueInfoProto``'s shape, ``None`` on an axis without a size (None: no shape)."""
    if not value.type.tensor_type.HasField("shape"):
        return None
    return tuple(d.dim_value if d.HasField("dim_value") else None
                 for d in value.type.tensor_type.shape.dim)


def _onnx_window(node: Any, shapes: dict[str, Any]) -> Window | None:
    """The window of an ``AveragePool`` / ``MaxPool`` node whose spatial sizes are inferred
    and static (None for other nodes, ``auto_pad`` SAME_*, or a used ``Indices`` output)."""
    from onnx import helper

    if node.domain not in ("", "ai.onnx") or node.op_type not in _GLOBAL:
        return None
    if len(node.output) > 1 and node.output[1]:
        return None
    attrs = {a.name: helper.get_attribute_value(a) for a in node.attribute}
    kernel = tuple(attrs.get("kernel_shape", ()))
    n = len(kernel)
    source, result = shapes.get(node.input[0]), shapes.get(node.output[0])
    if attrs.get("auto_pad", b"NOTSET") not in (b"NOTSET", b"VALID") or not n or \
            source is None or result is None:
        return None
    spatial, out = _ints(source[2:]), _ints(result[2:])
    if spatial is None or out is None or len(spatial) != n:
        return None
    pads = tuple(attrs.get("pads", (0,) * 2 * n))
    return Window(
        op=node.op_type, average=node.op_type == "AveragePool", spatial=spatial, out=out,
        kernel=kernel, pads_begin=pads[:n], pads_end=pads[n:],
        dilations=tuple(attrs.get("dilations", (1,) * n)),
        count_include_pad=bool(attrs.get("count_include_pad", 0)))


def _onnx_targets(model: Any) -> list[tuple[Any, Window]]:
    """The pooling nodes of ``model``'s main graph to rewrite (shapes from shape inference)."""
    import onnx

    try:
        inferred = onnx.shape_inference.infer_shapes(model)
    except Exception:  # noqa: BLE001 - its errors are bare; nothing known, nothing rewritten
        return []
    graph = inferred.graph
    shapes = {v.name: s for v in (*graph.input, *graph.value_info, *graph.output)
              if (s := _shape(v)) is not None}
    found = []
    for node in model.graph.node:
        window = _onnx_window(node, shapes)
        if window is not None and window.whole_input:
            found.append((node, window))
    return found


def rewrite_onnx(model: Any) -> list[str]:
    """Replace in ``model`` (in place) each ``AveragePool`` / ``MaxPool`` whose window covers
    its whole input with ``GlobalAveragePool`` / ``GlobalMaxPool`` (same name, input, output).

    Returns:
        What was rewritten (``Window.described``), one entry per node.
    """
    done = []
    for node, window in _onnx_targets(model):
        node.op_type = _GLOBAL[node.op_type]
        del node.attribute[:]
        del node.output[1:]
        done.append(window.described)
    return done


def onnx_needs(path: Path, inputs: Callable[[], list[TensorSpec]]) -> bool:
    """Whether the ONNX model at ``path`` has a pooling window covering its whole input
    (``registry.When``; shape inference gives the sizes, ``inputs`` is not needed)."""
    import onnx

    return bool(_onnx_targets(onnx.load(str(path), load_external_data=False)))


@register_edge(tool="pool-rewrite", sources=(Format.ONNX,), target=Format.ONNX, cost=0.1,
               when=onnx_needs)
def rewrite_onnx_file(src: Path, fmt: Format, dst: Path, inputs: list[TensorSpec],
                      options: ConvertOptions) -> str:
    """Rewrite the source's whole-input pooling windows as global pooling (same opset)."""
    import onnx

    from portkit.safety import check_onnx

    check_onnx(src)
    model = onnx.load(str(src))
    done = rewrite_onnx(model)
    onnx.save(model, str(dst))
    return summary(done)
