"""PT2E quantization for ExecuTorch with modules kept float: which modules ``--keep-float`` can
name (``modules_of``), the module quantized with some of them float (``quantize_module``), and
``--keep-float auto`` (``keep_float_search``): the fewest kept float that make the quantized
model meet the job's policy against the float model on calibration samples.

The search chooses as the TFLite path chooses ops (``keep_float.search``, after Polygraphy's
``debug precision``): by scope (``layers.3`` before ``layers.3.up``), at each level the shortest
passing prefix of units in execution order, found by bisection, then each unit of it put back to
integers where the model still passes. A candidate is judged in torch, eagerly, on the module
``convert_pt2e`` returns (its quantize and dequantize pairs compute what the int8 program does),
never lowered: a trial costs one prepare, calibration and convert. The validation that follows
runs the lowered program on the held-back samples, which chose nothing.

For ``n`` modules in one scope (at most ``keep_float.MAX_UNITS``) whose shortest passing prefix
is ``p`` long, at most ``2 + ceil(log2 n) + p`` models are built: the full quantization, every
module float, the bisection, and one trial per module of the prefix.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Sequence
from typing import Any

import numpy as np

from portkit.convert.keep_float import Search, module_path, search
from portkit.convert.tflite_quantize import JUDGE_SAMPLES
from portkit.options import ConvertOptions
from portkit.policies import Quantize, Tolerance
from portkit.runtimes.torch_export import dynamic_shapes, example_args, export_args
from portkit.specs import TensorSpec


def modules_of(module: Any, inputs: list[TensorSpec], mode: Quantize) -> list[str]:
    """The modules ``--keep-float`` can name, in execution order: the innermost module of each
    op that XNNPACKQuantizer quantizes in ``mode``, by its name in the model (``features.3``),
    as the quantizer annotates them (int8: conv, linear, add, mul, cat and pooling; dynamic:
    linear, and conv not followed by ReLU). A batch norm is folded into its conv, so it is none
    of them."""
    from torchao.quantization.pt2e.quantize_pt2e import prepare_pt2e
    from torchao.quantization.pt2e.quantizer.quantizer import Q_ANNOTATION_KEY

    prepared = prepare_pt2e(_graph(module, inputs), _quantizer(mode, ()))
    seen: list[str] = []
    for node in prepared.graph.nodes:
        stack = node.meta.get("nn_module_stack") or {}
        if node.op != "call_function" or Q_ANNOTATION_KEY not in node.meta or not stack:
            continue
        path = list(stack.values())[-1][0]
        name = path.removeprefix("L['self'].").removeprefix("L__self__.")
        if name and name not in seen:
            seen.append(name)
    return seen


def quantize_module(module: Any, inputs: list[TensorSpec], samples: Sequence[tuple[Any, ...]],
                    mode: Quantize, keep_float: tuple[str, ...]) -> Any:
    """``module`` quantized by PT2E (prepare, calibrate on ``samples``, convert), every op of
    the modules ``keep_float`` names (and of the modules inside them) left float.

    Args:
        module: The float module (``ExportedProgram.module()``).
        inputs: Its inputs.
        samples: Argument tuples to calibrate on (dynamic mode runs the first only: its
            activations are quantized per run, and its weights are observed on any).
        mode: ``int8`` or ``dynamic``.
        keep_float: Module names, as ``modules_of`` gives them (or modules holding them).

    Returns:
        The quantized module (a GraphModule of quantize/dequantize pairs), runnable in torch.
    """
    import torch
    from torchao.quantization.pt2e.quantize_pt2e import convert_pt2e, prepare_pt2e

    prepared = prepare_pt2e(_graph(module, inputs), _quantizer(mode, keep_float))
    with torch.no_grad(), one_thread():
        for args in samples if mode.calibrated else samples[:1]:
            prepared(*args)
    return convert_pt2e(prepared)


def keep_float_search(module: Any, inputs: list[TensorSpec], samples: list[tuple[Any, ...]],
                      names: Sequence[str], options: ConvertOptions) -> Search:
    """The module quantized with the fewest of ``names`` kept float that meets ``options.judge``.

    Args:
        module: The float module (``ExportedProgram.module()``).
        inputs: Its inputs.
        samples: Argument tuples to calibrate on; the first ``JUDGE_SAMPLES`` also judge.
        names: The modules that may stay float, in execution order (``modules_of``).
        options: ``quantize`` and ``judge`` (the job's policy; the default one if None).

    Returns:
        What ``keep_float.search`` found: the quantized module, the modules kept float, how
        many quantized models were built, and a note when even every module float misses the
        policy (then the full quantization is kept); the search's time and peak memory.
    """
    from portkit.validators.parity import compare_outputs

    mode = options.quantize
    assert mode is not None
    judged = samples[:JUDGE_SAMPLES]
    reference = outputs(module, judged)
    judge = options.judge or Tolerance()

    def fits(candidate: Any) -> bool:
        rows = compare_outputs(reference, outputs(candidate, judged), judge)
        return all(r.passed for r in rows)

    return search(names, lambda keep: quantize_module(module, inputs, samples, mode, keep), fits,
                  "modules", module_path)


def outputs(module: Any, samples: Sequence[tuple[Any, ...]]) -> list[dict[str, np.ndarray]]:
    """``module``'s outputs on each sample, flattened and named as the ExecuTorch runtime names
    a program's (``output_0``, ...)."""
    import torch
    from torch.utils._pytree import tree_leaves

    found = []
    with torch.no_grad(), one_thread():
        for args in samples:
            leaves = [t for t in tree_leaves(module(*args)) if isinstance(t, torch.Tensor)]
            found.append({f"output_{i}": t.detach().numpy() for i, t in enumerate(leaves)})
    return found


def export(module: Any, inputs: list[TensorSpec]) -> Any:
    """``torch.export`` of ``module`` with the inputs' dynamic dimensions."""
    import torch

    dynamic = dynamic_shapes(inputs)
    args = export_args(inputs) if dynamic else example_args(inputs)
    return torch.export.export(module, args, dynamic_shapes=dynamic)


def _graph(module: Any, inputs: list[TensorSpec]) -> Any:
    """The graph PT2E quantizes: ``module`` exported, its ``aten.convolution`` nodes named as
    the convs they are (``conv2d``, ``conv_transpose2d``...).

    PT2E's quantizer and its conv-batch-norm fold know only the named convs; a TorchScript
    source (through ``TS2EPConverter``) holds ``aten.convolution``, and its every conv would
    stay float, unsaid (a ``.pte`` larger than the float one, with only the linear layers
    int8). Its weights are buffers, which the fold cannot replace by the folded parameters:
    a conv's become parameters.
    """
    import torch

    aten = torch.ops.aten
    graph = export(module, inputs).module()
    for node in graph.graph.nodes:
        if node.target is not aten.convolution.default or node.kwargs or len(node.args) != 9:
            continue
        x, weight, bias, stride, padding, dilation, transposed, output_padding, groups = node.args
        if transposed:
            node.target = getattr(aten, f"conv_transpose{len(stride)}d").input
            node.args = (x, weight, bias, stride, padding, output_padding, groups, dilation)
        else:
            node.target = getattr(aten, f"conv{len(stride)}d").default
            node.args = (x, weight, bias, stride, padding, dilation, groups)
        for attr in (weight, bias):
            if getattr(attr, "op", None) == "get_attr":
                owner, _, field = attr.target.rpartition(".")
                holder = graph.get_submodule(owner)
                if field in holder._buffers:
                    holder.register_parameter(field, torch.nn.Parameter(
                        holder._buffers.pop(field), requires_grad=False))
    graph.recompile()
    return graph


@contextlib.contextmanager
def one_thread() -> Iterator[None]:
    """Torch on one thread meanwhile (then as it was): samples of one input make small ops,
    whose observers (``histc``, ``aminmax``) two OpenMP threads ran 15 to 30 times slower on a
    shared 2-core machine (100 samples of a 24k-parameter CNN: 5 to 8 s, one thread 0.3 s)."""
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(threads)


def _quantizer(mode: Quantize, keep_float: tuple[str, ...]) -> Any:
    """XNNPACKQuantizer for ``mode``, skipping every op of the modules ``keep_float`` names.

    Its conv-batch-norm patterns match only a batch norm that ``prepare_pt2e`` did not fold
    into its conv, and each is built by ``torch.export`` anew on every annotation (2 to 4 s a
    prepare for a small CNN, most of a ``--keep-float auto`` trial): they are skipped when no
    batch norm is left.
    """
    from executorch.backends.xnnpack.quantizer.xnnpack_quantizer import (
        XNNPACKQuantizer,
        get_symmetric_quantization_config,
    )
    from torchao.quantization.pt2e.quantizer.utils import get_module_name_filter

    class Quantizer(XNNPACKQuantizer):  # type: ignore[misc]
        def annotate(self, model: Any) -> Any:
            if not any("batch_norm" in str(n.target) for n in model.graph.nodes):
                self.SUPPORTED_PATTERNS = [p for p in XNNPACKQuantizer.SUPPORTED_PATTERNS
                                           if "_bn" not in p.name]
            return super().annotate(model)

    quantizer = Quantizer().set_global(get_symmetric_quantization_config(
        is_per_channel=True, is_dynamic=mode is Quantize.DYNAMIC))
    # set_module_name(name, None) is refused ("not supported yet"): a filter skips their ops.
    kept = [get_module_name_filter(name) for name in keep_float]
    quantizer.set_filter_function(lambda node: not any(inside(node) for inside in kept))
    return quantizer
