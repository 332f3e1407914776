"""Runtimes register here by decorator; lookups import the runtime modules on first use.

A runtime module imports its framework only inside its methods, so importing the module (to
register it) stays cheap.
"""

from __future__ import annotations

import importlib

from portkit.errors import InternalError, UsageError
from portkit.formats import Format
from portkit.runtimes.base import Runtime

_MODULES = ("portkit.runtimes.torch", "portkit.runtimes.onnxruntime", "portkit.runtimes.tflite",
            "portkit.runtimes.tensorflow")
_RUNTIMES: dict[str, type[Runtime]] = {}


def register_runtime(cls: type[Runtime]) -> type[Runtime]:
    """Class decorator: make a Runtime findable by name and format.

    Raises:
        InternalError: The name is taken or the class declares no formats.
    """
    if cls.name in _RUNTIMES and _RUNTIMES[cls.name] is not cls:
        raise InternalError(f"two runtimes named {cls.name!r}")
    if not cls.formats:
        raise InternalError(f"runtime {cls.name!r} declares no formats")
    _RUNTIMES[cls.name] = cls
    return cls


def _load_all() -> None:
    for module in _MODULES:
        importlib.import_module(module)


def for_format(fmt: Format) -> list[Runtime]:
    """Every runtime that loads ``fmt``, in registration order."""
    _load_all()
    return [cls() for cls in _RUNTIMES.values() if fmt in cls.formats]


def get(name: str) -> Runtime:
    """The runtime called ``name``.

    Raises:
        UsageError: No runtime has that name.
    """
    _load_all()
    if name not in _RUNTIMES:
        raise UsageError(f"--runtime {name}: unknown; one of {', '.join(_RUNTIMES)}")
    return _RUNTIMES[name]()
