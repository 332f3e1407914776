"""``portkit convert DIR`` for a language model, as a user runs it: exported with its cache,
judged by generating, the artifact fed its own cache (``convert/decoders.py``,
``validators/generation.py``); ``validate`` against the directory; ``bench --generate``.

The tiny Llama's conversions are made once per run by the CLI (``conftest.llama_converted``) and
shared with the tests that drive each artifact by hand.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import numpy as np
import onnx
import pytest
from onnx import numpy_helper

from portkit.errors import ExitCode
from portkit.fixtures.decoders import save_decoder
from tests.conftest import run_cli
from tests.generation.conftest import PROMPT, Converted


@pytest.fixture(scope="module")
def llama(llama_converted: Callable[[str], Converted]) -> tuple[Path, Path, dict]:
    """The tiny Llama directory, converted to ONNX by the CLI with ``--prompt``: the
    directory, the artifact and the JSON report."""
    c = llama_converted("onnx")
    return c.src, c.artifact, c.report


def test_convert_to_onnx_generates_every_token_as_the_source(
        llama: tuple[Path, Path, dict]) -> None:
    _src, out, report = llama
    g = report["generation"]
    assert report["passed"] and report["exit_code"] == 0 and out.is_file()
    assert (g["generated"], g["agreed"], g["first_disagreement"]) == (16, 16, None)
    assert g["runtime"] == "onnxruntime" and g["policy"].startswith("fp32-generation")
    # the prompt went through the directory's tokenizer, and the texts came back through it
    assert g["prompt_text"] == PROMPT and g["source_text"]
    assert g["source_text"] == g["artifact_text"]
    assert all(s["scaled_err"] < 1e-4 for s in g["steps"])
    assert [d["positions"] for d in g["cache"]] == [len(g["prompt"]) + 15] * 2
    assert report["route_name"] == "torch.onnx-cache"


def test_validate_against_another_checkpoint_fails_naming_the_first_step(
        llama: tuple[Path, Path, dict], tmp_path: Path) -> None:
    _src, out, _report = llama
    other = save_decoder("llama", tmp_path / "seed1", seed=1)
    result = run_cli("validate", out, "--reference", other, "--json")
    assert result.returncode == ExitCode.PARITY_FAILED, result.stderr
    g = json.loads(result.stdout)["generation"]
    assert g["first_disagreement"] == 0 and not g["passed"]
    assert g["steps"][0]["source_token"] != g["steps"][0]["artifact_token"]
    # over the prompt both were fed, every layer's cache differs: other weights from layer 0
    assert g["drift_from"] == 0 and [d["positions"] for d in g["cache"]] == [len(g["prompt"])] * 2


def test_one_layer_changed_in_the_artifact_fails_naming_the_step(
        llama: tuple[Path, Path, dict], tmp_path: Path) -> None:
    src, out, _report = llama
    model = onnx.load(out)
    # The last layer's MLP down-projection (the exporter names the folded weights val_N; it is
    # the last [intermediate 128, hidden 64] one), 5% off: the tokens may still agree, but the
    # logits move far past rounding from the first step on.
    down = [t for t in model.graph.initializer if list(t.dims) == [128, 64]]
    assert len(down) == 2, [(t.name, list(t.dims)) for t in model.graph.initializer]
    weight = numpy_helper.to_array(down[-1])
    down[-1].CopyFrom(numpy_helper.from_array(weight * np.float32(1.05), down[-1].name))
    broken = tmp_path / "broken.onnx"
    onnx.save(model, broken)
    result = run_cli("validate", broken, "--reference", src)
    assert result.returncode == ExitCode.PARITY_FAILED, result.stderr
    said = " ".join(result.stdout.split())
    assert "FAIL" in said and "step 0" in said
    # the last layer's MLP comes after every layer's keys and values: the caches agree
    assert ("every layer's cache agrees: the difference arises after the last layer's keys and "
            "values") in said


def test_bench_generate_times_the_source_and_the_artifact_in_turns(
        llama: tuple[Path, Path, dict]) -> None:
    src, out, _report = llama
    result = run_cli("bench", src, out, "--generate", "8", "--prefill", "4,16", "--json")
    assert result.returncode == 0, result.stderr
    rows = json.loads(result.stdout)["generation"]
    assert [(Path(r["path"]).name, r["runtime"]) for r in rows] == [
        (src.name, "transformers"), (out.name, "onnxruntime")]
    for r in rows:
        assert [n for n, _ in r["prefill"]] == [4, 16] and r["turns"] == 3
        assert r["decode_tokens_per_s"] > 0 and r["ttft_ms"] > 0 and r["size_bytes"] > 0


@pytest.mark.parametrize("target", ["executorch", "tflite"])
def test_convert_to_a_mobile_target_generates_every_token_as_the_source(
        target: str, llama_converted: Callable[[str], Converted]) -> None:
    c = llama_converted(target)
    g = c.report["generation"]
    assert c.report["exit_code"] == 0 and c.artifact.is_file()
    assert (g["generated"], g["agreed"]) == (16, 16) and g["passed"]
    assert g["runtime"] == {"executorch": "executorch", "tflite": "tflite"}[target]


def test_a_directory_with_pickled_weights_only_is_refused_with_what_to_do(
        tmp_path: Path) -> None:
    src = save_decoder("llama", tmp_path / "pickled", tokenizer=False)
    (src / "model.safetensors").rename(src / "pytorch_model.bin")
    result = run_cli("convert", src, "--to", "onnx")
    assert result.returncode == ExitCode.INVALID_INPUT
    line = result.stderr.strip().splitlines()[-1]
    assert "pytorch_model.bin" in line and "safe_serialization=True" in line


def test_a_language_model_to_savedmodel_is_refused(tmp_path: Path) -> None:
    src = save_decoder("llama", tmp_path / "tinyllama", tokenizer=False)
    result = run_cli("convert", src, "--to", "savedmodel")
    assert result.returncode == ExitCode.INVALID_INPUT
    assert "converts to onnx, tflite, executorch" in result.stderr


def test_the_prompt_can_come_from_an_inputs_file(llama: tuple[Path, Path, dict],
                                                 tmp_path: Path) -> None:
    src, out, _report = llama
    ids = np.array([[5, 9, 40, 41, 7]], np.int64)
    np.savez(tmp_path / "ids.npz", input_ids=ids)
    result = run_cli("validate", out, "--reference", src, "--inputs", tmp_path / "ids.npz",
                     "--generate", "4", "--json")
    assert result.returncode == 0, result.stderr
    g = json.loads(result.stdout)["generation"]
    assert g["prompt"] == [5, 9, 40, 41, 7] and (g["generated"], g["agreed"]) == (4, 4)
    np.savez(tmp_path / "other.npz", ids=ids)
    result = run_cli("validate", out, "--reference", src, "--inputs", tmp_path / "other.npz")
    assert result.returncode == ExitCode.INVALID_INPUT
    assert "no input_ids array (it holds ids)" in result.stderr


def test_a_prompt_without_a_tokenizer_is_refused_with_what_to_do(
        llama: tuple[Path, Path, dict], tmp_path: Path) -> None:
    import shutil

    src, out, _report = llama
    bare = tmp_path / "bare"
    bare.mkdir()
    for name in ("config.json", "model.safetensors"):
        shutil.copy(src / name, bare / name)
    result = run_cli("validate", out, "--reference", bare, "--prompt", "once upon a time")
    assert result.returncode == ExitCode.INVALID_INPUT, result.stderr
    line = result.stderr.strip().splitlines()[-1]
    assert "--prompt needs a tokenizer" in line and "--inputs ids.npz" in line


def test_a_model_that_is_no_decoder_is_refused_by_bench_generate(tmp_path: Path) -> None:
    from portkit.fixtures import FIXTURES

    cnn = FIXTURES["cnn"].save(tmp_path, "pt2")
    result = run_cli("bench", cnn, "--generate", "4")
    assert result.returncode == ExitCode.INVALID_INPUT, result.stderr
    assert "can't generate" in result.stderr


def test_a_bundle_asked_of_a_language_model_is_refused_not_ignored(
        llama: tuple[Path, Path, dict], tmp_path: Path) -> None:
    src, out, _report = llama
    result = run_cli("validate", out, "--reference", src, "--save-bundle", tmp_path / "b")
    assert result.returncode == ExitCode.INVALID_INPUT, result.stderr
    line = result.stderr.strip().splitlines()[-1]
    assert "--save-bundle doesn't apply to a language model" in line
    assert not (tmp_path / "b").exists()
    labelled = tmp_path / "eval.npz"
    np.savez(labelled, input_ids=np.ones((2, 1, 4), np.int64), labels=np.zeros(2, np.int64))
    result = run_cli("validate", out, "--reference", src, "--eval", labelled)
    assert result.returncode == ExitCode.INVALID_INPUT, result.stderr
    assert "--eval doesn't apply to a language model" in result.stderr.strip().splitlines()[-1]
