"""ExecuTorch quantization (PT2E, XNNPACKQuantizer) on CNNs trained at test time
(``portkit/fixtures/trained.py``), calibrated and judged as the TFLite path is: calibration
samples held back to validate on, ``--eval`` accuracy, ``--keep-float`` by module name and
``--keep-float auto``. The test runs the ``.pte`` itself through ``executorch.runtime``.

The must-show runs ``portkit convert`` as a user does, in a fresh interpreter; the other
conversions go through ``portkit.convert`` in the session's warm workers (ExecuTorch imported
once)."""

from __future__ import annotations

import json
import math
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest

import portkit
from portkit.convert.executorch_keep_float import (
    keep_float_search,
    modules_of,
    outputs,
    quantize_module,
)
from portkit.errors import UsageError
from portkit.fixtures import FIXTURES, trained
from portkit.options import ConvertOptions
from portkit.policies import POLICIES, Quantize
from portkit.runtimes.worker import Pool
from portkit.specs import TensorSpec
from portkit.validators.parity import compare_outputs
from tests.convert.test_tensorflow_edges import convert_json

Saved = Callable[[str, str], Path]
INPUTS = [TensorSpec("x", (1, 3, 32, 32))]
HELD_BACK = 32  # the int8 policy's samples: the last 32 of --calibration, never calibrated on


@pytest.fixture(scope="module")
def data(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """``calibration.npz`` (132 samples: 100 to calibrate on, 32 held back) and ``eval.npz``
    (512 held-out samples with labels)."""
    return trained.write_data(tmp_path_factory.mktemp("executorch-quantize-data"))


@pytest.fixture(scope="module")
def float_bytes(saved_models: Saved) -> int:
    """The size of the trained CNN's float program, lowered as the edge lowers it without
    ``--quantize``."""
    import torch

    from portkit.convert.torch_to_executorch import lower

    return len(lower(torch.export.load(saved_models("trained_cnn", "pt2")), delegate=True))


def _run_pte(pte: Path, x: np.ndarray) -> np.ndarray:
    """The program's first output on each sample of ``x`` (``(N, 1, 3, 32, 32)``), run by
    ExecuTorch's own runtime, stacked."""
    import torch
    from executorch.runtime import Runtime

    method = Runtime.get().load_program(str(pte)).load_method("forward")
    return np.concatenate([method.execute([torch.from_numpy(s)])[0].numpy() for s in x])


def _float_logits(source: Path, x: np.ndarray) -> np.ndarray:
    """The float source's logits on each sample of ``x``, run in torch, stacked."""
    import torch

    module = torch.export.load(source).module()
    return np.concatenate([o["output_0"] for o in outputs(module, [(torch.from_numpy(s),)
                                                                     for s in x])])


def test_trained_cnn_int8_pte_keeps_top1_within_2_points_in_under_45_percent_of_the_size(
        saved_models: Saved, data: tuple[Path, Path], float_bytes: int, tmp_path: Path) -> None:
    calibration, eval_file = data
    source = saved_models("trained_cnn", "pt2")
    out = tmp_path / "int8.pte"
    code, report, err = convert_json(source, "--to", "executorch", "-o", out,
                                     "--quantize", "int8", "--calibration", calibration,
                                     "--eval", eval_file)
    assert code == 0, err + json.dumps(report.get("routes_tried"), indent=1)
    assert report["route_name"] == "executorch-xnnpack"
    assert report["inputs_from"].startswith("the last 32 of 132 --calibration samples, held back")
    quantization = report["quantization"]
    assert quantization["mode"] == "int8" and "XNNPACKQuantizer" in quantization["recipe"]
    assert (quantization["calibration_samples"], quantization["held_back"]) == (100, HELD_BACK)
    assert quantization["keep_float"] == [] and quantization["bytes"] == out.stat().st_size
    assert report["accuracy"]["samples"] == 512 and report["accuracy"]["passed"]

    # The test's own judgement: the .pte through executorch.runtime on the held-out images.
    held = np.load(eval_file)
    x, labels = held["x"], held["labels"]
    float_top1 = float((_float_logits(source, x).argmax(1) == labels).mean())
    int8_top1 = float((_run_pte(out, x).argmax(1) == labels).mean())
    assert float_top1 >= 0.9, float_top1  # a trained model, or the comparison says nothing
    assert float_top1 - int8_top1 <= 0.02, (float_top1, int8_top1)
    assert report["accuracy"]["artifact_top1"] == pytest.approx(int8_top1)
    assert out.stat().st_size <= 0.45 * float_bytes, (out.stat().st_size, float_bytes)


@pytest.mark.slow  # 50 s: TorchScript through TS2EPConverter, then PT2E and its calibration
def test_a_torchscript_source_quantizes_its_convs_too(saved_models: Saved,
                                                      data: tuple[Path, Path], float_bytes: int,
                                                      workers: Pool, tmp_path: Path) -> None:
    """TorchScript comes through TS2EPConverter as ``aten.convolution``, which PT2E does not
    take for a conv: unnamed, every conv stayed float and the int8 program outgrew the float
    one (103,848 bytes against 102,312). The size is the symptom; the accuracy on labelled
    data is the ``.pt2`` test's above (the same program once its convs are named)."""
    out = tmp_path / "int8.pte"
    report = portkit.convert(saved_models("trained_cnn", "torchscript"), "executorch", out,
                             inputs=FIXTURES["trained_cnn"].input_flags, quantize="int8",
                             calibration=data[0], workers=workers)
    assert report.exit_code == 0, report.routes_tried
    assert out.stat().st_size <= 0.45 * float_bytes, (out.stat().st_size, float_bytes)


def test_dynamic_quantizes_the_linear_head(saved_models: Saved, workers: Pool,
                                           tmp_path: Path) -> None:
    report = portkit.convert(saved_models("trained_cnn", "pt2"), "executorch",
                             tmp_path / "dynamic.pte", quantize="dynamic", workers=workers)
    assert report.exit_code == 0, report.routes_tried
    quantization = report.quantization
    assert quantization is not None and quantization.mode == "dynamic"
    assert report.tolerance.policy == "dynamic"
    assert quantization.calibration_samples == 0 and quantization.keep_float == ()
    assert "activations quantized per run" in quantization.recipe


@pytest.mark.slow  # the names reach the same search as --keep-float auto's test below
def test_keep_float_by_module_name(saved_models: Saved, data: tuple[Path, Path],
                                   workers: Pool, tmp_path: Path) -> None:
    report = portkit.convert(saved_models("trained_cnn", "pt2"), "executorch",
                             tmp_path / "q.pte", quantize="int8", calibration=data[0],
                             keep_float="conv1", workers=workers)
    assert report.exit_code == 0, report.routes_tried
    quantization = report.quantization
    assert quantization is not None and quantization.keep_float == ("conv1",)
    assert not quantization.keep_float_auto
    assert "1 module(s) kept float" in quantization.recipe


def test_keep_float_naming_no_quantized_module_is_a_usage_error(
        saved_models: Saved, data: tuple[Path, Path], workers: Pool, tmp_path: Path) -> None:
    # bn1 is a module of the model, but PT2E folds it into conv1: nothing of it is quantized.
    with pytest.raises(UsageError) as raised:
        portkit.convert(saved_models("trained_cnn", "pt2"), "executorch", tmp_path / "q.pte",
                        quantize="int8", calibration=data[0], keep_float="conv1,bn1",
                        workers=workers)
    assert raised.value.exit_code == 2  # what portkit convert exits with
    assert str(raised.value) == (
        "--keep-float bn1: no module of the model with an op that --quantize int8 quantizes; "
        "name a module as the model does (or one holding it): conv1, conv2, conv3, head")
    assert not (tmp_path / "q.pte").exists()


def test_modules_of_are_the_modules_the_quantizer_quantizes(saved_models: Saved) -> None:
    import torch

    module = torch.export.load(saved_models("trained_cnn", "pt2")).module()
    assert modules_of(module, INPUTS, Quantize.INT8) == ["conv1", "conv2", "conv3", "head"]
    assert modules_of(module, INPUTS, Quantize.DYNAMIC) == ["head"]  # conv+ReLU stays float
    # A module kept float keeps its float weight; the others' are int8 constants.
    sample = (torch.zeros(1, 3, 32, 32),)
    quantized = quantize_module(module, INPUTS, [sample], Quantize.INT8, ("head",))
    weights = {n.target for n in quantized.graph.nodes if n.op == "get_attr"}
    assert "head.weight" in weights and "conv1.weight" not in weights


def test_keep_float_search_keeps_the_outlier_channel_s_two_convs_float(
        saved_models: Saved, data: tuple[Path, Path]) -> None:
    """The outlier channel breaks per-tensor int8 activations under PT2E too (per-channel
    weights don't help: it is conv1's output that holds it): keeping conv1, which writes it,
    and conv2, which reads it, float restores the model, found in 5 trials."""
    import torch

    module = torch.export.load(saved_models("outlier_cnn", "pt2")).module()
    options = ConvertOptions(quantize=Quantize.INT8, keep_float_auto=True,
                             judge=POLICIES["int8"])
    x = np.load(data[0])["x"]
    samples = [(torch.from_numpy(s),) for s in x[:-HELD_BACK]]  # as --calibration gives them
    held = [(torch.from_numpy(s),) for s in x[-HELD_BACK:]]
    names = modules_of(module, INPUTS, Quantize.INT8)
    assert names == ["conv1", "conv2", "conv3", "head"]
    reference = outputs(module, held)

    def verdict(quantized: Any) -> Any:
        [row] = compare_outputs(reference, outputs(quantized, held), POLICIES["int8"])
        return row

    full = verdict(quantize_module(module, INPUTS, samples, Quantize.INT8, ()))
    assert not full.passed and "cosine" in full.failed

    found = keep_float_search(module, INPUTS, samples, names, options)
    quantized, kept, trials, note = found.model, found.kept, found.trials, found.note
    assert kept == ("conv1", "conv2") and note == ""
    assert trials <= 2 + math.ceil(math.log2(len(names))) + 2  # the passing prefix: 2 long
    restored = verdict(quantized)  # on the held-back samples, which chose nothing
    assert restored.passed and restored.cosine >= 0.99


@pytest.mark.slow
def test_outlier_int8_pte_fails_and_keep_float_auto_passes(saved_models: Saved,
                                                           data: tuple[Path, Path],
                                                           tmp_path: Path) -> None:
    calibration, eval_file = data
    source = saved_models("outlier_cnn", "pt2")
    args = ("--to", "executorch", "--quantize", "int8", "--calibration", calibration)
    code, plain, _ = convert_json(source, *args, "-o", tmp_path / "plain.pte")
    assert code == 1 and plain["passed"] is False
    [row] = plain["checks"][0]["outputs"]
    assert row["samples"] == HELD_BACK and "cosine" in row["failed"]

    out = tmp_path / "auto.pte"
    code, auto, err = convert_json(source, *args, "-o", out, "--keep-float", "auto")
    assert code == 0, err + json.dumps(auto.get("routes_tried"), indent=1)
    quantization = auto["quantization"]
    assert quantization["keep_float_auto"] and quantization["keep_float"] == ["conv1", "conv2"]
    assert 2 <= quantization["trials"] <= 2 + 2 + 2  # 4 modules, the passing prefix 2 long
    x = np.load(eval_file)["x"]
    [row] = compare_outputs({"logits": _float_logits(source, x)},
                            {"output_0": _run_pte(out, x)}, POLICIES["int8"])
    assert row.cosine >= 0.99
