"""A causal-LM directory -> an ExecuTorch program with a static cache
(``convert/hf_to_executorch.py``), run step by step by ExecuTorch's own runtime and as portkit's
``Decoder`` (``runtimes/executorch.py``): the same greedy tokens as ``model.generate``.

The default part exports the tiny Llama once (about 40 s of CPU: the XNNPACK lowering); the
other families, Gemma 2/3's sliding window among them, are ``slow``.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from portkit.errors import InvalidModelError
from portkit.fixtures.decoders import FAMILIES, save_decoder
from portkit.formats import Format
from portkit.formats.pte import read_program
from portkit.options.generation import Export
from portkit.runtimes.decoding import generate, load_decoder
from tests.generation.conftest import Converted

PROMPT = np.arange(3, 16, dtype=np.int64)  # 13 tokens: with 16 steps, past an 8-token window
STEPS = 16
MAX_SEQ = 64
# XNNPACK's float32 kernels against eager transformers, the generation policy (seen: 8.5e-6 of
# scale for Llama; Gemma's 8.6e-4 came from XNNPACK's erf GELU in place of the tanh one, which
# the exporter now writes out as its formula: 5.7e-7).
RELATIVE = 1e-4


def _export(family: str, folder: Path) -> tuple[Path, str, Any]:
    """``family``'s tiny directory exported to a ``.pte``; its path, the exporter's detail and
    ``model.generate``'s tokens and logits (``[STEPS, vocab]``)."""
    from portkit.convert.hf_to_executorch import export_pte

    src = save_decoder(family, folder / family)
    pte = folder / f"{family}.pte"
    detail = export_pte(src, pte, Export(max_seq=MAX_SEQ))
    return pte, detail, _generated(src)


def _generated(src: Path) -> tuple[tuple[int, ...], np.ndarray]:
    """``model.generate``'s ``STEPS`` tokens after ``PROMPT`` and their logits."""
    import torch
    from transformers import AutoModelForCausalLM

    model = AutoModelForCausalLM.from_pretrained(src, dtype=torch.float32).eval()
    model.generation_config.eos_token_id = None  # all 16 steps, even past a random </s>
    with torch.no_grad():
        out = model.generate(torch.from_numpy(PROMPT)[None], max_new_tokens=STEPS,
                             do_sample=False, output_logits=True, return_dict_in_generate=True)
    tokens = tuple(out.sequences[0, PROMPT.size:].tolist())
    logits = torch.cat(out.logits).numpy()
    return tokens, logits


@pytest.fixture(scope="module")
def llama(llama_converted: Callable[[str], Converted]) -> tuple[Path, str, Any]:
    """The tiny Llama's ``.pte`` as ``portkit convert`` made it (``conftest``; cache 64), its
    detail, and ``model.generate``'s tokens and logits."""
    c = llama_converted("executorch")
    return c.artifact, c.report["route"][0]["detail"], _generated(c.src)


def _run_with_executorch(pte: Path, steps: int) -> tuple[tuple[int, ...], np.ndarray]:
    """Greedy ``steps`` tokens after ``PROMPT``, the program run by ``executorch.runtime``
    itself: the prompt in one call, then one token a call."""
    import torch
    from executorch.runtime import Runtime

    forward = Runtime.get().load_program(pte).load_method("forward")
    out = forward.execute([torch.from_numpy(PROMPT)[None], torch.arange(PROMPT.size)])[0]
    logits = [out[0, -1].numpy().copy()]
    tokens = [int(np.argmax(logits[-1]))]
    for position in range(PROMPT.size, PROMPT.size + steps - 1):
        out = forward.execute([torch.tensor([[tokens[-1]]]), torch.tensor([position])])[0]
        logits.append(out[0, -1].numpy().copy())
        tokens.append(int(np.argmax(logits[-1])))
    return tuple(tokens), np.stack(logits)


def _close(got: np.ndarray, want: np.ndarray) -> None:
    assert got.shape == want.shape
    error, scale = float(np.abs(got - want).max()), float(np.abs(want).max())
    assert error <= RELATIVE * scale, f"max logit error {error:.2g} of scale {scale:.2g}"


def test_executorch_runs_the_program_as_transformers_generates(llama: Any) -> None:
    pte, detail, (tokens, logits) = llama
    got, got_logits = _run_with_executorch(pte, STEPS)
    assert got == tokens
    _close(got_logits, logits)
    assert "prefill of 1..63 tokens in one call" in detail and "XnnpackPartitioner" in detail


def test_the_program_is_forward_with_its_metadata(llama: Any) -> None:
    pte, _, _ = llama
    methods = {m.name: m for m in read_program(pte)}
    assert {"forward", "get_max_seq_len", "get_vocab_size", "enable_dynamic_shape"} <= set(methods)
    forward = methods["forward"]
    assert [(t.sizes, t.dtype, t.bounded) for t in forward.inputs] == [
        ((1, MAX_SEQ - 1), "int64", True), ((MAX_SEQ - 1,), "int64", True)]
    assert forward.outputs[0].sizes == (1, MAX_SEQ - 1, 256)
    assert forward.delegates and all(d.backend == "XnnpackBackend" for d in forward.delegates)


def test_the_decoder_generates_what_transformers_does(llama: Any) -> None:
    pte, _, (tokens, logits) = llama
    decoder = load_decoder(pte, Format.EXECUTORCH)
    assert (decoder.max_seq, decoder.vocab) == (MAX_SEQ, 256)
    got = generate(decoder, PROMPT, STEPS)
    assert got.tokens == tokens
    assert got.logits.dtype == np.float32
    _close(got.logits, logits)
    assert got.cache == []  # the program's mutable buffers stay inside it
    # a second prefill starts over from an empty cache: the same steps again
    again = generate(decoder, PROMPT, STEPS)
    assert again.tokens == tokens
    np.testing.assert_array_equal(again.logits, got.logits)
    # a shorter prompt after a longer run: nothing of the old positions leaks in
    short = generate(decoder, PROMPT[:5], 2)
    fresh = generate(load_decoder(pte, Format.EXECUTORCH), PROMPT[:5], 2)
    np.testing.assert_array_equal(short.logits, fresh.logits)


def test_a_program_that_is_no_decoder_is_refused(tmp_path: Path) -> None:
    import torch
    from executorch.exir import to_edge_transform_and_lower

    program = torch.export.export(torch.nn.Linear(4, 3).eval(), (torch.zeros(1, 4),))
    pte = tmp_path / "linear.pte"
    pte.write_bytes(to_edge_transform_and_lower(program).to_executorch().buffer)
    with pytest.raises(InvalidModelError, match=r"forward takes 1x4 float32.*input_ids \[1, T\]"):
        load_decoder(pte, Format.EXECUTORCH)


@pytest.mark.slow
@pytest.mark.parametrize("family", sorted(set(FAMILIES) - {"llama"}))
def test_every_family_generates_what_transformers_does(tmp_path: Path, family: str) -> None:
    pte, detail, (tokens, logits) = _export(family, tmp_path)
    got = generate(load_decoder(pte, Format.EXECUTORCH), PROMPT, STEPS)
    assert got.tokens == tokens, detail
    _close(got.logits, logits)
    wrapper = "HybridCache" if family.startswith("gemma") else "WithStaticCache"
    assert wrapper in detail
