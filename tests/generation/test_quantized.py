"""Language models with int8 weights (``--quantize dynamic``) or int4 ones (``--quantize int4``),
judged by generating against the float32 source at their policies
(``policies.GENERATION_QUANTIZED``, ``GENERATION_INT4``: the artifact fed the source's tokens).

In the default suite, the ONNX from a shared float32 conversion is quantized by the converter's
own quantizer (``hf_to_onnx.quantize``: the random tiny Llama's to int8, the trained one's to
int4, whose rounding the random one's nearly flat logits don't survive) and ``validate`` finds
the weights' precision and judges it at its policy; a broken artifact (quantized from a graph
with one layer's weights scrambled) fails. The conversions through ``convert --quantize MODE``
(one each for TFLite, ``.pte`` and ONNX) are ``slow``: each exports for about a minute. They
convert the trained tiny Llama, whose next-token logits peak as a real model's do, so every
one of the 16 tokens must agree (the random one's part at a near-tie).
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import numpy as np
import onnx
import pytest
from onnx import numpy_helper

from portkit.convert.hf_to_onnx import quantize
from portkit.errors import ExitCode
from portkit.formats import Format
from portkit.policies import GENERATION_POLICIES, Quantize
from portkit.validators.generation import quantization
from tests.conftest import run_cli
from tests.generation.conftest import PROMPT, Converted

# --quantize mode -> whether the default tests convert the trained Llama for it
TRAINED = {Quantize.DYNAMIC: False, Quantize.INT4: True}


def _quantized(fp32: Path, out: Path, mode: Quantize = Quantize.DYNAMIC,
               edit: Callable[[onnx.ModelProto], None] | None = None) -> Path:
    """``fp32`` (an ONNX of the tiny Llama) with ``edit`` applied, quantized to ``mode`` as the
    converter does, at ``out``."""
    model = onnx.load(fp32)
    if edit is not None:
        edit(model)
    onnx.save(model, out)
    quantize(out, mode)
    return out


def _scramble_down_projection(model: onnx.ModelProto) -> None:
    """The last layer's MLP down-projection (the last [128, 64] initializer) with its output
    columns (torch's rows) permuted: a scrambled layer."""
    down = [t for t in model.graph.initializer if list(t.dims) == [128, 64]]
    assert len(down) == 2, [(t.name, list(t.dims)) for t in model.graph.initializer]
    weight = numpy_helper.to_array(down[-1])
    order = np.random.default_rng(0).permutation(weight.shape[1])
    down[-1].CopyFrom(numpy_helper.from_array(np.ascontiguousarray(weight[:, order]),
                                              down[-1].name))


def _validated(artifact: Path, src: Path) -> tuple[int, dict]:
    result = run_cli("validate", artifact, "--reference", src, "--prompt", PROMPT, "--json")
    report = json.loads(result.stdout)
    found = quantization(artifact, Format.ONNX)
    assert report["tolerance"]["policy"] == GENERATION_POLICIES[found].policy  # as judged
    return result.returncode, report["generation"]


@pytest.mark.parametrize("mode", list(TRAINED))
def test_a_quantized_onnx_is_found_and_passes_at_its_policy(
        mode: Quantize, llama_converted: Callable[..., Converted], tmp_path: Path) -> None:
    c = llama_converted("onnx", trained=TRAINED[mode])
    q = _quantized(c.artifact, tmp_path / f"{mode.value}.onnx", mode)
    graph = onnx.load(q).graph
    assert [i.name for i in graph.input] == [i.name for i in onnx.load(c.artifact).graph.input]
    nbits = [n for n in graph.node if n.op_type == "MatMulNBits"]
    assert len(nbits) == 15  # 7 a layer + lm_head
    # the embedding table: int4 only (ONNX Runtime's GatherBlockQuantized has no 8 bits)
    assert sum(n.op_type == "GatherBlockQuantized" for n in graph.node) == (
        mode is Quantize.INT4)
    assert {a.i for n in nbits for a in n.attribute if a.name == "bits"} == {
        4 if mode is Quantize.INT4 else 8}
    assert quantization(q, Format.ONNX) is mode
    assert quantization(c.artifact, Format.ONNX) is None
    code, g = _validated(q, c.src)
    policy = GENERATION_POLICIES[mode]
    assert code == 0 and g["passed"], g
    assert g["policy"].startswith(policy.policy)
    # every compared step at the cosine floor; int8: a first disagreement only as a tie;
    # int4: fed the source's tokens, every step compared and every token agreeing here
    assert all(s["cosine"] >= policy.min_cosine for s in g["steps"])
    if mode is Quantize.INT4:
        assert g["forced"] and len(g["steps"]) == 16 and g["agreed"] == 16, g
    else:
        assert not g["forced"] and (g["agreed"] == 16 or g["tie"])
    assert q.stat().st_size < c.artifact.stat().st_size


@pytest.mark.parametrize("mode", list(TRAINED))
def test_a_scrambled_layer_in_a_quantized_onnx_fails_naming_the_step(
        mode: Quantize, llama_converted: Callable[..., Converted], tmp_path: Path) -> None:
    c = llama_converted("onnx", trained=TRAINED[mode])
    broken = _quantized(c.artifact, tmp_path / "broken.onnx", mode, _scramble_down_projection)
    code, g = _validated(broken, c.src)
    policy = GENERATION_POLICIES[mode]
    assert code == ExitCode.PARITY_FAILED and not g["passed"]
    assert g["policy"].startswith(policy.policy)
    assert min(s["cosine"] for s in g["steps"]) < policy.min_cosine


def test_a_quantization_a_language_model_does_not_take_is_refused(tmp_path: Path) -> None:
    from portkit.fixtures.decoders import save_decoder

    src = save_decoder("llama", tmp_path / "tinyllama", tokenizer=False)
    result = run_cli("convert", src, "--to", "tflite", "--quantize", "fp16")
    assert result.returncode == ExitCode.INVALID_INPUT, result.stderr
    line = result.stderr.strip().splitlines()[-1]
    assert "--quantize fp16: a language model takes --quantize dynamic or int4" in line


@pytest.mark.slow
@pytest.mark.parametrize("mode", list(TRAINED))
@pytest.mark.parametrize("target", ["onnx", "tflite", "executorch"])
def test_convert_quantize_passes_at_its_policy(
        target: str, mode: Quantize, llama_converted: Callable[..., Converted]) -> None:
    c = llama_converted(target, mode.value, trained=True)
    fp32 = llama_converted(target, trained=True)
    g, report = c.report["generation"], c.report
    policy = GENERATION_POLICIES[mode]
    assert report["exit_code"] == 0 and c.artifact.is_file(), g
    assert g["passed"] and g["policy"].startswith(policy.policy)
    assert g["agreed"] == 16 and g["forced"] is (mode is Quantize.INT4), g
    assert all(s["cosine"] >= policy.min_cosine for s in g["steps"]), g["steps"]
    assert report["tolerance"]["policy"] == policy.policy
    bits = 4 if mode is Quantize.INT4 else 8
    assert f"int{bits} weights" in report["route"][0]["detail"]
    # int8/int4 weights for the linear layers (ONNX int8: 0.73 of the float file for the tiny
    # Llama, whose embedding table, float there, is a large share of it)
    assert c.artifact.stat().st_size < 0.8 * fp32.artifact.stat().st_size
    if mode is Quantize.INT4:
        int8 = llama_converted(target, Quantize.DYNAMIC.value, trained=True)
        assert c.artifact.stat().st_size < int8.artifact.stat().st_size
    fmt = {"onnx": Format.ONNX, "tflite": Format.TFLITE, "executorch": Format.EXECUTORCH}[target]
    assert quantization(c.artifact, fmt) is mode
    assert quantization(fp32.artifact, fmt) is None
