"""The source side of generation: a Hugging Face directory read without a framework
(``formats.hf``), sniffed as one, and run as a ``Decoder`` (``runtimes.torch``) that generates
what ``model.generate`` does, step by step, with its own cache.

Every family of ``fixtures.decoders``, with a 13-token prompt and 16 steps: past the sliding
window (8) of Gemma 2 and 3.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest

from portkit.errors import InvalidModelError, UnsafeModelError, UsageError
from portkit.fixtures.decoders import FAMILIES, WINDOW, save_decoder
from portkit.formats import Format, sniff
from portkit.formats.hf import TEXT_GENERATION, check_trust, read_hf
from portkit.options.generation import Export
from portkit.runtimes.decoding import generate, load_decoder

PROMPT = np.arange(3, 16, dtype=np.int64)  # 13 tokens: with 16 steps, past an 8-token window
STEPS = 16
# Cached and uncached float32 forwards differ by rounding only (seen: 3e-6..1.2e-5 of 5-7).
RELATIVE = 1e-4


@pytest.fixture(scope="module")
def dirs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """Each family's tiny model directory (seed 0), made once for this module."""
    base = tmp_path_factory.mktemp("decoders")
    return {family: save_decoder(family, base / family) for family in FAMILIES}


def _reference(folder: Path) -> object:
    import torch
    from transformers import AutoModelForCausalLM

    model = AutoModelForCausalLM.from_pretrained(folder, dtype=torch.float32).eval()
    model.generation_config.eos_token_id = None  # all 16 steps, even past a random </s>
    return model


@pytest.mark.parametrize("family", sorted(FAMILIES))
def test_the_decoder_generates_what_transformers_does(dirs: dict[str, Path],
                                                      family: str) -> None:
    import torch

    got = generate(load_decoder(dirs[family], Format.HUGGINGFACE), PROMPT, STEPS)
    model = _reference(dirs[family])
    with torch.no_grad():
        ids = torch.from_numpy(PROMPT)[None]
        expected = model.generate(ids, max_new_tokens=STEPS, do_sample=False)[0, PROMPT.size:]
        # every step's logits from scratch: one forward over the prompt and the tokens fed
        fed = torch.tensor([[*PROMPT.tolist(), *got.tokens[:-1]]])
        full = model(fed, use_cache=True)
    assert got.tokens == tuple(expected.tolist()), family
    assert got.prompt == tuple(PROMPT.tolist())
    assert got.logits.shape == (STEPS, 256) and got.logits.dtype == np.float32
    want = full.logits[0, PROMPT.size - 1:].numpy()
    scale = float(np.abs(want).max())
    assert np.abs(got.logits - want).max() <= RELATIVE * scale, family
    # the cache holds what a forward over the same positions leaves: all 28 positions, or a
    # sliding-window layer's last window - 1 (7)
    kinds = getattr(model.config, "layer_types", None) or ["full_attention"] * 2
    assert len(got.cache) == len(full.cache.layers) == 2
    for kind, (keys, values), layer in zip(kinds, got.cache, full.cache.layers):
        positions = WINDOW - 1 if kind == "sliding_attention" else fed.shape[1]
        assert keys.shape == values.shape == (2, positions, read_hf(dirs[family]).head_dim)
        assert keys.dtype == values.dtype == np.float32
        for mine, theirs in ((keys, layer.keys), (values, layer.values)):
            theirs = theirs[0].numpy()
            assert np.abs(mine - theirs).max() <= RELATIVE * max(np.abs(theirs).max(), 1.0)


def test_a_prefill_starts_over(dirs: dict[str, Path]) -> None:
    decoder = load_decoder(dirs["gemma2"], Format.HUGGINGFACE)
    first = generate(decoder, PROMPT, 4)
    again = generate(decoder, PROMPT, 4)
    assert decoder.max_seq is None  # an eager dynamic cache has no fixed length
    assert first.tokens == again.tokens
    np.testing.assert_array_equal(first.logits, again.logits)
    assert [k.shape[1] for k, _ in again.cache] == [WINDOW - 1, PROMPT.size + 3]


@pytest.mark.parametrize("family", sorted(FAMILIES))
def test_a_directory_reads_without_a_framework(dirs: dict[str, Path], family: str) -> None:
    model = read_hf(dirs[family])
    assert sniff(dirs[family]) is Format.HUGGINGFACE
    assert model.task == TEXT_GENERATION and model.architectures[0].endswith("ForCausalLM")
    assert (model.num_hidden_layers, model.num_key_value_heads, model.vocab_size) == (2, 2, 256)
    assert model.head_dim == 16  # 64 / 4 heads, or the config's own head_dim
    assert model.sliding_window == (WINDOW if family.startswith("gemma") else None)
    assert [p.name for p in model.weights] == ["model.safetensors"]
    assert model.has_tokenizer and not model.needs_code
    assert model.model_type


def _copy(source: Path, folder: Path, config: dict | None = None,
          files: tuple[str, ...] = ("model.safetensors",)) -> Path:
    """``folder`` with ``source``'s config.json (updated by ``config``) and ``files`` (empty)."""
    folder.mkdir()
    settings = json.loads((source / "config.json").read_text())
    (folder / "config.json").write_text(json.dumps({**settings, **(config or {})}))
    for name in files:
        (folder / name).write_bytes(b"")
    return folder


def test_a_directory_without_config_is_refused(tmp_path: Path) -> None:
    with pytest.raises(UsageError, match="no config.json"):
        read_hf(tmp_path)
    with pytest.raises(InvalidModelError, match="not a SavedModel.*nor a Hugging Face"):
        sniff(tmp_path)
    (tmp_path / "config.json").write_text("{not json")
    with pytest.raises(UsageError, match="config.json: not readable JSON"):
        read_hf(tmp_path)
    with pytest.raises(UsageError, match="not a directory"):
        read_hf(tmp_path / "config.json")


def test_pickled_weights_are_refused(dirs: dict[str, Path], tmp_path: Path) -> None:
    folder = _copy(dirs["llama"], tmp_path / "bin", files=("pytorch_model.bin",))
    with pytest.raises(UsageError, match=r"pytorch_model.bin: pickled weights; portkit loads "
                                         r"only safetensors.*safe_serialization=True"):
        read_hf(folder)
    with pytest.raises(UsageError, match="pickled weights"):
        load_decoder(folder, Format.HUGGINGFACE)


def test_a_directory_without_weights_is_refused(dirs: dict[str, Path], tmp_path: Path) -> None:
    folder = _copy(dirs["llama"], tmp_path / "empty", files=())
    with pytest.raises(UsageError, match=r"no weights \(\*.safetensors\)"):
        read_hf(folder)


def test_a_model_that_is_not_a_causal_lm_needs_the_task(dirs: dict[str, Path],
                                                        tmp_path: Path) -> None:
    folder = _copy(dirs["llama"], tmp_path / "seq",
                   {"architectures": ["LlamaForSequenceClassification"]})
    with pytest.raises(UsageError, match=r"not a causal language model.*--task text-generation"):
        read_hf(folder)
    assert read_hf(folder, task=TEXT_GENERATION).task == TEXT_GENERATION
    with pytest.raises(UsageError, match="--task image-classification"):
        read_hf(folder, task="image-classification")


def test_a_config_without_the_cache_shape_is_refused(dirs: dict[str, Path],
                                                     tmp_path: Path) -> None:
    folder = _copy(dirs["llama"], tmp_path / "partial", {"num_hidden_layers": None})
    with pytest.raises(UsageError, match="no positive integer num_hidden_layers"):
        read_hf(folder)


def test_modelling_code_runs_only_when_trusted(dirs: dict[str, Path], tmp_path: Path) -> None:
    folder = _copy(dirs["llama"], tmp_path / "code",
                   {"auto_map": {"AutoModelForCausalLM": "modeling_mine.MyForCausalLM"}})
    model = read_hf(folder)
    assert model.needs_code
    with pytest.raises(UnsafeModelError, match="auto_map.*--trust-model"):
        check_trust(model, trust_model=False)
    check_trust(model, trust_model=True)
    # refused before transformers is asked to import the directory's code
    (folder / "modeling_mine.py").write_text("raise SystemExit('ran untrusted code')\n")
    with pytest.raises(UnsafeModelError, match="--trust-model"):
        load_decoder(folder, Format.HUGGINGFACE, Export(trust_model=False))


def test_a_sharded_directory_lists_every_shard(dirs: dict[str, Path], tmp_path: Path) -> None:
    folder = _copy(dirs["qwen3"], tmp_path / "shards", files=(
        "model-00002-of-00002.safetensors", "model-00001-of-00002.safetensors",
        "model.safetensors.index.json"))
    shutil.copy(dirs["qwen3"] / "tokenizer.json", folder)
    model = read_hf(folder)
    assert [p.name for p in model.weights] == ["model-00001-of-00002.safetensors",
                                               "model-00002-of-00002.safetensors"]
    assert model.has_tokenizer
