"""The JSON contract: report dataclasses as plain values (``plain``), the library versions every
report records, and the one mixin every report renders through (``JsonReport``)."""

from __future__ import annotations

import dataclasses
import json
import math
from importlib import metadata
from pathlib import Path
from typing import Any

from portkit.io import atomic_write_text

# Distributions whose versions go into every report (read from metadata, never imported).
_VERSIONED = ("portkit", "numpy", "torch", "onnx", "onnxruntime", "onnxruntime-gpu", "onnxscript",
              "tensorflow", "tf-keras", "ai-edge-litert", "litert-torch", "onnx2tf", "tf2onnx",
              "executorch", "torchao")


def plain(value: Any) -> Any:
    """Dataclass dicts to JSON-ready values: enums to their values, non-finite floats to strings."""
    if isinstance(value, dict):
        return {k: plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [plain(v) for v in value]
    if isinstance(value, float) and not math.isfinite(value):
        return str(value)
    if hasattr(value, "value") and not isinstance(value, (int, float)):
        return value.value  # enums, str-valued ones included
    return value


def versions() -> dict[str, str]:
    """Installed versions of the libraries portkit drives."""
    found = {}
    for dist in _VERSIONED:
        try:
            found[dist] = metadata.version(dist)
        except metadata.PackageNotFoundError:
            continue
    return found


class JsonReport:
    """Mixin for report dataclasses: the JSON contract is the dataclass's fields as plain types,
    what ``_finish`` derives, and ``exit_code`` for reports that have one."""

    def to_dict(self) -> dict[str, Any]:
        """The JSON contract (docs/ci.md): plain types only, non-finite floats as strings."""
        d = self._finish(plain(dataclasses.asdict(self)))  # type: ignore[call-overload]
        if hasattr(self, "exit_code"):
            d["exit_code"] = int(self.exit_code)
        return d

    def _finish(self, d: dict[str, Any]) -> dict[str, Any]:
        """Derived keys added to (or fields reshaped in) the plain dict."""
        return d

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=2)

    def write_json(self, path: str | Path, flag: str = "--report") -> None:
        """Write the JSON report atomically (``flag`` names it in errors)."""
        atomic_write_text(Path(path), self.to_json() + "\n", flag)


