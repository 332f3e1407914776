"""A Hugging Face causal-LM directory -> one TFLite file with ``prefill_<len>`` and ``decode``
signatures, through litert-torch's generative exporter (``litert_torch.generative.export_hf``):
the layout the LiteRT LLM runtime loads.

The file is float32 (the exporter's default int8 weight recipe is turned off) unless
``--quantize dynamic`` or ``int4`` asks for ai-edge-quantizer's ``dynamic_wi8_afp32`` or
``dynamic_wi4b32_afp32`` recipe, which the exporter applies to the whole file (``RECIPES``): the
weights of the ops it covers (every fully connected layer) int8 per output channel or int4 per
block of 32 inputs, symmetric, activations quantized on the fly by XNNPACK's kernels.
It holds no state: every signature takes the cache as inputs ``kv_cache_k_N``
``[1, kv_heads, cache, head_dim]`` and ``kv_cache_v_N`` ``[1, kv_heads, head_dim, cache]``
(values transposed) and returns it updated under the same names, beside
``tokens`` ``[1, len]`` int32, ``input_pos`` ``[len]`` int32 and an additive float ``mask``
``[1, 1, len, cache]`` the caller builds. Only ``decode`` returns logits: a prefill writes the
cache, and the prompt's last token is decoded (``runtimes/tflite.py``: ``LiteRtDecoder``). The
exporter re-authors attention and the cache per model type (``_CAUSAL_TEXT_MODEL_KEYS`` in its
``core/exportable_module.py``); the families portkit tests are Llama, Qwen2, Qwen3, Gemma 2/3
(sliding window in-graph) and Phi-3.

The exporter loads the directory's tokenizer whatever it exports (for its pad id and the
``.litertlm`` bundle, which portkit does not write); a directory without one it can load is
given a one-token stand-in (the pad id) in a staged view of the directory, since the tokenizer
is not part of the ``.tflite``.
"""

from __future__ import annotations

import contextlib
import io
import json
import os
from pathlib import Path

from portkit.errors import ConversionError
from portkit.io import atomic_replace, staging_dir
from portkit.options.generation import Export
from portkit.policies import Quantize

TOOL = "litert_torch.generative.export_hf"
# --quantize mode -> the exporter's quantization_recipe (an ai-edge-quantizer recipe name) and
# what it does to the weights.
RECIPES = {Quantize.DYNAMIC: ("dynamic_wi8_afp32", "int8 weights per output channel"),
           Quantize.INT4: ("dynamic_wi4b32_afp32", "int4 weights per block of 32 inputs")}


def export_tflite(src: Path, dst: Path, export: Export) -> str:
    """Export the causal LM in ``src`` to ``dst`` (a ``.tflite``), written atomically.

    Args:
        src: A transformers causal-LM directory (``config.json`` + ``*.safetensors``), checked
            by the caller (``formats.hf.read_hf``).
        dst: The ``.tflite`` to write; staged beside it, then moved into place.
        export: ``max_seq`` is the cache length of every signature, ``prefill`` the lengths
            of the ``prefill_<len>`` signatures, ``trust_model`` lets the directory's own
            modelling code run, ``quantize`` picks the recipe (``RECIPES``).

    Returns:
        A one-line account of what was exported.

    Raises:
        ConversionError: The exporter failed (its error and the end of its log), or wrote no
            ``model.tflite`` (``model_quantized.tflite`` when quantizing).
    """
    from litert_torch.generative.export_hf import export as litert_export

    dst = Path(dst)
    with staging_dir(dst) as stage:
        source, stand_in = _with_tokenizer(Path(src), stage / "source")
        out = stage / "out"
        recipe, weights = RECIPES.get(export.quantize, ("none", "float32"))
        log = io.StringIO()
        try:
            with contextlib.redirect_stdout(log):
                litert_export.export(
                    str(source), str(out), prefill_lengths=list(export.prefill),
                    cache_length=export.max_seq, quantization_recipe=recipe,
                    bundle_litert_lm=False, keep_temporary_files=True,
                    trust_remote_code=export.trust_model)
        except Exception as e:  # noqa: BLE001 - the exporter raises anything (NotImplementedError...)
            why = (str(e).strip().splitlines() or [""])[0]
            tail = " | ".join(log.getvalue().strip().splitlines()[-3:])
            raise ConversionError(
                f"{src}: {TOOL} failed ({type(e).__name__}: {why})"
                + (f"; its log ended: {tail}" if tail else "")) from None
        # The exporter writes the float file, then the quantized one beside it.
        model = out / ("model.tflite" if export.quantize is None else "model_quantized.tflite")
        if not model.is_file():
            raise ConversionError(f"{src}: {TOOL} wrote no {model.name} (it wrote "
                                  f"{', '.join(sorted(p.name for p in out.iterdir()))})")
        atomic_replace(model, dst)
    lengths = ", ".join(f"prefill_{n}" for n in export.prefill)
    if export.quantize is not None:
        weights = (f"ai-edge-quantizer {recipe}: {weights}, symmetric, float activations "
                   "(int8 on the fly)")
    tokenizer = ", a stand-in tokenizer (the directory has none)" if stand_in else ""
    return (f"{TOOL}: {lengths} and decode signatures, cache {export.max_seq} positions as "
            f"inputs/outputs, {weights}{tokenizer}")


def _with_tokenizer(src: Path, view: Path) -> tuple[Path, bool]:
    """``src`` if transformers loads a tokenizer from it; else ``view``: its files linked in a
    new folder beside a one-token tokenizer whose pad id is the config's (0 if it has none).

    Returns:
        The directory to export and whether it is the stand-in view.
    """
    from tokenizers import Tokenizer, models
    from transformers import AutoTokenizer, PreTrainedTokenizerFast

    try:
        AutoTokenizer.from_pretrained(src)
        return src, False
    except (OSError, ValueError, TypeError):
        pass
    view.mkdir()
    for entry in src.iterdir():
        os.symlink(entry.absolute(), view / entry.name)
    pad = json.loads((src / "config.json").read_text(encoding="utf-8")).get("pad_token_id")
    pad = pad if isinstance(pad, int) and pad >= 0 else 0
    core = Tokenizer(models.WordLevel({"<pad>": pad}, unk_token="<pad>"))
    PreTrainedTokenizerFast(tokenizer_object=core, pad_token="<pad>").save_pretrained(view)
    return view, True
