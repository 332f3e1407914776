"""The ``Format`` enum (each format's suffixes and framework family) and the names ``--to``
accepts (``TARGETS``).

Its own module, not the package's ``__init__``, so that ``sniff`` can import it without importing
the package that re-exports both (``from portkit.formats import Format, sniff``).
"""

from __future__ import annotations

import enum


class Format(str, enum.Enum):
    """A model format portkit can read or write."""

    TORCHSCRIPT = "torchscript"
    EXPORTED_PROGRAM = "exported-program"
    TORCH_PICKLE = "torch-pickle"
    STATE_DICT = "state-dict"
    ONNX = "onnx"
    TFLITE = "tflite"
    SAVEDMODEL = "savedmodel"
    KERAS = "keras"
    H5 = "h5"
    EXECUTORCH = "executorch"
    HUGGINGFACE = "huggingface"  # a transformers model directory (config.json + safetensors)

    @property
    def suffix(self) -> str:
        """The file suffix an artifact of this format is written with."""
        return _SUFFIXES[self]

    @property
    def suffixes(self) -> tuple[str, ...]:
        """Every suffix an artifact of this format may be written with (``suffix`` first):
        TorchScript also as ``.torchscript``, as Ultralytics and others name it."""
        return (self.suffix, *_OTHER_SUFFIXES.get(self, ()))

    @property
    def framework(self) -> str:
        """The framework family: torch, onnx, tflite, tensorflow or executorch."""
        return _FRAMEWORKS[self]


_SUFFIXES = {
    Format.TORCHSCRIPT: ".pt",
    Format.EXPORTED_PROGRAM: ".pt2",
    Format.TORCH_PICKLE: ".pt",
    Format.STATE_DICT: ".pt",
    Format.ONNX: ".onnx",
    Format.TFLITE: ".tflite",
    Format.SAVEDMODEL: "",
    Format.KERAS: ".keras",
    Format.H5: ".h5",
    Format.EXECUTORCH: ".pte",
    Format.HUGGINGFACE: "",
}
_OTHER_SUFFIXES = {Format.TORCHSCRIPT: (".torchscript",)}
_FRAMEWORKS = {
    Format.TORCHSCRIPT: "torch",
    Format.EXPORTED_PROGRAM: "torch",
    Format.TORCH_PICKLE: "torch",
    Format.STATE_DICT: "torch",
    Format.ONNX: "onnx",
    Format.TFLITE: "tflite",
    Format.SAVEDMODEL: "tensorflow",
    Format.KERAS: "tensorflow",
    Format.H5: "tensorflow",
    Format.EXECUTORCH: "executorch",
    Format.HUGGINGFACE: "transformers",
}

# Names accepted by ``--to``.
TARGETS = {
    "onnx": Format.ONNX,
    "tflite": Format.TFLITE,
    "savedmodel": Format.SAVEDMODEL,
    "saved_model": Format.SAVEDMODEL,
    "torchscript": Format.TORCHSCRIPT,
    "pt2": Format.EXPORTED_PROGRAM,
    "exported-program": Format.EXPORTED_PROGRAM,
    "executorch": Format.EXECUTORCH,
    "pte": Format.EXECUTORCH,
}

