"""Keras configs that would run code on load are found before Keras reads them (pure logic)."""

from __future__ import annotations

import json
import zipfile
from pathlib import Path

import numpy as np
import pytest

from portkit.errors import ExitCode, InvalidModelError, UnsafeModelError, UsageError
from portkit.formats import Format
from portkit.io import Folder, Output, check_outputs
from portkit.safety import check_keras, check_onnx, code_in_config
from tests.security import hostile


def _layer(cls: str, name: str, module: str | None = "keras.layers", **extra: object) -> dict:
    return {"module": module, "class_name": cls, "config": {"name": name, **extra},
            "registered_name": None}


def _model(*layers: dict) -> dict:
    return {"module": "keras", "class_name": "Functional",
            "config": {"name": "m", "layers": list(layers)}}


def test_builtin_layers_and_keras_ops_are_safe() -> None:
    config = _model(_layer("Dense", "d"),
                    {"module": "keras.src.ops.numpy", "class_name": "Cumprod",
                     "config": {"name": "cumprod"}, "registered_name": "Cumprod"})
    assert list(code_in_config(config)) == []


def test_lambda_is_named_even_when_nested() -> None:
    inner = _model(_layer("Lambda", "inner_lam"))
    inner["config"]["name"] = "inner"
    assert list(code_in_config(_model(_layer("Dense", "d"), inner))) == [
        "Lambda layer 'inner_lam'"]


def test_an_arbitrary_callable_and_a_registered_custom_layer_are_found() -> None:
    config = _model(
        _layer("Dense", "d", activation={"module": "os", "class_name": "function",
                                         "config": "system", "registered_name": "function"}),
        {"module": None, "class_name": "Scale", "config": {"name": "scale"},
         "registered_name": "my_pkg>Scale"},
    )
    assert list(code_in_config(config)) == ["custom object os.system in layer 'd'",
                                             "custom object my_pkg>Scale in layer 'scale'"]


def test_check_keras_refuses_with_the_flag_to_opt_in(tmp_path: Path) -> None:
    path = tmp_path / "m.keras"
    with zipfile.ZipFile(path, "w") as zf:
        zf.writestr("config.json", json.dumps(_model(_layer("Lambda", "double"))))
        zf.writestr("metadata.json", "{}")
    with pytest.raises(InvalidModelError, match="Lambda layer 'double'.*--trust-model") as e:
        check_keras(path, Format.KERAS, trust_model=False)
    assert e.value.exit_code == ExitCode.INVALID_INPUT
    check_keras(path, Format.KERAS, trust_model=True)  # trusted: left to Keras


def test_unreadable_config_is_a_bad_file(tmp_path: Path) -> None:
    path = tmp_path / "m.keras"
    with zipfile.ZipFile(path, "w") as zf:
        zf.writestr("config.json", "{not json")
    with pytest.raises(InvalidModelError, match="cannot read its Keras config"):
        check_keras(path, Format.KERAS, trust_model=False)


def _onnx_external_in_function(folder: Path, offset: str = "0") -> Path:
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    value = numpy_helper.from_array(np.zeros(4, np.float32), "c")
    value.ClearField("raw_data")
    value.data_location = TensorProto.EXTERNAL
    for k, v in {"location": "../../etc/passwd", "offset": offset, "length": "16"}.items():
        value.external_data.add(key=k, value=v)
    function = helper.make_function("local", "F", ["x"], ["y"], [
        helper.make_node("Constant", [], ["c"], value=value),
        helper.make_node("Add", ["x", "c"], ["y"])], [helper.make_opsetid("", 17)])
    graph = helper.make_graph(
        [helper.make_node("F", ["x"], ["y"], domain="local")], "g",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [4])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [4])])
    model = helper.make_model(graph, functions=[function], opset_imports=[
        helper.make_opsetid("", 17), helper.make_opsetid("local", 1)])
    path = folder / "f.onnx"
    onnx.save(model, str(path))
    return path


def test_onnx_external_data_inside_a_local_function_is_checked(tmp_path: Path) -> None:
    with pytest.raises(UnsafeModelError, match="outside the model's folder"):
        check_onnx(_onnx_external_in_function(tmp_path))


def test_onnx_external_data_offset_that_is_not_a_number_is_a_bad_file(tmp_path: Path) -> None:
    path = hostile._onnx_with_external(tmp_path, "weights.bin", offset="abc")
    (path.parent / "weights.bin").write_bytes(np.zeros(4, np.float32).tobytes())
    with pytest.raises(InvalidModelError, match="not a number"):
        check_onnx(path)


def test_an_existing_folder_that_is_not_an_artifact_is_never_replaced(tmp_path: Path) -> None:
    precious = tmp_path / "models"
    precious.mkdir()
    (precious / "notes.txt").write_text("keep")
    with pytest.raises(UsageError, match="not a SavedModel or a portkit bundle"):
        check_outputs([Output("-o", precious, Folder.REPLACED)])
    with pytest.raises(UsageError, match="without '..'"):
        check_outputs([Output("-o", Path("."), Folder.REPLACED)])
    (precious / "saved_model.pb").write_bytes(b"")
    check_outputs([Output("-o", precious, Folder.REPLACED)])  # a SavedModel portkit may replace
