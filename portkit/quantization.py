"""What quantizing a TFLite model did, for the report: the error each op adds, the ops kept in
float (``--keep-float``) and what keeping them cost; plain values only."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class OpError:
    """One op of the float model, compared with the same op of the quantized one on
    representative inputs.

    Attributes:
        name: The op's type and index in the float model (``CONV_2D#3``), as
            ``--keep-float`` takes it.
        tensor: Its output tensor's name (``--keep-float`` takes it too).
        op_type: The TFLite op (``CONV_2D``).
        error: Its output's error in the quantized model: ``||q - f|| / ||f||`` over the
            samples (relative RMS), where the quantized value is dequantized.
        added: What the op adds to the error it was fed: ``error`` minus the largest error
            of its inputs (negative when it damps it).
        quantized: Whether the quantized model computes it in integers (False: float).
    """

    name: str
    tensor: str
    op_type: str
    error: float
    added: float
    quantized: bool = True

    def to_dict(self) -> dict[str, Any]:
        return {"name": self.name, "tensor": self.tensor, "op_type": self.op_type,
                "error": self.error,
                "added": self.added, "quantized": self.quantized}


@dataclass(frozen=True)
class Quantization:
    """How a TFLite artifact was quantized.

    Attributes:
        mode: ``dynamic``, ``int8`` or ``int16x8``.
        tool: What quantized it (``ai-edge-quantizer``).
        recipe: The recipe, in words.
        calibration_samples: Samples calibrated on (0: no calibration).
        held_back: The last samples of ``--calibration`` kept out of calibration to validate
            on (0: validated on ``--inputs`` or seeded inputs).
        ops: Every op's error, worst added first (calibrated modes; empty otherwise).
        keep_float: The ops left in float, by name (``OpError.name``).
        keep_float_auto: Whether portkit chose them (``--keep-float auto``).
        trials: Quantized models built and judged to choose them.
        search_seconds: How long ``--keep-float auto``'s search took (None without it).
        search_peak_mb: The converting worker's peak memory during the search, in MB.
        full_bytes: The file size with every op quantized (None when none was kept float).
        bytes: The file size shipped.
        full_p50_ms: Median latency with every op quantized (TFLite, one thread per core).
        p50_ms: Median latency of the model shipped, timed with it in turns.
        note: What keeping float could not do, when it could not meet the policy.
    """

    mode: str
    tool: str
    recipe: str
    calibration_samples: int = 0
    held_back: int = 0
    ops: tuple[OpError, ...] = ()
    keep_float: tuple[str, ...] = ()
    keep_float_auto: bool = False
    trials: int = 1
    search_seconds: float | None = None
    search_peak_mb: float | None = None
    full_bytes: int | None = None
    bytes: int = 0
    full_p50_ms: float | None = None
    p50_ms: float | None = None
    note: str = ""

    def to_dict(self) -> dict[str, Any]:
        return {"mode": self.mode, "tool": self.tool, "recipe": self.recipe,
                "calibration_samples": self.calibration_samples, "held_back": self.held_back,
                "ops": [o.to_dict() for o in self.ops], "keep_float": list(self.keep_float),
                "keep_float_auto": self.keep_float_auto, "trials": self.trials,
                "search_seconds": self.search_seconds, "search_peak_mb": self.search_peak_mb,
                "full_bytes": self.full_bytes, "bytes": self.bytes,
                "full_p50_ms": self.full_p50_ms, "p50_ms": self.p50_ms, "note": self.note}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Quantization:
        return cls(**{**data, "ops": tuple(OpError(**o) for o in data.get("ops", ())),
                      "keep_float": tuple(data.get("keep_float", ()))})
