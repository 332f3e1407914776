"""The library API: ``convert``, ``validate``, ``replay``, ``debug``, ``bench`` and ``inspect``,
one module each (``conversion``, ``validation``, ``debugging``, ``timing``, ``inspection``).
The CLI is a thin shell over these; each is a short composition: flags become typed options
(``portkit.options``), then the layer that does the work runs them in worker processes
(``convert.pipeline``, ``validators.checks``, ``validators.latency``, ``runtimes.tasks``), in
the context every call shares (``context``).
"""

from __future__ import annotations

from portkit.api.conversion import convert
from portkit.api.debugging import debug
from portkit.api.inspection import inspect
from portkit.api.timing import bench
from portkit.api.validation import replay, validate

__all__ = ["bench", "convert", "debug", "inspect", "replay", "validate"]
