"""portkit: convert models between PyTorch, TensorFlow, ONNX and TFLite, and prove each artifact
faithful by running it beside its source.

``portkit.convert(source, to=..., ...)`` and ``portkit.inspect(path)`` are the library API
(``portkit.api``); they import nothing heavy until called.
"""

from __future__ import annotations

from typing import Any

__version__ = "0.1.0"
__all__ = ["convert", "inspect", "__version__"]


def __getattr__(name: str) -> Any:
    if name in ("convert", "errors"):
        import importlib

        return importlib.import_module(f"portkit.{name}")  # portkit.convert is callable
    if name == "inspect":
        from portkit.api import inspect

        return inspect
    raise AttributeError(f"module 'portkit' has no attribute {name!r}")
