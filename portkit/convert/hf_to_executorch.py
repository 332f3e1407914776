"""A Hugging Face causal-LM directory -> an ExecuTorch program (``.pte``) with a static key/value
cache, through transformers' ExecuTorch recipe (``transformers.integrations.executorch``:
``TorchExportableModuleForDecoderOnlyLM``), lowered with the XNNPACK partitioner.

The program's ``forward(input_ids [1, T] int64, cache_position [T] int64) -> logits [1, T,
vocab]`` keeps the cache as mutable buffers (``key_cache_N``/``value_cache_N``, ``[1,
kv_heads, max_seq, head_dim]``): each call writes its tokens at ``cache_position`` and attends
to every position before them, so a prefill from position 0 starts over whatever the cache
held. ``T`` takes any length from 1 to ``max_seq - 1`` (a prefill in one call); where the
model does not export with a dynamic length, the program takes one token (``T = 1``) and a
prefill runs token by token. Sliding-window families (Gemma 2/3) get the recipe's hybrid
cache, whose sliding layers keep all ``max_seq`` positions and apply the window in the mask.

``--quantize dynamic`` or ``int4`` quantizes the model with torchao before the export, as
optimum-executorch's ``8da8w`` and ``8da4w`` recipes do (``quantize_`` with
``Int8DynamicActivationIntxWeightConfig``): every linear layer's weight int8 with
one scale per output channel, or int4 with one per block of 32 inputs, symmetric; its
activations int8 per token on the fly, XNNPACK's kernels for those patterns (``qd8-f32-qc8w``,
``qd8-f32-qb4w``) running it.

Beside ``forward`` the program holds the constant methods ExecuTorch's LLM runner reads
(``get_max_seq_len``, ``get_vocab_size``, ``enable_dynamic_shape``, ``get_eos_ids``...);
``runtimes/executorch.py`` reads the cache length from ``get_max_seq_len``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from portkit.errors import ConversionError
from portkit.io import atomic_replace, staging_dir
from portkit.options.generation import Export
from portkit.policies import Quantize

TOOL = "transformers.integrations.executorch"
# The example prompt length the dynamic export traces (above 1, so it isn't specialised).
_EXAMPLE_LENGTH = 3


def export_pte(src: Path, dst: Path, export: Export) -> str:
    """Export the causal LM in ``src`` to ``dst`` (a ``.pte``), written atomically.

    Args:
        src: A transformers causal-LM directory (``config.json`` + ``*.safetensors``), checked
            by the caller (``formats.hf.read_hf``).
        dst: The ``.pte`` to write; staged beside it, then moved into place.
        export: ``max_seq`` is the static cache's length (prompt and generated tokens
            together); ``trust_model`` lets the directory's own modelling code run;
            ``quantize`` quantizes the linear layers first (torchao). ``prefill`` is not
            used: the program takes any prompt length below ``max_seq``.

    Returns:
        A one-line account of what was exported.

    Raises:
        ConversionError: The model did not export with its cache, or ExecuTorch could not
            lower it (the error named).
    """
    model = _load(src, export)
    quantized = _quantize(src, model, export.quantize) if export.quantize is not None else ""
    program, wrapper, dynamic, why_not = _export(src, model, export)
    data = _lower(src, program, _metadata(model, export, dynamic))
    dst = Path(dst)
    with staging_dir(dst) as stage:
        staged = stage / dst.name
        staged.write_bytes(data)
        atomic_replace(staged, dst)
    prefill = (f"prefill of 1..{export.max_seq - 1} tokens in one call" if dynamic else
               f"one token a call, a prefill token by token ({why_not})")
    return (f"{quantized}{TOOL} {wrapper} (static cache of {export.max_seq} positions as "
            f"mutable buffers, {prefill}) -> torch.export -> to_edge_transform_and_lower "
            "(XnnpackPartitioner) -> to_executorch")


def _load(src: Path, export: Export) -> Any:
    """The float32 model in ``src``, set up for the recipe's static cache (batch 1)."""
    import torch
    from transformers import AutoModelForCausalLM

    model = AutoModelForCausalLM.from_pretrained(
        src, dtype=torch.float32, trust_remote_code=export.trust_model,
        use_safetensors=True).eval()
    model.config.get_text_config().use_cache = True
    model.generation_config.use_cache = True
    model.generation_config.cache_implementation = "static"
    model.generation_config.cache_config = {"batch_size": 1, "max_cache_len": export.max_seq}
    _explicit_tanh_gelu(model)
    return model


def _explicit_tanh_gelu(model: Any) -> int:
    """Write the tanh-approximated GELU (Gemma's activation) out as its formula: XNNPACK lowers
    ``gelu(approximate="tanh")`` as the exact erf GELU, 4.7e-4 off per op and 2e-4 of the
    logits' scale on a Gemma (benchmarks/results/generation_policy.json), while its ``tanh`` is
    within 2.4e-7. Returns how many activations were rewritten."""
    import torch
    from transformers.activations import GELUTanh

    count = 0
    for module in model.modules():
        if isinstance(module, GELUTanh):
            module.act = module._gelu_tanh_python
            count += 1
        elif isinstance(module, torch.nn.GELU) and module.approximate == "tanh":
            module.forward = GELUTanh(use_gelu_tanh_python=True).forward  # type: ignore[method-assign]
            count += 1
    return count


def _quantize(src: Path, model: Any, mode: Quantize) -> str:
    """Quantize ``model``'s linear layers in place with torchao (``mode``: ``dynamic`` for
    int8 weights, ``int4``).

    Returns:
        What was quantized, as the start of the route's detail.

    Raises:
        ConversionError: torchao refused the model.
    """
    import torch
    from torchao.quantization import Int8DynamicActivationIntxWeightConfig, quantize_
    from torchao.quantization.granularity import PerAxis, PerGroup

    linears = sum(isinstance(m, torch.nn.Linear) for m in model.modules())
    bits, granularity, scales = ((4, PerGroup(32), "block of 32 inputs") if mode is Quantize.INT4
                                 else (8, PerAxis(0), "output channel"))
    config = Int8DynamicActivationIntxWeightConfig(weight_dtype=getattr(torch, f"int{bits}"),
                                                   weight_granularity=granularity)
    try:
        quantize_(model, config)
    except Exception as e:  # noqa: BLE001 - torchao raises asserts, ValueError...
        raise ConversionError(f"{src}: torchao could not quantize the model "
                              f"({_first_line(e)})") from None
    return (f"torchao quantize_ Int8DynamicActivationIntxWeightConfig ({linears} linear "
            f"layers: int{bits} weights, symmetric, a scale per {scales}; activations int8 "
            f"per token on the fly) -> ")


def _export(src: Path, model: Any, export: Export) -> tuple[Any, str, bool, str]:
    """``model`` wrapped with its cache and exported: with a dynamic prompt length if it
    exports that way, else for one token a call.

    Returns:
        The ExportedProgram, the recipe's wrapper (``TorchExportableModuleWithStaticCache`` or
        ``...WithHybridCache``), whether the length is dynamic, and why not (empty if it is).

    Raises:
        ConversionError: Neither way exported (both errors named).
    """
    import torch
    from transformers.integrations.executorch import TorchExportableModuleForDecoderOnlyLM

    try:
        module = TorchExportableModuleForDecoderOnlyLM(model, batch_size=1,
                                                       max_cache_len=export.max_seq)
    except Exception as e:  # noqa: BLE001 - the recipe raises ValueError, AssertionError...
        raise ConversionError(f"{src}: {TOOL} can't wrap this model with a static cache "
                              f"({_first_line(e)})") from None
    wrapper = type(module.model).__name__
    length = torch.export.Dim("seq", min=1, max=export.max_seq - 1)
    # (prompt length traced, dynamic shapes): a dynamic length first, one token if that fails
    ways = ((min(_EXAMPLE_LENGTH, export.max_seq - 1),
             {"input_ids": {1: length}, "cache_position": {0: length}}), (1, None))
    errors = []
    for n, shapes in ways:
        ids = torch.zeros((1, n), dtype=torch.long)
        try:
            with torch.no_grad():
                program = module.export(input_ids=ids, cache_position=torch.arange(n),
                                        dynamic_shapes=shapes, strict=True)
        except Exception as e:  # noqa: BLE001 - torch.export raises anything
            errors.append(f"{'dynamic length' if shapes else 'one token'}: {_first_line(e)}")
            continue
        return program, wrapper, shapes is not None, "; ".join(errors)
    raise ConversionError(f"{src}: torch.export failed on {TOOL}'s {wrapper} "
                          f"({'; '.join(errors)})")


def _metadata(model: Any, export: Export, dynamic: bool) -> dict[str, Any]:
    """The constant methods ExecuTorch's LLM runner reads from a program."""
    config = model.config.get_text_config()
    meta: dict[str, Any] = {
        "get_max_seq_len": export.max_seq, "get_max_context_len": export.max_seq,
        "get_vocab_size": int(config.vocab_size), "get_max_batch_size": 1,
        "use_kv_cache": True, "use_sdpa_with_kv_cache": False,
        "enable_dynamic_shape": dynamic}
    bos = model.generation_config.bos_token_id
    if bos is None:
        bos = getattr(config, "bos_token_id", None)
    if isinstance(bos, int):
        meta["get_bos_id"] = bos
    eos = model.generation_config.eos_token_id
    if eos is None:
        eos = getattr(config, "eos_token_id", None)
    eos = [eos] if isinstance(eos, int) else list(eos or [])
    if eos:
        meta["get_eos_ids"] = [int(e) for e in eos]
    return meta


def _lower(src: Path, program: Any, metadata: dict[str, Any]) -> bytes:
    """The ``.pte`` bytes of ``program`` lowered to XNNPACK, with ``metadata`` as constant
    methods beside ``forward``."""
    from executorch.backends.xnnpack.partition.xnnpack_partitioner import XnnpackPartitioner
    from executorch.exir import to_edge_transform_and_lower

    try:
        edge = to_edge_transform_and_lower(program, partitioner=[XnnpackPartitioner()],
                                           constant_methods=metadata)
        return bytes(edge.to_executorch().buffer)
    except Exception as e:  # noqa: BLE001 - lowering raises anything (asserts, RuntimeError)
        raise ConversionError(f"{src}: ExecuTorch could not lower the exported decoder to "
                              f"XNNPACK ({_first_line(e)})") from None


def _first_line(e: BaseException) -> str:
    """``e`` as its type and first line (at most 300 characters)."""
    return f"{type(e).__name__}: {(str(e).strip().splitlines() or [''])[0][:300]}"
