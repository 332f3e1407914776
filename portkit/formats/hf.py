"""What a Hugging Face model directory holds, read from its ``config.json`` and its file names:
the architecture, the task it is for, the cache's shape (layers, key/value heads, head size,
sliding window), the weight files and whether its modelling code ships with it.

Nothing here imports torch or transformers: a directory that can't be loaded (pickled weights,
no weights, code that would run without ``--trust-model``) is refused before either is.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from portkit.errors import UnsafeModelError, UsageError

TEXT_GENERATION = "text-generation"
_CAUSAL_LM = "ForCausalLM"
# config.json names of the same field across families (GPT-2 and its kin keep the old ones).
_ALIASES = {
    "num_hidden_layers": ("num_hidden_layers", "n_layer", "num_layers"),
    "num_attention_heads": ("num_attention_heads", "n_head", "num_heads"),
    "hidden_size": ("hidden_size", "n_embd", "d_model"),
}
_TOKENIZER_FILES = ("tokenizer.json", "tokenizer.model", "tokenizer_config.json")
_CONVERT = ("python -c \"from transformers import AutoModelForCausalLM as M; "
            "M.from_pretrained('{0}').save_pretrained('{0}', safe_serialization=True)\"")


@dataclass(frozen=True)
class HfModel:
    """A transformers model directory, as its files describe it.

    Attributes:
        path: The directory.
        model_type: ``config.json``'s ``model_type`` (``llama``, ``gemma2``...).
        architectures: Its ``architectures`` (``LlamaForCausalLM``...).
        task: ``text-generation``: guessed from a ``*ForCausalLM`` architecture, or said by the
            caller.
        num_hidden_layers: Decoder layers (one key/value cache each).
        num_key_value_heads: Key/value heads per layer (fewer than the query heads under
            grouped-query attention).
        head_dim: Each head's size: the config's ``head_dim``, else ``hidden_size`` over the
            attention heads.
        vocab_size: Logits per position.
        sliding_window: The sliding-window layers' window, None where every layer sees all.
        weights: The ``*.safetensors`` files, sorted.
        has_tokenizer: Whether tokenizer files are there (``tokenizer.json``...).
        needs_code: Whether the config names modelling code of its own (``auto_map``), which
            runs only with ``--trust-model``.
    """

    path: Path
    model_type: str
    architectures: tuple[str, ...]
    task: str
    num_hidden_layers: int
    num_key_value_heads: int
    head_dim: int
    vocab_size: int
    sliding_window: int | None
    weights: tuple[Path, ...]
    has_tokenizer: bool
    needs_code: bool


def read_hf(path: Path, task: str | None = None) -> HfModel:
    """The ``HfModel`` of the directory at ``path``.

    Args:
        path: A directory ``save_pretrained`` wrote (``config.json`` and ``*.safetensors``).
        task: ``text-generation`` to load it as a causal language model whatever its
            ``architectures`` say; None to guess from them.

    Returns:
        What its config and files say.

    Raises:
        UsageError: Not a directory, no (readable) ``config.json``, pickled weights only, no
            weights, a field the cache needs missing, or not a causal language model.
    """
    path = Path(path)
    if not path.is_dir():
        raise UsageError(f"{path}: not a directory; pass the Hugging Face model directory "
                         "(config.json and *.safetensors)")
    config = _config(path)
    architectures = tuple(str(a) for a in config.get("architectures") or ())
    if task is None and not any(a.endswith(_CAUSAL_LM) for a in architectures):
        raise UsageError(
            f"{path / 'config.json'}: architectures {list(architectures)} hold no "
            f"*{_CAUSAL_LM}, so it is not a causal language model portkit can generate with; "
            f"if it is one, pass --task {TEXT_GENERATION}")
    if task not in (None, TEXT_GENERATION):
        raise UsageError(f"--task {task}: a Hugging Face directory converts as "
                         f"--task {TEXT_GENERATION} only")
    text = config.get("text_config") or config  # multimodal configs nest the decoder's
    layers, heads = _field(path, text, "num_hidden_layers"), _field(path, text,
                                                                      "num_attention_heads")
    head_dim = text.get("head_dim") or _field(path, text, "hidden_size") // heads
    window = text.get("sliding_window")
    return HfModel(
        path=path, model_type=str(config.get("model_type", "")), architectures=architectures,
        task=TEXT_GENERATION, num_hidden_layers=layers,
        num_key_value_heads=int(text.get("num_key_value_heads") or heads),
        head_dim=int(head_dim), vocab_size=_field(path, text, "vocab_size"),
        sliding_window=int(window) if window else None, weights=_weights(path),
        has_tokenizer=any((path / name).is_file() for name in _TOKENIZER_FILES),
        needs_code="auto_map" in config)


def check_trust(model: HfModel, trust_model: bool) -> None:
    """Refuse a directory whose config runs its own modelling code, unless trusted.

    Args:
        model: The directory as ``read_hf`` read it.
        trust_model: ``--trust-model`` was given.

    Raises:
        UnsafeModelError: Its config has ``auto_map`` and ``trust_model`` is false.
    """
    if model.needs_code and not trust_model:
        raise UnsafeModelError(
            f"{model.path / 'config.json'}: its auto_map names modelling code shipped in the "
            "directory, which runs when loaded; if you trust it, pass --trust-model")


def _config(path: Path) -> dict[str, Any]:
    """``config.json`` as a dict."""
    file = path / "config.json"
    if not file.is_file():
        raise UsageError(f"{path}: no config.json; pass the directory save_pretrained wrote "
                         "(config.json beside the *.safetensors weights)")
    try:
        config = json.loads(file.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
        raise UsageError(f"{file}: not readable JSON ({e}); re-save the model") from None
    if not isinstance(config, dict):
        raise UsageError(f"{file}: holds a {type(config).__name__}, not a config object; "
                         "re-save the model")
    return config


def _field(path: Path, config: dict[str, Any], name: str) -> int:
    """The positive integer ``config`` holds for ``name`` (or one of its aliases)."""
    for key in _ALIASES.get(name, (name,)):
        value = config.get(key)
        if isinstance(value, int) and not isinstance(value, bool) and value > 0:
            return value
    raise UsageError(f"{path / 'config.json'}: no positive integer {name}; the cache's shape "
                     "can't be known without it (re-save the model with its full config)")


def _weights(path: Path) -> tuple[Path, ...]:
    """The directory's ``*.safetensors``; refuses pickled weights and no weights."""
    found = tuple(sorted(path.glob("*.safetensors")))
    if found:
        return found
    pickled = sorted(p.name for p in path.glob("*.bin"))
    if pickled:
        raise UsageError(
            f"{path / pickled[0]}: pickled weights; portkit loads only safetensors (a pickle "
            f"runs code when loaded): convert with {_CONVERT.format(path)}")
    raise UsageError(f"{path}: no weights (*.safetensors) beside config.json; save the model "
                     "with save_pretrained(DIR, safe_serialization=True)")
