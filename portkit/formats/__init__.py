"""Model formats: the ``Format`` enum, sniffing a file's format from its bytes (``sniff``), and
readers that need no framework (``tflite``: the TFLite flatbuffer).
"""

from __future__ import annotations

from portkit.formats.format import TARGETS, Format
from portkit.formats.sniff import sniff

__all__ = ["Format", "TARGETS", "sniff"]
