"""Runtimes register here by decorator; lookups import the runtime modules on first use.

A runtime module imports its framework only inside its methods, so importing the module (to
register it) stays cheap.
"""

from __future__ import annotations

import importlib
from collections.abc import Sequence
from pathlib import Path

from portkit.errors import InternalError, InvalidModelError, UsageError
from portkit.formats import Format
from portkit.options import LoadOptions
from portkit.runtimes.base import Runtime, Session

_MODULES = ("portkit.runtimes.torch", "portkit.runtimes.onnxruntime", "portkit.runtimes.tflite",
            "portkit.runtimes.tensorflow", "portkit.runtimes.onnx_reference",
            "portkit.runtimes.executorch")
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
    """Every runtime that loads ``fmt`` and checks artifacts, in registration order (fallback
    references such as ``onnx-reference`` left out)."""
    _load_all()
    return [cls() for cls in _RUNTIMES.values() if fmt in cls.formats and not cls.fallback]


def named(fmt: Format, names: Sequence[str]) -> list[Runtime]:
    """The runtimes loading ``fmt`` (only those named, if any).

    Raises:
        UsageError: A named runtime doesn't load ``fmt``.
    """
    every = for_format(fmt)
    unknown = set(names) - {rt.name for rt in every}
    if unknown:
        raise UsageError(f"--runtime {', '.join(sorted(unknown))}: does not load {fmt.value} "
                         f"models; runtimes for it: {', '.join(rt.name for rt in every)}")
    return [rt for rt in every if not names or rt.name in names]


def load_source(path: Path, fmt: Format, options: LoadOptions | None = None
                ) -> tuple[Runtime, Session]:
    """Load a source model on the first runtime that takes it: those of ``for_format``, then
    the fallbacks (``onnx-reference`` for ONNX opsets ONNX Runtime no longer runs).

    Returns:
        The runtime that loaded it (the reference's runtime) and its session.

    Raises:
        InvalidModelError: No runtime could load it (the first runtime's error, the others'
            appended).
    """
    _load_all()
    fallbacks = [cls() for cls in _RUNTIMES.values() if fmt in cls.formats and cls.fallback]
    refused: list[InvalidModelError] = []
    for runtime in for_format(fmt) + fallbacks:
        try:
            return runtime, runtime.load(path, fmt, options=options or LoadOptions())
        except InvalidModelError as e:
            refused.append(e)
    if len(refused) == 1:
        raise refused[0]
    raise InvalidModelError("; ".join(str(e) for e in refused))


def get(name: str) -> Runtime:
    """The runtime called ``name``.

    Raises:
        UsageError: No runtime has that name.
    """
    _load_all()
    if name not in _RUNTIMES:
        raise UsageError(f"--runtime {name}: unknown; one of {', '.join(_RUNTIMES)}")
    return _RUNTIMES[name]()
