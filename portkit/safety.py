"""Checks on a model file made before any framework deserializes it.

A Keras file's config can name Python code to run on load: a ``Lambda`` layer carries marshalled
bytecode, and a custom object names any importable callable (``{"module": "os", "class_name":
"function", "config": "system"}``). Keras's ``safe_mode`` refuses Lambda bytecode but imports
modules named in the config; portkit refuses both before Keras sees the file, unless the user
passes ``--trust-model``.
"""

from __future__ import annotations

import json
import zipfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from portkit.errors import InvalidModelError
from portkit.formats import Format

# Config modules Keras resolves itself (its layers, activations, initializers…).
_KERAS_MODULES = ("keras", "keras.", "keras_hub.", "tf_keras.")


def check_keras(path: Path, fmt: Format, trust_model: bool) -> None:
    """Refuse a ``.keras``/``.h5`` whose config runs Python code on load, unless trusted.

    Args:
        path: The model file.
        fmt: ``Format.KERAS`` or ``Format.H5``.
        trust_model: ``--trust-model`` was given.

    Raises:
        InvalidModelError: The config can't be read, or it holds a Lambda layer or a custom
            object and the model is not trusted.
    """
    if trust_model:
        return
    found = list(code_in_config(_keras_config(path, fmt)))
    if found:
        raise InvalidModelError(
            f"{path}: {', '.join(found[:5])}{' …' if len(found) > 5 else ''} would run Python "
            "code when the model is loaded; if you trust this file, pass --trust-model"
        )


def code_in_config(config: Any, layer: str = "") -> Iterator[str]:
    """Describe every Lambda layer and custom object in a Keras config, with its layer's name."""
    if isinstance(config, list):
        for item in config:
            yield from code_in_config(item, layer)
        return
    if not isinstance(config, dict):
        return
    inner = config.get("config")
    name = inner.get("name", layer) if isinstance(inner, dict) else layer
    cls = config.get("class_name")
    module = config.get("module")
    if cls == "Lambda":
        yield f"Lambda layer {name!r}"
    elif isinstance(cls, str) and (
        (isinstance(module, str) and not module.startswith(_KERAS_MODULES))
        or ">" in str(config.get("registered_name") or "")  # registered custom: 'pkg>Name'
    ):
        what = f"{module}.{inner}" if cls == "function" and isinstance(inner, str) else (
            f"{module}.{cls}" if module else str(config.get("registered_name")))
        yield f"custom object {what} in layer {name!r}" if name else f"custom object {what}"
        return
    for value in config.values():
        yield from code_in_config(value, name)


def _keras_config(path: Path, fmt: Format) -> Any:
    try:
        if fmt is Format.KERAS:
            with zipfile.ZipFile(path) as zf:
                return json.loads(zf.read("config.json"))
        import h5py

        with h5py.File(path, "r") as f:
            raw = f.attrs.get("model_config")
        if raw is None:
            raise InvalidModelError(
                f"{path}: an HDF5 file without a model config (weights only?); save the whole "
                "model with model.save('model.keras')"
            )
        return json.loads(raw.decode() if isinstance(raw, bytes) else raw)
    except InvalidModelError:
        raise
    except Exception as e:  # noqa: BLE001 - any failure to read the config means a bad file
        raise InvalidModelError(
            f"{path}: cannot read its Keras config ({type(e).__name__}: {e}); re-save the model"
        ) from None
