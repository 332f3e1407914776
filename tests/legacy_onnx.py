"""ONNX's own legacy test models (opset 6, exported from PyTorch long ago), shipped inside the
installed ``onnx`` package, with the inputs and outputs ONNX stored beside each."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest


def legacy_model(name: str) -> Path:
    """``onnx/backend/test/data/pytorch-converted/<name>/model.onnx`` (skips without onnx)."""
    onnx = pytest.importorskip("onnx")
    return Path(onnx.__file__).parent / "backend/test/data/pytorch-converted" / name / "model.onnx"


def stored(model: Path, kind: str) -> np.ndarray:
    """The stored ``input_0`` or ``output_0`` of the model's first test data set."""
    import onnx
    from onnx import numpy_helper

    tensor = onnx.TensorProto()
    tensor.ParseFromString((model.parent / "test_data_set_0" / f"{kind}_0.pb").read_bytes())
    return numpy_helper.to_array(tensor)
