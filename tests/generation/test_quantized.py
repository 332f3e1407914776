"""Language models with int8 weights (``--quantize dynamic``), judged by generating against the
float32 source at the quantized policy (``policies.GENERATION_QUANTIZED``).

In the default suite, the ONNX from the shared float32 conversion is quantized by the
converter's own quantizer (``hf_to_onnx.quantize``) and ``validate`` finds the int8 weights and
judges it at the quantized policy; a broken int8 artifact (quantized from a graph with one
layer's weights scrambled) fails. The conversions through ``convert --quantize dynamic`` (one
each for TFLite, ``.pte`` and ONNX) are ``slow``: each exports for about a minute. They
convert the trained tiny Llama, whose next-token logits peak as a real model's do, so every
one of the 16 tokens must agree (the random one's nearly flat logits part at a near-tie).
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
from portkit.policies import GENERATION_QUANTIZED, Quantize
from portkit.validators.generation import quantization
from tests.conftest import run_cli
from tests.generation.conftest import PROMPT, Converted

QUANTIZED_POLICY = GENERATION_QUANTIZED.policy


def _int8(fp32: Path, out: Path, edit: Callable[[onnx.ModelProto], None] | None = None) -> Path:
    """``fp32`` (an ONNX of the tiny Llama) with ``edit`` applied, quantized as the converter
    does, at ``out``."""
    model = onnx.load(fp32)
    if edit is not None:
        edit(model)
    onnx.save(model, out)
    quantize(out, Quantize.DYNAMIC)
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
    quantized = quantization(artifact, Format.ONNX) is not None
    assert report["tolerance"]["policy"] == (QUANTIZED_POLICY if quantized else
                                             "fp32-generation")  # the report's, as judged
    return result.returncode, report["generation"]


def test_int8_onnx_is_found_and_passes_at_the_quantized_policy(
        llama_converted: Callable[..., Converted], tmp_path: Path) -> None:
    c = llama_converted("onnx")
    q = _int8(c.artifact, tmp_path / "int8.onnx")
    graph = onnx.load(q).graph
    assert [i.name for i in graph.input] == [i.name for i in onnx.load(c.artifact).graph.input]
    assert sum(n.op_type == "MatMulNBits" for n in graph.node) == 15  # 7 a layer + lm_head
    assert quantization(q, Format.ONNX) is Quantize.DYNAMIC
    assert quantization(c.artifact, Format.ONNX) is None
    code, g = _validated(q, c.src)
    assert code == 0 and g["passed"], g
    assert g["policy"].startswith(QUANTIZED_POLICY)
    # every compared step at the cosine floor; a first disagreement only as a tie
    assert all(s["cosine"] >= GENERATION_QUANTIZED.min_cosine for s in g["steps"])
    assert g["agreed"] == 16 or g["tie"]
    assert q.stat().st_size < c.artifact.stat().st_size


def test_a_scrambled_layer_in_an_int8_onnx_fails_naming_the_step(
        llama_converted: Callable[..., Converted], tmp_path: Path) -> None:
    c = llama_converted("onnx")
    broken = _int8(c.artifact, tmp_path / "broken.onnx", _scramble_down_projection)
    code, g = _validated(broken, c.src)
    assert code == ExitCode.PARITY_FAILED and not g["passed"]
    assert g["policy"].startswith(QUANTIZED_POLICY)
    assert g["steps"][0]["cosine"] < GENERATION_QUANTIZED.min_cosine


def test_a_quantization_a_language_model_does_not_take_is_refused(tmp_path: Path) -> None:
    from portkit.fixtures.decoders import save_decoder

    src = save_decoder("llama", tmp_path / "tinyllama", tokenizer=False)
    result = run_cli("convert", src, "--to", "tflite", "--quantize", "fp16")
    assert result.returncode == ExitCode.INVALID_INPUT, result.stderr
    line = result.stderr.strip().splitlines()[-1]
    assert "--quantize fp16: a language model takes --quantize dynamic" in line


@pytest.mark.slow
@pytest.mark.parametrize("target", ["onnx", "tflite", "executorch"])
def test_convert_quantize_dynamic_passes_at_the_quantized_policy(
        target: str, llama_converted: Callable[..., Converted]) -> None:
    c = llama_converted(target, "dynamic", trained=True)
    fp32 = llama_converted(target, trained=True)
    g, report = c.report["generation"], c.report
    assert report["exit_code"] == 0 and c.artifact.is_file(), g
    assert g["passed"] and g["policy"].startswith(QUANTIZED_POLICY)
    assert g["agreed"] == 16, g
    assert all(s["cosine"] >= GENERATION_QUANTIZED.min_cosine for s in g["steps"]), g["steps"]
    assert report["tolerance"]["policy"] == QUANTIZED_POLICY
    assert "int8 weights" in report["route"][0]["detail"]
    # int8 weights for the linear layers; the embedding table stays float (ONNX: 0.73 of the
    # float file for the tiny Llama, whose embedding is a large share of it)
    assert c.artifact.stat().st_size < 0.8 * fp32.artifact.stat().st_size
    fmt = {"onnx": Format.ONNX, "tflite": Format.TFLITE, "executorch": Format.EXECUTORCH}[target]
    assert quantization(c.artifact, fmt) is Quantize.DYNAMIC
    assert quantization(fp32.artifact, fmt) is None
