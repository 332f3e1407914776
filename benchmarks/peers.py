"""The peer tools, each doing one hop the way its documentation shows, alone.

Run one as ``python -m benchmarks.peers TOOL SRC DST [--calibration FILE]``: a fresh process
per conversion, so its wall time includes its imports, as portkit's does. ``onnx2tf`` is not
here: it runs as its own command-line tool (``onnx2tf -i model.onnx -o folder``).

The quantizing peers (``litert-torch-pt2e``, ``litert-torch+aeq``) make static int8 (int8
weights and activations, float inputs and outputs) from ``--calibration`` data, one sample per
entry on the leading axis, and dynamic-range int8 (int8 weights, float activations) without it.
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


def _calibration_samples(calibration: Path, inputs: list[TensorSpec]) -> list[dict[str, Any]]:
    from portkit.specs import load_inputs_file

    return load_inputs_file(str(calibration), inputs, what="--calibration")


def litert_torch_pt2e(src: Path, dst: Path, inputs: list[TensorSpec],
                      calibration: Path | None) -> None:
    """litert-torch's own PT2E quantization, as its README shows: ``PT2EQuantizer`` with the
    symmetric per-channel config (``is_dynamic`` without calibration data), ``prepare_pt2e``,
    the calibration samples (or the example inputs) through the model, ``convert_pt2e``, then
    ``litert_torch.convert(..., quant_config=QuantConfig(pt2e_quantizer=...))``."""
    import litert_torch
    import torch
    from litert_torch.quantize.pt2e_quantizer import (
        PT2EQuantizer,
        get_symmetric_quantization_config,
    )
    from litert_torch.quantize.quant_config import QuantConfig
    from torchao.quantization.pt2e.quantize_pt2e import convert_pt2e, prepare_pt2e

    program, args = _torch_program(src, inputs)
    quantizer = PT2EQuantizer().set_global(get_symmetric_quantization_config(
        is_per_channel=True, is_dynamic=calibration is None))
    samples = ([tuple(torch.from_numpy(s[i.name]) for i in inputs)
                for s in _calibration_samples(calibration, inputs)]
               if calibration is not None else [args])
    with torch.no_grad():
        model = prepare_pt2e(program.module(), quantizer)
        for sample in samples:
            model(*sample)
        model = convert_pt2e(model, fold_quantize=False)
        litert_torch.convert(model, args, quant_config=QuantConfig(pt2e_quantizer=quantizer)
                             ).export(str(dst))


def litert_torch_aeq(src: Path, dst: Path, inputs: list[TensorSpec],
                     calibration: Path | None) -> None:
    """The path a user scripts by hand: ``litert_torch.convert`` to a float TFLite file, then
    ai-edge-quantizer's ``Quantizer`` with the ``static_wi8_ai8`` recipe (calibrated on the
    float model's ``serving_default`` signature) or ``dynamic_wi8_afp32``."""
    import litert_torch
    from ai_edge_litert.interpreter import Interpreter
    from ai_edge_quantizer import quantizer, recipe

    program, args = _torch_program(src, inputs)
    float_path = dst.with_name(f"{dst.stem}_float.tflite")
    litert_torch.convert(program.module(), args).export(str(float_path))
    chosen = recipe.static_wi8_ai8() if calibration is not None else recipe.dynamic_wi8_afp32()
    quant = quantizer.Quantizer(str(float_path), chosen)
    result = None
    if calibration is not None:
        runner = Interpreter(model_path=str(float_path)).get_signature_runner("serving_default")
        details = runner.get_input_details()
        # litert-torch names the signature's inputs args_0, args_1... in the module's order
        names = sorted(details, key=lambda n: int(n.rsplit("_", 1)[-1]))
        data = [{n: s[i.name].astype(details[n]["dtype"]) for n, i in zip(names, inputs,
                                                                          strict=True)}
                for s in _calibration_samples(calibration, inputs)]
        result = quant.calibrate({"serving_default": data})
    quant.quantize(result).export_model(str(dst), overwrite=True)


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
    "litert-torch-pt2e": litert_torch_pt2e,
    "litert-torch+aeq": litert_torch_aeq,
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
