"""portkit: convert models between PyTorch, TensorFlow, ONNX and TFLite, and prove each artifact
faithful by running it beside its source.

``portkit.convert(source, to=..., ...)``, ``portkit.debug(artifact, reference)`` and
``portkit.inspect(path)`` are the library API (``portkit.api``, where ``validate``, ``replay``
and ``bench`` live too); they import nothing heavy until called. ``portkit.convert`` and
``portkit.debug`` are also packages (the converters; debug's matching and walk), made callable
here.
"""

from __future__ import annotations

import types
from typing import Any

from portkit import convert as _converters
from portkit import debug as _debug

__version__ = "0.1.0"
__all__ = ["convert", "debug", "inspect", "__version__"]


class _CallablePackage(types.ModuleType):
    """A package (``portkit.convert``, ``portkit.debug``) which, called, runs the
    ``portkit.api`` function of its name."""

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        from portkit import api

        return getattr(api, self.__name__.rpartition(".")[2])(*args, **kwargs)


for _package in (_converters, _debug):
    _package.__class__ = _CallablePackage


def __getattr__(name: str) -> Any:
    if name in ("api", "errors"):
        import importlib

        return importlib.import_module(f"portkit.{name}")
    if name == "inspect":
        from portkit.api import inspect

        return inspect
    raise AttributeError(f"module 'portkit' has no attribute {name!r}")
