"""portkit: convert models between PyTorch, TensorFlow, ONNX and TFLite, and prove each artifact
faithful by running it beside its source.

``portkit.convert(source, to=..., ...)`` and ``portkit.inspect(path)`` are the library API
(``portkit.api``, where ``validate``, ``replay`` and ``bench`` live too); they import nothing
heavy until called. ``portkit.convert`` is also the package of converters, made callable here.
"""

from __future__ import annotations

import types
from typing import Any

from portkit import convert as _converters

__version__ = "0.1.0"
__all__ = ["convert", "inspect", "__version__"]


class _CallablePackage(types.ModuleType):
    """``portkit.convert``: the converters' package, which called runs ``portkit.api.convert``."""

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        from portkit.api import convert

        return convert(*args, **kwargs)


_converters.__class__ = _CallablePackage


def __getattr__(name: str) -> Any:
    if name in ("api", "errors"):
        import importlib

        return importlib.import_module(f"portkit.{name}")
    if name == "inspect":
        from portkit.api import inspect

        return inspect
    raise AttributeError(f"module 'portkit' has no attribute {name!r}")
