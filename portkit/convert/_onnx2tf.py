"""Running onnx2tf offline: shared by the ONNX -> TFLite and ONNX -> SavedModel edges.

onnx2tf downloads a sample-image file from the internet when every input looks like an image,
unless a file of that name is in the working directory; a seeded stand-in is written there (the
worker's private scratch directory) so conversion never touches the network.

onnx2tf also writes to the ONNX file it is given (sng4onnx names unnamed nodes in place, and its
shape fixes save over the input): it is given a copy in the scratch directory, never the user's
file (seen: the round trip dropped initializers an ``If`` branch reads, breaking the source).
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path
from typing import Any

import numpy as np

_SAMPLE_FILE = "calibration_image_sample_data_20x128x128x3_float32.npy"


def run(src: Path, **kwargs: Any) -> tuple[Any, Path]:
    """``onnx2tf.convert`` on ``src`` into ``./onnx2tf_out``, offline and quiet.

    Returns:
        What onnx2tf returned (its tf_keras model) and the output folder.
    """
    import onnx2tf

    from portkit.safety import check_onnx

    check_onnx(src)

    work = Path(os.getcwd())
    src = _private_copy(src, work / "onnx2tf_in")
    sample = np.random.default_rng(0).random((20, 128, 128, 3), dtype=np.float32)
    np.save(work / _SAMPLE_FILE, sample)
    out = work / "onnx2tf_out"
    model = onnx2tf.convert(
        input_onnx_file_path=str(src),
        output_folder_path=str(out),
        copy_onnx_input_output_names_to_tflite=True,
        not_use_onnxsim=True,
        non_verbose=True,
        # Else outputs bigger than free memory go to a file-backed map in TMPDIR, which the
        # worker's memory limit does not count: a memory bomb fills the disk for minutes.
        onnxruntime_output_memmap=False,
        **kwargs,
    )
    return model, out


def _private_copy(src: Path, folder: Path) -> Path:
    """``src`` and the external data files it names (``check_onnx`` keeps them beside it),
    copied into ``folder``, so nothing onnx2tf writes reaches the original."""
    import onnx
    from onnx.external_data_helper import _get_all_tensors, uses_external_data

    folder.mkdir(exist_ok=True)
    model = onnx.load(str(src), load_external_data=False)
    for tensor in _get_all_tensors(model):
        if uses_external_data(tensor):
            location = next(e.value for e in tensor.external_data if e.key == "location")
            (folder / location).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(src.parent / location, folder / location)
    shutil.copy2(src, folder / src.name)
    return folder / src.name
