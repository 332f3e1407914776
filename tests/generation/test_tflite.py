"""A Hugging Face decoder directory -> TFLite (litert-torch's generative exporter) and its
LiteRT decoder: prefill/decode signatures, the cache fed back, the same greedy tokens and
logits as transformers' own ``generate``."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from portkit.convert.hf_to_tflite import _with_tokenizer, export_tflite
from portkit.errors import ConversionError, UsageError
from portkit.fixtures.decoders import FAMILIES, save_decoder
from portkit.formats import Format
from portkit.options.generation import Export
from portkit.runtimes.decoding import generate, load_decoder
from portkit.runtimes.tflite import LiteRtDecoder
from tests.generation.conftest import Converted

EXPORT = Export(max_seq=64, prefill=(8, 32))
STEPS = 16
RELATIVE = 1e-4  # of the logits' scale: fp32 kernels in another order, nothing more


def exported(family: str, folder: Path) -> tuple[Path, Path]:
    """``family``'s tiny directory and its TFLite export (cache 64, prefill 8 and 32)."""
    src = save_decoder(family, folder / "src")
    dst = folder / f"{family}.tflite"
    export_tflite(src, dst, EXPORT)
    return src, dst


def reference(src: Path, prompt: np.ndarray, steps: int) -> tuple[list[int], np.ndarray]:
    """transformers' greedy tokens and each step's logits after ``prompt``."""
    import torch
    import transformers

    model = transformers.AutoModelForCausalLM.from_pretrained(src, dtype=torch.float32).eval()
    model.generation_config.eos_token_id = None  # all ``steps`` tokens, as ``generate`` runs
    out = model.generate(torch.tensor(prompt)[None], max_new_tokens=steps,
                         do_sample=False, return_dict_in_generate=True, output_logits=True)
    return out.sequences[0, prompt.size:].tolist(), torch.stack(out.logits)[:, 0].numpy()


def check_generation(src: Path, tflite: Path, length: int) -> None:
    """The TFLite decoder's greedy tokens are transformers' and its logits within
    ``RELATIVE`` of their scale at every step, for a prompt of ``length`` ids."""
    prompt = np.arange(3, 3 + length)
    tokens, logits = reference(src, prompt, STEPS)
    got = generate(load_decoder(tflite, Format.TFLITE), prompt, STEPS)
    error = float(np.abs(got.logits - logits).max())
    scale = float(np.abs(logits).max())
    print(f"{tflite.stem} prompt {length}: {sum(a == b for a, b in zip(got.tokens, tokens))}/"
          f"{STEPS} tokens equal, max logit error {error:.1e} of scale {scale:.1f}")
    assert list(got.tokens) == tokens
    assert error <= RELATIVE * scale
    assert len(got.cache) == 2  # layers
    for keys, values in got.cache:
        assert keys.shape == values.shape == (2, length + STEPS - 1, 16)


@pytest.fixture(scope="module")
def llama(llama_converted: Callable[[str], Converted]) -> tuple[Path, Path]:
    """The tiny Llama's TFLite as ``portkit convert`` made it (``conftest``)."""
    c = llama_converted("tflite")
    return c.src, c.artifact


def test_signatures(llama: tuple[Path, Path]) -> None:
    from ai_edge_litert.interpreter import Interpreter

    signatures = Interpreter(model_path=str(llama[1])).get_signature_list()
    assert set(signatures) == {"prefill_8", "prefill_32", "decode"}
    assert "logits" in signatures["decode"]["outputs"]
    decoder = load_decoder(llama[1], Format.TFLITE)
    assert (decoder.max_seq, decoder.vocab) == (64, 256)
    assert not list(llama[1].parent.glob(f".{llama[1].name}.*stage*"))  # staging folder gone


@pytest.mark.parametrize("length", [13, 1, 40])  # 40: prefill_32, then prefill_8 padded
def test_llama_generates_as_transformers(llama: tuple[Path, Path], length: int) -> None:
    check_generation(*llama, length)


def test_cache_is_transformers(llama: tuple[Path, Path]) -> None:
    import torch
    import transformers

    prompt = np.arange(3, 16)
    decoder = load_decoder(llama[1], Format.TFLITE)
    got = generate(decoder, prompt, 4)
    model = transformers.AutoModelForCausalLM.from_pretrained(llama[0]).eval()
    with torch.no_grad():
        cache = model(torch.tensor([*prompt, *got.tokens[:-1]])[None]).past_key_values
    for layer, (keys, values) in zip(cache.layers, got.cache):
        np.testing.assert_allclose(keys, layer.keys[0].numpy(), atol=1e-4)
        np.testing.assert_allclose(values, layer.values[0].numpy(), atol=1e-4)


def test_prefill_through_decode(llama: tuple[Path, Path]) -> None:
    """Where no prefill length fits before the cache's end, the prompt goes through decode
    one token at a time: here none is left to fit, and the generation is the same."""
    prompt = np.arange(3, 16)
    chunked = generate(load_decoder(llama[1], Format.TFLITE), prompt, 8)
    decoder = load_decoder(llama[1], Format.TFLITE)
    decoder._prefills.clear()
    stepped = generate(decoder, prompt, 8)
    assert stepped.tokens == chunked.tokens
    np.testing.assert_allclose(stepped.logits, chunked.logits, atol=1e-4)


def test_full_cache_refused(llama: tuple[Path, Path]) -> None:
    decoder = load_decoder(llama[1], Format.TFLITE)
    with pytest.raises(UsageError, match="64 cache positions"):
        decoder.prefill(np.arange(64) % 200 + 3)
    decoder.prefill(np.arange(63) % 200 + 3)
    decoder.decode(5)
    with pytest.raises(UsageError, match="cache is full at 64"):
        decoder.decode(5)


def test_stand_in_tokenizer(tmp_path: Path) -> None:
    from transformers import AutoTokenizer

    with_one = save_decoder("llama", tmp_path / "with")
    assert _with_tokenizer(with_one, tmp_path / "unused") == (with_one, False)
    without = save_decoder("llama", tmp_path / "without", tokenizer=False)
    view, stand_in = _with_tokenizer(without, tmp_path / "view")
    assert stand_in and (view / "model.safetensors").resolve() == without / "model.safetensors"
    assert AutoTokenizer.from_pretrained(view).pad_token_id == 0  # the config's


def test_exporter_error_is_a_conversion_error(tmp_path: Path) -> None:
    src = save_decoder("llama", tmp_path / "src")
    config = json.loads((src / "config.json").read_text())
    config["rope_parameters"] = {"rope_type": "dynamic", "factor": 2.0, "rope_theta": 10000.0}
    (src / "config.json").write_text(json.dumps(config))
    with pytest.raises(ConversionError, match="export_hf failed"):
        export_tflite(src, tmp_path / "m.tflite", EXPORT)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["src"]  # nothing left behind


class _Signatures:
    """An interpreter stand-in with the signatures of an ordinary (non-LLM) model."""

    def __init__(self, signatures: dict[str, Any]) -> None:
        self._signatures = signatures

    def get_signature_list(self) -> dict[str, Any]:
        return self._signatures


def test_no_decode_signature_refused() -> None:
    plain = _Signatures({"serving_default": {"inputs": ["x"], "outputs": ["y"]}})
    with pytest.raises(UsageError, match="no decode signature .it has serving_default"):
        LiteRtDecoder(plain, Path("model.tflite"))


@pytest.mark.slow
@pytest.mark.parametrize("family", [f for f in FAMILIES if f != "llama"])
def test_family_generates_as_transformers(family: str, tmp_path: Path) -> None:
    src, tflite = exported(family, tmp_path)
    for length in (13, 40):  # beyond Gemma's 8-token window; a chunked prefill
        check_generation(src, tflite, length)
