"""The default-domain opset an ONNX file imports: what ``onnx_upgrade`` decides on (a source
below ``MIN_OPSET`` is upgraded) and what ``registry.run_edge`` checks a hop wrote (``--opset``).

Its own module so that both read it without importing each other (``onnx_upgrade`` registers
its edge with ``registry``).
"""

from __future__ import annotations

from pathlib import Path


def opset(path: Path) -> int:
    """The default-domain opset a model imports (1 when it names none)."""
    import onnx

    model = onnx.load(str(path), load_external_data=False)
    return next((o.version for o in model.opset_import if o.domain in ("", "ai.onnx")), 1)
