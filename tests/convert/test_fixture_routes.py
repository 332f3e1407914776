"""Every fixture along the routes that apply, through the library API.

Each fixture runs the default route (the one plain ``convert`` tries first) from each of its
file kinds to each target (from TorchScript, for ``TORCHSCRIPT_IN_CI`` only: the others' are
``slow``); every fallback route is marked ``slow`` and runs with ``pytest -m
slow`` (falling back itself is tested in tests/cli/test_commands.py and
tests/convert/test_pipeline.py). A route that does not work today is listed in
KNOWN_FAILURES with the reason, and its test is a strict xfail: it fails the suite the day that
route starts working, so the list stays true.
"""

from __future__ import annotations

from pathlib import Path

import pytest

import portkit
from portkit.convert import registry
from portkit.errors import ExitCode
from portkit.fixtures import FIXTURES
from portkit.formats import TARGETS, Format

KINDS = {"torchscript": Format.TORCHSCRIPT, "pt2": Format.EXPORTED_PROGRAM, "keras": Format.KERAS,
         "h5": Format.H5, "savedmodel": Format.SAVEDMODEL, "onnx": Format.ONNX}
TARGETS_BY_FRAMEWORK = {"torch": ("onnx", "tflite", "torchscript"),
                        "keras": ("onnx", "tflite", "savedmodel"), "tf": ("onnx", "tflite"),
                        "onnx": ("tflite", "savedmodel")}
_WRONG = "tf2onnx converts litert-torch's TFLite to an ONNX that runs with wrong numbers"
_ERF = "onnx2tf turns the GELU's Erf into a Flex op, which no pip interpreter runs"
_SQUEEZE = "onnx2tf writes a Squeeze that fails on this attention block"
_CUMPROD = "tf2onnx fails on Cumprod ('negative dimensions are not allowed')"
_FLEX = "Flex ops (Cumprod): no pip-installed TFLite interpreter runs them, so parity is unproven"
# ONNX exported from TorchScript by the legacy exporter keeps the traced shape arithmetic (on the
# TS2EPConverter path portkit folds it); onnx2tf 1.29 turns it into Flex ops or shapes XNNPACK
# rejects.
_TS_ONNX = "onnx2tf on ONNX exported from TorchScript"
# onnx2tf makes the 4-D tensors NHWC and then mislays the channel shuffle's 5-D view/transpose.
_SHUFFLE_NHWC = "onnx2tf converts the channel shuffle to wrong numbers (max abs err 4.02)"
_SHUFFLE_RESHAPE = "onnx2tf fails on the legacy exporter's channel-shuffle Reshape (tf.reshape)"
_SEQ = "litert-torch lowers only a dynamic first dimension (the sequence length is dynamic too)"
# (fixture, file kind, target, route) -> why it fails
KNOWN_FAILURES: dict[tuple[str, str, str, str], str] = {
    ("lstm", "torchscript", "tflite", "torch.onnx-legacy+onnx2tf"):
        f"{_TS_ONNX}: onnx2tf fails on the LSTM",
    ("lstm", "pt2", "tflite", "torch.jit.trace+torch.onnx-legacy+onnx2tf"):
        f"{_TS_ONNX}: onnx2tf fails on the LSTM",
    ("attention", "torchscript", "tflite", "torch.onnx-legacy+onnx2tf"):
        f"{_TS_ONNX}: dynamic Reshape",
    ("attention", "pt2", "tflite", "torch.jit.trace+torch.onnx-legacy+onnx2tf"):
        f"{_TS_ONNX}: dynamic Reshape",
    ("upsample", "torchscript", "tflite", "litert-torch"):
        "litert-torch cannot lower a stride-2 ConvTranspose2d with padding",
    ("upsample", "pt2", "tflite", "litert-torch"):
        "litert-torch cannot lower a stride-2 ConvTranspose2d with padding",
    ("shuffle", "torchscript", "tflite", "torch.onnx-legacy+onnx2tf"): _SHUFFLE_RESHAPE,
    ("shuffle", "torchscript", "tflite", "torch.onnx+onnx2tf"): _SHUFFLE_NHWC,
    ("shuffle", "pt2", "tflite", "torch.onnx+onnx2tf"): _SHUFFLE_NHWC,
    ("shuffle", "pt2", "tflite", "torch.jit.trace+torch.onnx-legacy+onnx2tf"): _SHUFFLE_RESHAPE,
    ("keras_flex", "keras", "tflite", "tflite-converter"): _FLEX,
    ("text_encoder", "torchscript", "tflite", "litert-torch"): _SEQ,
    ("text_encoder", "pt2", "tflite", "litert-torch"): _SEQ,
    ("text_encoder", "torchscript", "onnx", "litert-torch+tf2onnx"): _SEQ,
    ("text_encoder", "pt2", "onnx", "litert-torch+tf2onnx"): _SEQ,
    ("keras_flex", "savedmodel", "tflite", "tflite-converter"): _FLEX,
    ("keras_text", "keras", "savedmodel", "tf2onnx+onnx2tf"):
        "tf2onnx.from_keras writes the LSTM's loop with a TensorArray onnx2tf's While layer "
        "can't rebuild (keras.export, the first route, converts it)",
    # Two-hop fallbacks through TFLite -> ONNX (tf2onnx) and ONNX -> TF (onnx2tf).
    ("lstm", "torchscript", "onnx", "litert-torch+tf2onnx"): _WRONG,
    ("lstm", "pt2", "onnx", "litert-torch+tf2onnx"): _WRONG,
    ("attention", "torchscript", "onnx", "litert-torch+tf2onnx"): _WRONG,
    ("attention", "pt2", "onnx", "litert-torch+tf2onnx"): _WRONG,
    ("upsample", "torchscript", "onnx", "litert-torch+tf2onnx"):
        "litert-torch cannot lower a stride-2 ConvTranspose2d with padding",
    ("upsample", "pt2", "onnx", "litert-torch+tf2onnx"):
        "litert-torch cannot lower a stride-2 ConvTranspose2d with padding",
    ("keras_text", "keras", "tflite", "tf2onnx+onnx2tf"): "onnx2tf fails on the LSTM",
    ("keras_text", "h5", "tflite", "tf2onnx+onnx2tf"): "onnx2tf fails on the LSTM",
    ("keras_text", "savedmodel", "tflite", "tflite-converter"):
        "the SavedModel's batch dimension is free, and TFLite can't lower the LSTM's TensorList "
        "ops without a static shape (from .keras portkit pins the batch to the input's)",
    ("keras_text", "savedmodel", "tflite", "tf2onnx+onnx2tf"): "onnx2tf fails on the LSTM",
    ("keras_transformer", "keras", "tflite", "tf2onnx+onnx2tf"): _ERF,
    ("keras_transformer", "keras", "savedmodel", "tf2onnx+onnx2tf"): _SQUEEZE,
    ("keras_transformer", "h5", "tflite", "tf2onnx+onnx2tf"): _ERF,
    ("keras_transformer", "h5", "savedmodel", "tf2onnx+onnx2tf"): _SQUEEZE,
    ("keras_transformer", "savedmodel", "tflite", "tf2onnx+onnx2tf"): _ERF,
    ("keras_flex", "keras", "onnx", "tf2onnx"): _CUMPROD,
    ("keras_flex", "keras", "tflite", "tf2onnx+onnx2tf"): _CUMPROD,
    ("keras_flex", "keras", "savedmodel", "tf2onnx+onnx2tf"): _CUMPROD,
    ("keras_flex", "savedmodel", "onnx", "tf2onnx"): _CUMPROD,
    ("keras_flex", "savedmodel", "tflite", "tf2onnx+onnx2tf"): _CUMPROD,
    # Three hops (slow): ONNX -> SavedModel (onnx2tf) -> TFLite (TFLiteConverter).
    ("lstm", "torchscript", "tflite", "torch.onnx-legacy+onnx2tf+tflite-converter"):
        f"{_TS_ONNX}: onnx2tf fails on the LSTM",
    ("attention", "torchscript", "tflite", "torch.onnx-legacy+onnx2tf+tflite-converter"):
        f"{_TS_ONNX}: dynamic Reshape",
    ("shuffle", "torchscript", "tflite", "torch.onnx-legacy+onnx2tf+tflite-converter"):
        _SHUFFLE_RESHAPE,
    ("shuffle", "torchscript", "tflite", "torch.onnx+onnx2tf+tflite-converter"): _SHUFFLE_NHWC,
    ("shuffle", "pt2", "tflite", "torch.onnx+onnx2tf+tflite-converter"): _SHUFFLE_NHWC,
}


# A TorchScript file reaches the same edges as the fixture's .pt2 (through TS2EPConverter): its
# default routes run in CI for these fixtures (a traced CNN, a scripted LSTM's loop), the others'
# with -m slow.
TORCHSCRIPT_IN_CI = {"cnn", "lstm"}


def _cases() -> list[pytest.param]:
    cases = []
    for name, fixture in FIXTURES.items():
        if fixture.needs_trust:
            continue  # refused without --trust-model: tests/test_safety.py
        if fixture.consts:
            continue  # inputs bound with --const: tests/convert/test_constants.py
        if fixture.trained:
            continue  # cnn's ops, trained for quantization: tests/fixtures/test_trained.py
        for kind in fixture.kinds:
            fmt = KINDS[kind]
            for target in TARGETS_BY_FRAMEWORK[fixture.framework]:
                if TARGETS[target] is fmt:
                    continue
                routes = registry.plan(fmt, TARGETS[target])
                for route in routes:
                    key = (name, kind, target, route.name)
                    marks = ([pytest.mark.xfail(strict=True, reason=KNOWN_FAILURES[key])]
                             if key in KNOWN_FAILURES else [])
                    if route != routes[0] or (kind == "torchscript" and "pt2" in fixture.kinds
                                              and name not in TORCHSCRIPT_IN_CI):
                        marks.append(pytest.mark.slow)
                    cases.append(pytest.param(name, kind, target, route.name, marks=marks,
                                              id=f"{name}-{kind}-{target}-{route.name}"))
    return cases


@pytest.mark.parametrize("name,kind,target,route", _cases())
def test_fixture_route(saved_models, workers, tmp_path: Path, name: str, kind: str,
                       target: str, route: str) -> None:
    fixture = FIXTURES[name]
    report = portkit.convert(saved_models(name, kind), target, tmp_path / f"out.{target}",
                             inputs=fixture.input_flags, route=route, workers=workers,
                             find_divergence=False)  # the verdict is tested here, not debug
    assert report.exit_code == ExitCode.OK, report.routes_tried[-1].error
    # Preparations the source needs (pool-rewrite) come first, whatever --route names.
    prepared = {e.tool for e in registry.preparations(KINDS[kind])}
    assert [h.tool for h in report.route if h.tool not in prepared] == route.split("+")
    assert report.checks and all(c.passed for c in report.checks)
