"""A Hugging Face causal-LM directory -> one ONNX graph with its key/value cache as inputs and
outputs, named as ONNX Runtime GenAI and optimum name them:

    input_ids [1, seq], attention_mask [1, past + seq], position_ids [1, seq] (int64),
    past_key_values.N.key / .value [1, kv_heads, past, head_dim] (float32)
    -> logits [1, seq, vocab], present.N.key / .value [1, kv_heads, past + seq, head_dim]

``seq`` and ``past`` are dynamic (``dim_param``), and ``past`` may be 0: the prefill feeds an
empty past. The model is wrapped so that the flat past becomes a ``transformers.DynamicCache``
of full-length layers and the cache it returns becomes the flat ``present``. A sliding-window
layer (Gemma 2/3) keeps every position too: its mask, not its cache, limits it to the window,
so a graph fed its own ``present`` computes what ``model.generate``'s trimmed cache does.

``--quantize dynamic`` (8 bits) or ``int4`` rewrites the exported graph with ONNX Runtime's
weight-only quantizer (``MatMulNBitsQuantizer``): every MatMul whose weight is a constant becomes
a ``com.microsoft`` ``MatMulNBits`` with int8 or int4 weights (``BITS``), symmetric, one scale
per output channel and block of ``BLOCKS`` inputs, activations float32; with int4 the embedding
table's Gather becomes ``GatherBlockQuantized`` too (``OPS``). The inputs and outputs keep their
names.

Exporters are tried in order, each a strategy that returns a graph or says why not
(``_STRATEGIES``): the dynamo exporter with ``dynamic_shapes``, then the TorchScript exporter
with ``dynamic_axes``.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Callable

from portkit.convert.dynamic import name_onnx_dims
from portkit.errors import ConversionError
from portkit.formats.hf import HfModel, check_trust, read_hf
from portkit.io import staging_dir
from portkit.options.generation import Export
from portkit.policies import Quantize
from portkit.specs import Dim, TensorSpec

DYNAMO_OPSET = 18
LEGACY_OPSET = 17
_ONE_FILE = 2**31 - 2**26  # weights past this go to one external data file (protobuf's 2 GB)
# The traced lengths: each above 1 (0 and 1 would be specialised) and all three different.
_EXAMPLE_SEQ, _EXAMPLE_PAST = 4, 5
SEQ, PAST, TOTAL = Dim("seq"), Dim("past"), Dim("past + seq")
# --quantize mode -> MatMulNBits' bits, and the inputs one scale covers: ORT's default block for
# int8; for int4 the 32 that torchao's and ai-edge-quantizer's int4 recipes use too.
BITS = {Quantize.DYNAMIC: 8, Quantize.INT4: 4}
BLOCKS = {Quantize.DYNAMIC: 128, Quantize.INT4: 32}
# --quantize mode -> the ops quantized: int4 also the embedding table's Gather (as
# GatherBlockQuantized, which ONNX Runtime has in 4 bits only; ai-edge-quantizer's recipes
# quantize TFLite's embedding lookup too), a scale per block of its row.
OPS = {Quantize.DYNAMIC: ("MatMul",), Quantize.INT4: ("MatMul", "Gather")}


def export_onnx(src: Path, dst: Path, export: Export) -> str:
    """Export the causal LM in ``src`` to ``dst`` with its cache as inputs and outputs.

    Args:
        src: A Hugging Face directory (``config.json`` + ``*.safetensors``).
        dst: The ``.onnx`` file to write (replaced atomically; weights over 2 GB go to
            ``<dst>.data`` beside it).
        export: ``max_seq`` bounds the past the decoder is run with (the graph takes any);
            ``trust_model`` lets the directory's own modelling code run; ``quantize`` makes
            the MatMul weights int8 or int4 (``BITS``).

    Returns:
        One line: the exporter that wrote it, the opset, the layers, the dynamic lengths,
        what was quantized.

    Raises:
        UsageError: ``src`` is not a safetensors causal-LM directory.
        UnsafeModelError: It ships modelling code and ``export.trust_model`` is false.
        ConversionError: No exporter wrote a graph (each one's reason named).
    """
    import torch
    from transformers import AutoModelForCausalLM

    info = read_hf(Path(src))
    check_trust(info, export.trust_model)
    model = AutoModelForCausalLM.from_pretrained(
        src, dtype=torch.float32, trust_remote_code=export.trust_model,
        use_safetensors=True).eval()
    wrapper = _wrap(model)
    args = _example(info)
    external = sum(p.numel() * p.element_size() for p in model.parameters()) > _ONE_FILE
    dst = Path(dst)
    with staging_dir(dst) as stage:
        staged = stage / dst.name
        errors = []
        for name, strategy in _STRATEGIES:
            try:
                with torch.no_grad():
                    opset = strategy(wrapper, args, staged, external)
                break
            except Exception as e:  # noqa: BLE001 - each exporter raises its own kinds
                errors.append(f"{name}: {_first_line(e)}")
        else:
            raise ConversionError(f"{src}: no exporter wrote an ONNX graph with a cache ("
                                  + "; ".join(errors) + ")")
        _finish(staged, info, external)
        quantized = quantize(staged, export.quantize, external) if export.quantize else ""
        data = staged.with_name(staged.name + ".data")
        if data.exists():
            os.replace(data, dst.with_name(dst.name + ".data"))
        os.replace(staged, dst)
    tried = f" after {'; '.join(errors)}" if errors else ""
    return (f"{name}, opset {opset}, {info.num_hidden_layers} layers, seq and past dynamic "
            f"(past up to {export.max_seq - 1}, 0 on the prefill){quantized}{tried}")


def input_names(layers: int) -> list[str]:
    """The graph's inputs, in order, for a model of ``layers`` cache layers."""
    return ["input_ids", "attention_mask", "position_ids",
            *(f"past_key_values.{i}.{kv}" for i in range(layers) for kv in ("key", "value"))]


def output_names(layers: int) -> list[str]:
    """The graph's outputs, in order, for a model of ``layers`` cache layers."""
    return ["logits", *(f"present.{i}.{kv}" for i in range(layers) for kv in ("key", "value"))]


def _wrap(model: Any) -> Any:
    """``model`` as a ``torch.nn.Module`` taking ``input_ids, attention_mask, position_ids,
    *past`` (key0, value0, key1, ...) and returning ``logits, *present`` in the same order."""
    import torch
    from transformers import DynamicCache

    class CacheWrapper(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.model = model

        def forward(self, input_ids: Any, attention_mask: Any, position_ids: Any,
                    *past: Any) -> tuple[Any, ...]:
            cache = DynamicCache([(past[i], past[i + 1]) for i in range(0, len(past), 2)])
            out = self.model(input_ids=input_ids, attention_mask=attention_mask,
                             position_ids=position_ids, cache=cache, use_cache=True)
            present = [t for layer in out.past_key_values.layers
                       for t in (layer.keys, layer.values)]
            return (out.logits, *present)

    return CacheWrapper().eval()


def _example(info: HfModel) -> tuple[Any, ...]:
    """Traced inputs: ``_EXAMPLE_SEQ`` tokens after a past of ``_EXAMPLE_PAST`` positions
    (each past tensor its own: tensors passed twice would be exported as one input)."""
    import torch

    seq, past = _EXAMPLE_SEQ, _EXAMPLE_PAST
    generator = torch.Generator().manual_seed(0)
    cache = [torch.randn(1, info.num_key_value_heads, past, info.head_dim, generator=generator)
             for _ in range(2 * info.num_hidden_layers)]
    return (torch.arange(3, 3 + seq)[None], torch.ones(1, past + seq, dtype=torch.int64),
            torch.arange(past, past + seq)[None], *cache)


def _dynamo(wrapper: Any, args: tuple[Any, ...], path: Path, external: bool) -> int:
    """``torch.onnx.export(dynamo=True)`` with every length ``Dim.DYNAMIC`` (torch.export
    works out that the mask's and the present's are ``past + seq``)."""
    import torch

    dynamic = torch.export.Dim.DYNAMIC
    layers = (len(args) - 3) // 2
    torch.onnx.export(
        wrapper, args, str(path), dynamo=True, opset_version=DYNAMO_OPSET,
        external_data=external, input_names=input_names(layers),
        output_names=output_names(layers),
        dynamic_shapes=({1: dynamic}, {1: dynamic}, {1: dynamic},
                        tuple({2: dynamic} for _ in args[3:])))
    return DYNAMO_OPSET


def _legacy(wrapper: Any, args: tuple[Any, ...], path: Path, external: bool) -> int:
    """``torch.onnx.export(dynamo=False)`` (TorchScript) with ``dynamic_axes``."""
    import torch

    layers = (len(args) - 3) // 2
    inputs, outputs = input_names(layers), output_names(layers)
    axes = {"input_ids": {1: SEQ.name}, "attention_mask": {1: TOTAL.name},
            "position_ids": {1: SEQ.name}, "logits": {1: SEQ.name},
            **{name: {2: PAST.name} for name in inputs[3:]},
            **{name: {2: TOTAL.name} for name in outputs[1:]}}
    torch.onnx.export(wrapper, args, str(path), dynamo=False, opset_version=LEGACY_OPSET,
                      input_names=inputs, output_names=outputs, dynamic_axes=axes)
    return LEGACY_OPSET


_STRATEGIES: tuple[tuple[str, Callable[..., int]], ...] = (
    ("torch.onnx dynamo", _dynamo), ("torch.onnx TorchScript (legacy)", _legacy))


def _finish(path: Path, info: HfModel, external: bool) -> None:
    """Name the dynamic dimensions ``seq``, ``past`` and ``past + seq`` (the dynamo
    exporter's are ``s70``, ``s69 + s70``, ``s70 + s69``...; the outputs' batch is 1), check
    the names are the contract's, and pass ``onnx.checker``."""
    import onnx

    model = onnx.load(str(path), load_external_data=False)
    layers = info.num_hidden_layers
    got = ([i.name for i in model.graph.input], [o.name for o in model.graph.output])
    if got != (input_names(layers), output_names(layers)):
        raise ConversionError(f"{path.name}: the exporter wrote inputs {got[0]} and outputs "
                              f"{got[1]}, not the cache's names")
    int64, cache = "int64", (None, None, PAST, None)
    name_onnx_dims(model, [TensorSpec("input_ids", (1, None), int64, (None, SEQ)),
                           TensorSpec("attention_mask", (1, None), int64, (None, TOTAL)),
                           TensorSpec("position_ids", (1, None), int64, (None, SEQ)),
                           *(TensorSpec(n, None, "float32", cache)
                             for n in input_names(layers)[3:])])
    for value in model.graph.output:
        for i, axis in enumerate(value.type.tensor_type.shape.dim):
            if sorted(axis.dim_param.replace("+", " ").split()) == [PAST.name, SEQ.name]:
                axis.dim_param = TOTAL.name  # "seq + past" as well
            elif i == 0 and axis.dim_param:  # the TorchScript exporter's "MatMullogits_dim_0"
                axis.dim_value = 1  # the batch: 1 in every input
    if external:  # one data file beside it, whatever the exporter wrote
        onnx.load_external_data_for_model(model, str(path.parent))
        path.with_name(path.name + ".data").unlink(missing_ok=True)  # onnx.save appends
        onnx.save(model, str(path), save_as_external_data=True, all_tensors_to_one_file=True,
                  location=path.name + ".data")
    else:
        onnx.save(model, str(path))
    onnx.checker.check_model(str(path))


def quantize(path: Path, mode: Quantize, external: bool = False) -> str:
    """Rewrite ``path``'s constant-weight MatMuls as ``MatMulNBits`` of ``BITS[mode]`` bits,
    and for int4 its constant-table Gathers as ``GatherBlockQuantized`` (``OPS``; ONNX Runtime's
    weight-only quantizer, round to nearest, symmetric; int4 weights raise the opset to 21).

    Returns:
        What was quantized, as a clause of the route's detail.

    Raises:
        ConversionError: The quantizer failed or changed the graph's inputs or outputs.
    """
    import onnx
    from onnxruntime.quantization.matmul_nbits_quantizer import MatMulNBitsQuantizer

    model = onnx.load(str(path))
    names = ([i.name for i in model.graph.input], [o.name for o in model.graph.output])
    matmuls = sum(n.op_type == "MatMul" for n in model.graph.node)
    try:
        quantizer = MatMulNBitsQuantizer(model, bits=BITS[mode], block_size=BLOCKS[mode],
                                         is_symmetric=True, op_types_to_quantize=OPS[mode],
                                         quant_axes=(("MatMul", 0), ("Gather", 1)))
        quantizer.process()
    except Exception as e:  # noqa: BLE001 - the quantizer raises asserts, ValueError...
        raise ConversionError(f"{path.name}: ONNX Runtime's MatMulNBitsQuantizer failed "
                              f"({_first_line(e)})") from None
    done = quantizer.model.model
    if ([i.name for i in done.graph.input], [o.name for o in done.graph.output]) != names:
        raise ConversionError(f"{path.name}: quantizing renamed the graph's inputs or outputs")
    count = sum(n.op_type == "MatMulNBits" for n in done.graph.node)
    tables = sum(n.op_type == "GatherBlockQuantized" for n in done.graph.node)
    path.with_name(path.name + ".data").unlink(missing_ok=True)
    if external:
        onnx.save(done, str(path), save_as_external_data=True, all_tensors_to_one_file=True,
                  location=path.name + ".data")
    else:
        onnx.save(done, str(path))
    embedding = f", {tables} embedding table -> GatherBlockQuantized" if tables else ""
    return (f"; {count} of {matmuls} MatMuls -> MatMulNBits{embedding} (onnxruntime "
            f"MatMulNBitsQuantizer: int{BITS[mode]} weights, symmetric, a scale per output "
            f"channel and {BLOCKS[mode]} inputs; float activations)")


def _first_line(error: BaseException) -> str:
    """An exception's type and the first line of its message that says something."""
    lines = [line.strip() for line in str(error).splitlines() if line.strip()]
    return f"{type(error).__name__}: {lines[0] if lines else ''}"[:300]
