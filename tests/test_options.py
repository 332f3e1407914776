"""Flags -> typed options: modes, checks of flags that go together, policy resolution (pure)."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np
import pytest

from portkit.errors import UsageError
from portkit.formats import Format
from portkit.options import Optimize, convert_options, optimize_goal, target
from portkit.policies import (
    POLICIES,
    OutputKind,
    Quantize,
    Tolerance,
    output_kinds,
    policy,
)


def test_quantize_modes_are_an_enum_and_say_which_need_calibration() -> None:
    assert Quantize.parse("int8") is Quantize.INT8 and Quantize.parse(None) is None
    assert [m.value for m in Quantize if m.calibrated] == ["int8", "int16x8"]
    assert Quantize.parse("int4") is Quantize.INT4
    with pytest.raises(UsageError, match="--quantize int2: one of fp16, dynamic, int8, "
                                         "int16x8, int4"):
        Quantize.parse("int2")


@pytest.mark.parametrize(("mode", "expected"), [
    (None, POLICIES["fp32"]),
    (Quantize.FP16, Tolerance(atol=1e-6, rtol=0.0, scale_tol=1e-2, min_cosine=0.9999,
                              policy="fp16")),
    (Quantize.INT8, Tolerance(atol=None, rtol=0.0, scale_tol=0.0, min_cosine=0.98, min_top1=0.8,
                              min_top5=0.95, samples=32, policy="int8")),
])
def test_policy_starts_from_the_precisions_default(mode: Quantize | None,
                                                    expected: Tolerance) -> None:
    assert policy(mode) == expected


def test_policy_takes_the_numbers_given_and_keeps_the_rest() -> None:
    got = policy(Quantize.INT8, min_cosine=0.5, min_top1=0.1, samples=8)
    assert (got.min_cosine, got.min_top1, got.samples) == (0.5, 0.1, 8)
    assert (got.min_top5, got.atol, got.policy) == (0.95, None, "int8")
    # zero is a value; atol or rtol alone is numpy.allclose: no scale term
    assert policy(atol=0.0, rtol=0.0) == Tolerance(atol=0.0, rtol=0.0, scale_tol=0.0)
    assert policy(rtol=1e-3).scale_tol == 0.0 and policy(atol=1e-3, scale_tol=1e-5).scale_tol == 1e-5
    assert policy(scale_tol=1e-3) == Tolerance(scale_tol=1e-3)
    for bad in ({"atol": -1.0}, {"scale_tol": float("nan")}, {"rtol": float("inf")}):
        with pytest.raises(UsageError, match="must be a finite number >= 0"):
            policy(**bad)
    with pytest.raises(UsageError, match=r"--samples 0: must be an integer in \[1, 10000\]"):
        policy(samples=0)
    with pytest.raises(UsageError, match=r"--min-cosine 1.5: must be a finite number in \[-1, 1\]"):
        policy(min_cosine=1.5)
    with pytest.raises(UsageError, match=r"--min-top5 nan"):
        policy(min_top5=float("nan"))


def test_target_names() -> None:
    assert target("TFLite") is Format.TFLITE and target("pt2") is Format.EXPORTED_PROGRAM
    with pytest.raises(UsageError, match="--to caffe: unknown target"):
        target("caffe")


def test_keep_float_takes_auto_or_names_comma_separated_or_repeated() -> None:
    auto = convert_options(Format.TFLITE, quantize="dynamic", keep_float="auto")
    assert auto.keep_float_auto and auto.keep_float == ()
    named = convert_options(Format.TFLITE, quantize="dynamic", keep_float=["a;1, b", "c"])
    assert named.keep_float == ("a;1", "b", "c") and not named.keep_float_auto
    assert convert_options(Format.TFLITE, quantize="dynamic", keep_float=()).keep_float == ()


def test_convert_options_types_the_quantize_mode(tmp_path: Path) -> None:
    calib = tmp_path / "c.npz"
    np.savez(calib, x=np.zeros((2, 1, 4), np.float32))
    got = convert_options(Format.TFLITE, quantize="int8", calibration=calib, int8_io=True)
    assert got.quantize is Quantize.INT8 and got.calibration == str(calib.absolute())
    assert convert_options(Format.ONNX, opset=17, signature="s").load.signature == "s"


@pytest.mark.parametrize(("fmt", "kwargs", "message"), [
    (Format.ONNX, {"quantize": "int8"}, "quantization is for --to tflite"),
    (Format.TFLITE, {"quantize": "int8"}, "needs calibration data"),
    (Format.TFLITE, {"calibration": "c.npz"}, "--calibration is for --quantize"),
    (Format.TFLITE, {"quantize": "int16x8", "calibration": "missing.npz"},
     "no such file or folder"),
    (Format.TFLITE, {"quantize": "fp16", "int8_io": True}, "--int8-io is for --quantize int8"),
    (Format.ONNX, {"no_flex": True}, "--no-flex is for --to tflite"),
    (Format.TFLITE, {"quantize": "fp16", "keep_float": "auto"},
     "--keep-float is for --quantize dynamic, int8 or int16x8"),
    (Format.TFLITE, {"keep_float": ["a"]}, "--keep-float is for --quantize"),
    (Format.TFLITE, {"quantize": "dynamic", "keep_float": ["auto,conv1"]}, "auto or names, not both"),
    (Format.TFLITE, {"quantize": "dynamic", "keep_float": [" , "]}, "give auto or names"),
    (Format.EXECUTORCH, {"quantize": "int4"}, "--quantize int4: int4 weights are for a "
                                              "language model .* use --quantize dynamic"),
    (Format.ONNX, {"quantize": "int4"}, r"a language model \(a Hugging Face causal-LM "
                                        r"directory\)$"),  # dynamic is no ONNX mode either
])
def test_convert_options_refuse_flags_out_of_place(fmt: Format, kwargs: dict,
                                                   message: str) -> None:
    with pytest.raises(UsageError, match=message):
        convert_options(fmt, **kwargs)


@pytest.mark.parametrize(("args", "message"), [
    (("size", None, True), "the one goal so far is latency"),
    (("latency", "litert-torch", True), "drop --route"),
    (("latency", None, False), "drop --no-validate"),
])
def test_optimize_goal_refuses_what_it_cannot_honour(args: tuple, message: str) -> None:
    with pytest.raises(UsageError, match=message):
        optimize_goal(*args)


def test_optimize_goal() -> None:
    assert optimize_goal(None, "litert-torch", False) is None
    assert optimize_goal("latency", None, True) is Optimize.LATENCY


def test_output_kinds_set_each_named_output_s_kind_on_its_own_policy() -> None:
    base = policy(Quantize.DYNAMIC)
    strict = Tolerance(scale_tol=1e-6)
    got = output_kinds(base, ["emb=embedding", " logits = classifier "], {"emb": strict})
    assert got["emb"] == dataclasses.replace(strict, kind=OutputKind.EMBEDDING)
    assert got["logits"] == dataclasses.replace(base, kind=OutputKind.CLASSIFIER)
    assert output_kinds(base, {"y": "regression"})["y"].kind is OutputKind.REGRESSION
    with pytest.raises(UsageError, match="expected NAME=KIND"):
        output_kinds(base, ["embedding"])
    with pytest.raises(UsageError, match="--output-kind vector: one of classifier, embedding"):
        output_kinds(base, ["y=vector"])


def test_const_values_parse_to_typed_scalars_in_one_place() -> None:
    from portkit.options import constants

    assert constants(["sr=16000", "gain=0.5", "on=true", "off=False"]) == {
        "sr": 16000, "gain": 0.5, "on": True, "off": False}
    assert isinstance(constants(["sr=16000"])["sr"], int)
    assert constants({"sr": 16000}) == {"sr": 16000} and constants(()) == {}


@pytest.mark.parametrize(("values", "message"), [
    (["sr"], r"--const 'sr': expected NAME=VALUE, e\.g\. --const sr=16000"),
    (["=16000"], "expected NAME=VALUE"),
    (["sr="], "expected NAME=VALUE"),
    (["sr=abc"], r"--const sr=abc: the value must be an int \(16000\), a float"),
    (["sr=1", "sr=2"], "--const sr: given twice"),
    ({"sr": "16000"}, "the value must be an int, a float or a bool"),
    ("sr=16000", "pass a list of NAME=VALUE strings"),
])
def test_bad_const_syntax_is_a_usage_error(values, message) -> None:
    from portkit.options import constants

    with pytest.raises(UsageError, match=message):
        constants(values)


def test_a_misspelled_number_is_refused_by_every_entry_point(tmp_path: Path) -> None:
    # **numbers takes only the policy's numbers: a typo is no silent default.
    with pytest.raises(TypeError, match="unexpected keyword argument 'atoll'"):
        policy(atoll=1e-3)
    from portkit import api

    with pytest.raises(TypeError, match="'scale_tl'"):
        api.convert(tmp_path / "m.pt2", "onnx", scale_tl=1e-3)
    with pytest.raises(UsageError, match="--samples 4: debug traces one sample"):
        api.debug(tmp_path / "m.onnx", tmp_path / "m.pt2", samples=4)
