"""Keras (``.keras``, ``.h5``) -> SavedModel with ``model.export`` (``serving_default`` and
``serve`` signatures; inputs keep the Keras input names, outputs are ``output_0``…; a dimension
the inputs keep dynamic is ``None`` in the signature, ``--static`` fixes every one)."""

from __future__ import annotations

from pathlib import Path

from portkit.convert.registry import register_edge
from portkit.formats import Format
from portkit.options import ConvertOptions
from portkit.runtimes.tensorflow import export_keras, load_keras
from portkit.specs import TensorSpec


@register_edge(tool="keras.export", sources=(Format.KERAS, Format.H5), target=Format.SAVEDMODEL,
               cost=1.0)
def convert(src: Path, fmt: Format, dst: Path, inputs: list[TensorSpec],
            options: ConvertOptions) -> str:
    """Load the Keras model (safe mode unless trusted) and ``model.export(dst)`` with the
    inputs' signature."""
    export_keras(load_keras(src, fmt, options.load), dst, inputs)
    return "keras Model.export (signatures serving_default, serve)"
