"""The peer tools, each doing one hop the way its documentation shows, alone.

Run one as ``python -m benchmarks.peers TOOL SRC DST [--calibration FILE]``: a fresh process
per conversion, so its wall time includes its imports, as portkit's does. ``onnx2tf`` is not
here: it runs as its own command-line tool (``onnx2tf -i model.onnx -o folder``).
"""

from __future__ import annotations

import argparse
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from portkit.specs import TensorSpec, make_inputs


def _torch_program(src: Path, inputs: list[TensorSpec]) -> tuple[Any, tuple[Any, ...]]:
    import torch

    args = tuple(torch.from_numpy(a) for a in make_inputs(inputs, seed=0).values())
    return torch.export.load(str(src)), args


def torch_onnx(src: Path, dst: Path, inputs: list[TensorSpec], calibration: Path | None) -> None:
    """``torch.onnx.export`` (the dynamo exporter, its default) on the ExportedProgram."""
    import torch

    program, args = _torch_program(src, inputs)
    torch.onnx.export(program, args, str(dst), dynamo=True, external_data=False,
                      input_names=[s.name for s in inputs])


def litert_torch(src: Path, dst: Path, inputs: list[TensorSpec], calibration: Path | None) -> None:
    """``litert_torch.convert(module, args).export(path)``."""
    import litert_torch

    program, args = _torch_program(src, inputs)
    litert_torch.convert(program.module(), args).export(str(dst))


def _keras_model(src: Path) -> Any:
    import keras

    return keras.saving.load_model(str(src))


def tf2onnx(src: Path, dst: Path, inputs: list[TensorSpec], calibration: Path | None) -> None:
    """``tf2onnx.convert.from_keras`` with the model's input signature, opset 18 (its newest)."""
    import tensorflow as tf
    import tf2onnx as t2o

    model = _keras_model(src)
    signature = [tf.TensorSpec(s.shape, s.dtype, name=s.name) for s in inputs]
    t2o.convert.from_keras(model, input_signature=signature, opset=18, output_path=str(dst))


def tflite_converter(src: Path, dst: Path, inputs: list[TensorSpec],
                     calibration: Path | None) -> None:
    """``tf.lite.TFLiteConverter.from_keras_model``; with calibration data, full-integer int8
    (``TFLITE_BUILTINS_INT8``, float inputs and outputs) from a representative dataset."""
    import tensorflow as tf

    converter = tf.lite.TFLiteConverter.from_keras_model(_keras_model(src))
    if calibration is not None:
        data = np.load(calibration)
        name = inputs[0].name
        converter.optimizations = [tf.lite.Optimize.DEFAULT]
        converter.representative_dataset = lambda: ([x[None]] for x in data[name])
        converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
    dst.write_bytes(converter.convert())


PEERS: dict[str, Callable[[Path, Path, list[TensorSpec], Path | None], None]] = {
    "torch.onnx": torch_onnx,
    "litert-torch": litert_torch,
    "tf2onnx": tf2onnx,
    "tflite-converter": tflite_converter,
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("tool", choices=sorted(PEERS))
    parser.add_argument("src", type=Path)
    parser.add_argument("dst", type=Path)
    parser.add_argument("--input", action="append", default=[], help="NAME:SHAPE[:DTYPE]")
    parser.add_argument("--calibration", type=Path)
    args = parser.parse_args()
    from portkit.specs import parse_input_flag

    PEERS[args.tool](args.src, args.dst, [parse_input_flag(s) for s in args.input],
                     args.calibration)


if __name__ == "__main__":
    main()
