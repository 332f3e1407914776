"""ONNX -> TFLite with onnx2tf (inputs and outputs of rank 3-5 become channels-last).

onnx2tf downloads a sample-image file from the internet when every input looks like an image,
unless a file of that name is in the working directory; a seeded stand-in is written there (the
worker's private scratch directory) so conversion never touches the network.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import numpy as np

from portkit.convert.registry import register_edge
from portkit.formats import Format
from portkit.specs import TensorSpec

_SAMPLE_FILE = "calibration_image_sample_data_20x128x128x3_float32.npy"


def _write_offline_sample(folder: Path) -> None:
    sample = np.random.default_rng(0).random((20, 128, 128, 3), dtype=np.float32)
    np.save(folder / _SAMPLE_FILE, sample)


@register_edge(tool="onnx2tf", sources=(Format.ONNX,), target=Format.TFLITE, cost=3.0,
               channels_last=True)
def convert(src: Path, fmt: Format, dst: Path, inputs: list[TensorSpec]) -> str:
    """Convert with ``onnx2tf.convert`` and keep its float32 ``.tflite``."""
    import onnx2tf

    work = Path(os.getcwd())
    _write_offline_sample(work)
    out = work / "onnx2tf_out"
    onnx2tf.convert(
        input_onnx_file_path=str(src),
        output_folder_path=str(out),
        copy_onnx_input_output_names_to_tflite=True,
        not_use_onnxsim=True,
        non_verbose=True,
    )
    produced = out / f"{src.stem}_float32.tflite"
    if not produced.exists():
        raise RuntimeError(f"onnx2tf wrote no {produced.name} (found: {sorted(os.listdir(out))})")
    shutil.move(str(produced), str(dst))
    return "onnx2tf.convert (float32; NCHW inputs become NHWC)"
