"""Keras configs that would run code on load are found before Keras reads them (pure logic)."""

from __future__ import annotations

import json
import zipfile
from pathlib import Path

import pytest

from portkit.errors import ExitCode, InvalidModelError
from portkit.formats import Format
from portkit.safety import check_keras, code_in_config


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
