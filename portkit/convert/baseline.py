"""The ONNX a torch source's artifact is timed against (``convert --speed-check``): ONNX Runtime
on the source's own ONNX is the yardstick, since torch eager can be as slow as the artifact on
the very op that makes it slow (transformers' EfficientNet pooler: an ``AvgPool2d`` whose window
is 1280 wide, about 1 s eager and 2 s as TFLite, against 7.5 ms on ONNX Runtime)."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from portkit.convert import registry
from portkit.formats import Format

if TYPE_CHECKING:
    from portkit.convert.conversion import Conversion


def source_onnx(conversion: Conversion, fmt: Format, target: Format,
                folder: Path) -> Path | None:
    """A torch source's ONNX to time its TFLite artifact against: the one a route's first hop
    made, else one made now (in ``folder``) by the cheapest one-hop route to ONNX, and checked
    against the source like any artifact. None for another source or target, or when no ONNX
    could be made (the artifact is then timed against torch eager).
    """
    if fmt.framework != "torch" or target is not Format.TFLITE:
        return None
    made = conversion.made(Format.ONNX)
    if made is not None:
        return made
    route = next((r for r in registry.plan(fmt, Format.ONNX) if len(r.edges) == 1), None)
    if route is None:
        return None
    attempt, path = conversion.attempt(route, folder)
    return path if attempt.passed else None
