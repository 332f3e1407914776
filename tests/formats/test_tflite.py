"""The mobile report, read from TFLite flatbuffers that TFLiteConverter writes in the test."""

from __future__ import annotations

from pathlib import Path

import pytest

from portkit.errors import InvalidModelError
from portkit.fixtures import keras_models
from portkit.formats.tflite import _layout, _precision, flex_ops, mobile_report, op_counts


def _tflite(model: object, path: Path, flex: bool = False) -> Path:
    import tensorflow as tf

    converter = tf.lite.TFLiteConverter.from_keras_model(model)
    if flex:
        converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS,
                                               tf.lite.OpsSet.SELECT_TF_OPS]
    path.write_bytes(converter.convert())
    return path


def test_flex_ops_are_found_without_an_interpreter(tmp_path: Path) -> None:
    path = _tflite(keras_models.flex(), tmp_path / "flex.tflite", flex=True)
    report = mobile_report(path)
    assert report.flex_ops == ("Cumprod",) and flex_ops(path) == ["Cumprod"]
    assert not report.builtin_only and report.op_counts["FlexCumprod"] == 1
    assert [t.name for t in report.inputs] == ["x"] and report.inputs[0].dtype == "float32"


def test_ops_of_every_subgraph_are_counted(tmp_path: Path) -> None:
    # A batch-1 LSTM becomes a WHILE loop whose body lives in other subgraphs.
    path = _tflite(keras_models.text(), tmp_path / "lstm.tflite")
    ops = op_counts(path)
    assert "WHILE" in ops and "LOGISTIC" in ops
    report = mobile_report(path)
    assert report.builtin_only and report.precision == "float32"
    assert report.inputs[0].name == "tokens" and report.inputs[0].dtype == "int32"


def test_layout_is_guessed_from_the_channel_axis() -> None:
    assert _layout((1, 224, 224, 3)) == "NHWC"
    assert _layout((1, 3, 224, 224)) == "NCHW"
    assert _layout((1, 8, 8, 8)) is None and _layout((1, 10)) is None


def test_truncated_flatbuffer_is_a_bad_file(tmp_path: Path) -> None:
    good = _tflite(keras_models.flex(), tmp_path / "f.tflite", flex=True)
    bad = tmp_path / "bad.tflite"
    bad.write_bytes(good.read_bytes()[:64])
    with pytest.raises(InvalidModelError, match="bad.tflite"):
        mobile_report(bad)


class _Tensors:
    """A subgraph's tensors, as ``_precision`` reads them (their TensorType codes)."""

    def __init__(self, *names: str) -> None:
        from ai_edge_litert import schema_py_generated as schema

        self.types = [getattr(schema.TensorType, n) for n in names]

    def TensorsLength(self) -> int:  # noqa: N802 - the flatbuffer API's name
        return len(self.types)

    def Tensors(self, i: int) -> object:  # noqa: N802
        return type("Tensor", (), {"Type": lambda _, t=self.types[i]: t})()


def test_the_precision_is_read_from_the_tensor_types() -> None:
    fc = {"FULLY_CONNECTED": 2}
    floats = ("FLOAT32",) * 8
    assert _precision(None, _Tensors(*floats, "INT4", "INT4"), (), fc) == "int4"
    assert _precision(None, _Tensors(*floats, "INT8", "INT8"), (), fc) == "dynamic"
    assert _precision(None, _Tensors(*floats), (), fc) == "float32"
