"""Conversion edges (one module per edge) and the registry that plans routes over them.

The package is also callable: ``portkit.convert(source, to=...)`` runs ``portkit.api.convert``,
so the Python call reads like the ``portkit convert`` command.
"""

from __future__ import annotations

import sys
import types
from typing import Any


class _CallableModule(types.ModuleType):
    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        from portkit.api import convert

        return convert(*args, **kwargs)


sys.modules[__name__].__class__ = _CallableModule
