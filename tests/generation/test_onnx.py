"""A Hugging Face decoder directory -> ONNX with ``past_key_values``/``present`` and its ONNX
Runtime decoder: the graph's names and dynamic lengths, a prefill from an empty past, then each
``present`` fed back; the same greedy tokens and logits as transformers' own ``generate``."""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest

from portkit.convert import hf_to_onnx
from portkit.convert.hf_to_onnx import export_onnx
from portkit.errors import ConversionError, UsageError
from portkit.fixtures.decoders import WINDOW, save_decoder
from portkit.formats import Format
from portkit.options.generation import Export
from portkit.runtimes.decoding import generate, load_decoder
from portkit.runtimes.onnxruntime import OrtDecoder
from tests.generation.conftest import Converted

EXPORT = Export(max_seq=64)
STEPS = 16
PROMPT = np.arange(3, 16)  # 13 ids: prompt and generation run past the 8-token window
RELATIVE = 1e-4  # of the logits' scale: fp32 kernels in another order, nothing more
LAYERS, KV_HEADS, HEAD_DIM = 2, 2, 16


def exported(family: str, folder: Path) -> tuple[Path, Path, str]:
    """``family``'s tiny directory, its ONNX export and the exporter's detail line."""
    src = save_decoder(family, folder / "src", tokenizer=False)
    dst = folder / f"{family}.onnx"
    started = time.perf_counter()
    detail = export_onnx(src, dst, EXPORT)
    print(f"{family}: exported in {time.perf_counter() - started:.1f} s ({detail})")
    return src, dst, detail


def reference(src: Path, prompt: np.ndarray, steps: int) -> tuple[list[int], np.ndarray]:
    """transformers' greedy tokens and each step's logits after ``prompt``, all ``steps`` of
    them (the end-of-text token does not stop it: Phi-3's tiny model picks it)."""
    import torch
    import transformers

    model = transformers.AutoModelForCausalLM.from_pretrained(src, dtype=torch.float32).eval()
    model.generation_config.eos_token_id = None
    out = model.generate(torch.tensor(prompt)[None], attention_mask=torch.ones(1, prompt.size,
                         dtype=torch.int64), max_new_tokens=steps, do_sample=False,
                         return_dict_in_generate=True, output_logits=True)
    return out.sequences[0, prompt.size:].tolist(), torch.stack(out.logits)[:, 0].numpy()


def drive(onnx: Path, prompt: np.ndarray, steps: int) -> tuple[list[int], np.ndarray]:
    """Greedy generation with ONNX Runtime directly, not portkit's decoder: a prefill from a
    past of length 0, then one token a call with the last ``present`` as its past."""
    import onnxruntime

    session = onnxruntime.InferenceSession(str(onnx), providers=["CPUExecutionProvider"])
    pasts = [f"past_key_values.{i}.{kv}" for i in range(LAYERS) for kv in ("key", "value")]
    cache = [np.zeros((1, KV_HEADS, 0, HEAD_DIM), np.float32) for _ in pasts]
    ids, start, tokens, logits = prompt[None].astype(np.int64), 0, [], []
    for _ in range(steps):
        end = start + ids.shape[1]
        out = session.run(None, {"input_ids": ids, "attention_mask": np.ones((1, end), np.int64),
                                 "position_ids": np.arange(start, end, dtype=np.int64)[None],
                                 **dict(zip(pasts, cache))})
        logits.append(out[0][0, -1])
        cache = out[1:]
        assert all(c.shape == (1, KV_HEADS, end, HEAD_DIM) for c in cache)
        tokens.append(int(np.argmax(logits[-1])))
        ids, start = np.array([[tokens[-1]]], np.int64), end
    return tokens, np.stack(logits)


def check_driven(src: Path, onnx: Path) -> None:
    """ONNX Runtime driven by hand picks transformers' tokens, its logits within
    ``RELATIVE`` of their scale."""
    tokens, logits = reference(src, PROMPT, STEPS)
    got, got_logits = drive(onnx, PROMPT, STEPS)
    error, scale = float(np.abs(got_logits - logits).max()), float(np.abs(logits).max())
    print(f"{onnx.stem}, ONNX Runtime by hand: {sum(a == b for a, b in zip(got, tokens))}/"
          f"{STEPS} tokens equal, max logit error {error:.1e} of scale {scale:.1f}")
    assert got == tokens
    assert error <= RELATIVE * scale


def check_graph(path: Path) -> None:
    """The graph's inputs and outputs are the cache's names, in order, ``seq`` and ``past``
    dynamic."""
    import onnx

    graph = onnx.load(str(path)).graph
    cache = [f"{i}.{kv}" for i in range(LAYERS) for kv in ("key", "value")]
    assert [i.name for i in graph.input] == ["input_ids", "attention_mask", "position_ids",
                                             *(f"past_key_values.{c}" for c in cache)]
    assert [o.name for o in graph.output] == ["logits", *(f"present.{c}" for c in cache)]

    def dims(value: onnx.ValueInfoProto) -> list[int | str]:
        return [d.dim_param or d.dim_value for d in value.type.tensor_type.shape.dim]

    shapes = {v.name: dims(v) for v in [*graph.input, *graph.output]}
    assert shapes["input_ids"] == shapes["position_ids"] == [1, "seq"]
    assert shapes["attention_mask"] == [1, "past + seq"]
    assert shapes["logits"] == [1, "seq", 256]
    for c in cache:
        assert shapes[f"past_key_values.{c}"] == [1, KV_HEADS, "past", HEAD_DIM]
        assert shapes[f"present.{c}"] == [1, KV_HEADS, "past + seq", HEAD_DIM]
    assert not list(path.parent.glob(f".{path.name}.*stage*"))  # its staging folder is gone


@pytest.fixture(scope="module")
def llama(llama_converted: Callable[[str], Converted]) -> tuple[Path, Path, str]:
    """The tiny Llama's ONNX as ``portkit convert`` made it (``conftest``), and its detail."""
    c = llama_converted("onnx")
    return c.src, c.artifact, c.report["route"][0]["detail"]


def test_graph_names_and_dynamic_lengths(llama: tuple[Path, Path, str]) -> None:
    check_graph(llama[1])
    assert llama[2].startswith("torch.onnx dynamo, opset 18, 2 layers")


def test_onnxruntime_by_hand_generates_as_transformers(llama: tuple[Path, Path, str]) -> None:
    check_driven(*llama[:2])


def test_load_decoder_generates_as_transformers(llama: tuple[Path, Path, str]) -> None:
    tokens, logits = reference(llama[0], PROMPT, STEPS)
    decoder = load_decoder(llama[1], Format.ONNX, EXPORT)
    assert isinstance(decoder, OrtDecoder)
    assert (decoder.vocab, decoder.max_seq) == (256, 64)
    got = generate(decoder, PROMPT, STEPS)
    error, scale = float(np.abs(got.logits - logits).max()), float(np.abs(logits).max())
    print(f"llama, portkit's OrtDecoder: {sum(a == b for a, b in zip(got.tokens, tokens))}/"
          f"{STEPS} tokens equal, max logit error {error:.1e} of scale {scale:.1f}")
    assert list(got.tokens) == tokens
    assert error <= RELATIVE * scale
    assert len(got.cache) == LAYERS
    for keys, values in got.cache:  # the prompt and every token fed back (not the last)
        assert keys.shape == values.shape == (KV_HEADS, PROMPT.size + STEPS - 1, HEAD_DIM)
        assert keys.dtype == np.float32
    # A second prompt starts over: the same logits as a fresh decoder's.
    again = generate(decoder, PROMPT[:5], 3)
    fresh = generate(load_decoder(llama[1], Format.ONNX, EXPORT), PROMPT[:5], 3)
    np.testing.assert_array_equal(again.logits, fresh.logits)
    with pytest.raises(UsageError, match="64 cache positions"):
        decoder.prefill(np.zeros(64, np.int64))


def test_load_decoder_refuses_a_graph_without_a_cache(tmp_path: Path) -> None:
    import onnx
    from onnx import TensorProto, helper

    ids = helper.make_tensor_value_info("input_ids", TensorProto.INT64, [1, "seq"])
    logits = helper.make_tensor_value_info("logits", TensorProto.INT64, [1, "seq"])
    graph = helper.make_graph([helper.make_node("Identity", ["input_ids"], ["logits"])],
                              "no_cache", [ids], [logits])
    path = tmp_path / "plain.onnx"
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), str(path))
    with pytest.raises(UsageError, match=r"not a decoder with a key/value cache: attention_mask"):
        load_decoder(path, Format.ONNX)


def test_falls_back_to_the_torchscript_exporter(tmp_path: Path,
                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    def refuse(*args: object) -> int:
        raise RuntimeError("refused here\nsecond line")

    legacy = hf_to_onnx._STRATEGIES[1]
    monkeypatch.setattr(hf_to_onnx, "_STRATEGIES", (("torch.onnx dynamo", refuse), legacy))
    src, onnx, detail = exported("llama", tmp_path)
    assert detail.startswith("torch.onnx TorchScript (legacy), opset 17, 2 layers")
    assert detail.endswith("after torch.onnx dynamo: RuntimeError: refused here")
    check_graph(onnx)
    check_driven(src, onnx)


def test_no_exporter_names_each_reason(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    def refuse(*args: object) -> int:
        raise ValueError("not this one")

    monkeypatch.setattr(hf_to_onnx, "_STRATEGIES", (("first", refuse), ("second", refuse)))
    src = save_decoder("llama", tmp_path / "src", tokenizer=False)
    with pytest.raises(ConversionError, match=r"first: ValueError: not this one; second: "):
        export_onnx(src, tmp_path / "llama.onnx", EXPORT)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["src"]


@pytest.mark.slow
@pytest.mark.parametrize("family", ["qwen2", "qwen3", "phi3", "gemma2", "gemma3"])
def test_family_generates_as_transformers(family: str, tmp_path: Path) -> None:
    assert PROMPT.size + STEPS > WINDOW  # Gemma's sliding layers run past their window
    src, onnx, _ = exported(family, tmp_path)
    check_driven(src, onnx)
    tokens, _ = reference(src, PROMPT, STEPS)
    assert list(generate(load_decoder(onnx, Format.ONNX, EXPORT), PROMPT, STEPS).tokens) == tokens
