"""What a model file is: its size and digest (``FileInfo``), what a runtime sees in it
(``ModelInfo``), and ``portkit inspect``'s report."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from pathlib import Path

from portkit.formats import Format
from portkit.formats.pte import ProgramReport
from portkit.formats.tflite import MobileReport
from portkit.results.contract import JsonReport
from portkit.specs import TensorSpec


@dataclass(frozen=True)
class FileInfo:
    """A model file: where, what format, how big, and its digest."""

    path: str
    format: str
    size_bytes: int = 0
    sha256: str = ""

    @classmethod
    def of(cls, path: Path, fmt: str) -> FileInfo:
        """Size and sha256 of a file (or of every file under a directory)."""
        files = sorted(p for p in path.rglob("*") if p.is_file()) if path.is_dir() else [path]
        digest = hashlib.sha256()
        for f in files:
            with f.open("rb") as fh:
                for block in iter(lambda: fh.read(1 << 20), b""):
                    digest.update(block)
        return cls(str(path), fmt, sum(f.stat().st_size for f in files), digest.hexdigest())


@dataclass(frozen=True)
class ModelInfo:
    """What a runtime sees in a model file."""

    format: Format
    inputs: tuple[TensorSpec, ...]
    outputs: tuple[TensorSpec, ...]
    op_counts: dict[str, int] = field(default_factory=dict)
    mobile: MobileReport | None = None  # a .tflite's mobile report
    executorch: ProgramReport | None = None  # a .pte's delegation (formats.pte)


@dataclass(frozen=True)
class Inspection(JsonReport):
    """``portkit inspect``: a model's format, size, inputs, outputs and op histogram."""

    path: str
    size_bytes: int
    info: ModelInfo


