"""Generators of hostile and broken model files, built at test time (nothing hostile is in git).

Each takes the folder to write into and the sentinel path a payload would create, and returns
the file (or directory) to hand to portkit.
"""

from __future__ import annotations

import json
import os
import random
import struct
import zipfile
from pathlib import Path

import numpy as np


class _Payload:
    """Unpickling this creates the sentinel file (what a malicious .pt would do)."""

    def __init__(self, sentinel: Path) -> None:
        self.sentinel = sentinel

    def __reduce__(self) -> tuple[object, tuple[str]]:
        return (os.system, (f"touch {self.sentinel}",))


def pickle_zip(folder: Path, sentinel: Path) -> Path:
    import torch

    path = folder / "payload.pt"
    torch.save({"model": _Payload(sentinel)}, path)
    return path


def pickle_legacy(folder: Path, sentinel: Path) -> Path:
    import torch

    path = folder / "payload_legacy.pt"
    torch.save({"model": _Payload(sentinel)}, path, _use_new_zipfile_serialization=False)
    return path


def _torchscript(folder: Path) -> Path:
    import torch

    path = folder / "good.pt"
    torch.jit.save(torch.jit.trace(torch.nn.Linear(4, 2).eval(), torch.zeros(1, 4)), str(path))
    return path


def torchscript_truncated(folder: Path, sentinel: Path) -> Path:
    data = _torchscript(folder).read_bytes()
    path = folder / "truncated.pt"
    path.write_bytes(data[: len(data) // 2])
    return path


def torchscript_bitflipped(folder: Path, sentinel: Path) -> Path:
    data = bytearray(_torchscript(folder).read_bytes())
    for i in range(200, len(data) - 200, 97):  # flip bits across the archive, headers included
        data[i] ^= 0x5A
    path = folder / "bitflipped.pt"
    path.write_bytes(bytes(data))
    return path


def zip_bomb(folder: Path, sentinel: Path) -> Path:
    """A few-KB .pt whose central directory declares a 4 GB member."""
    path = folder / "bomb.pt"
    with zipfile.ZipFile(path, "w", compression=zipfile.ZIP_DEFLATED) as zf:
        zf.writestr("archive/data.pkl", b"\0" * 4096)
        zf.writestr("archive/version", b"3\n")
    data = bytearray(path.read_bytes())
    header = data.index(b"PK\x01\x02")  # the first central-directory entry: data.pkl
    struct.pack_into("<I", data, header + 24, 0xFFFF0000)  # its uncompressed size
    path.write_bytes(bytes(data))
    return path


def _onnx_with_external(folder: Path, location: str, offset: int | str = 0,
                        length: int | None = None) -> Path:
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    weight = numpy_helper.from_array(np.zeros(4, np.float32), "w")
    weight.ClearField("raw_data")
    weight.data_location = TensorProto.EXTERNAL
    entries = {"location": location, "offset": str(offset), "length": str(length or 16)}
    for k, v in entries.items():
        weight.external_data.add(key=k, value=v)
    graph = helper.make_graph(
        [helper.make_node("Add", ["x", "w"], ["y"])], "g",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [4])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [4])], initializer=[weight])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    path = folder / "model" / "external.onnx"
    path.parent.mkdir(exist_ok=True)
    onnx.save(model, str(path))
    return path


def _secret(folder: Path) -> Path:
    secret = folder / "secret.bin"  # outside the model's folder
    secret.write_bytes(np.arange(4, dtype=np.float32).tobytes())
    return secret


def onnx_parent_dir(folder: Path, sentinel: Path) -> Path:
    _secret(folder)
    return _onnx_with_external(folder, "../secret.bin")


def onnx_absolute(folder: Path, sentinel: Path) -> Path:
    return _onnx_with_external(folder, str(_secret(folder).absolute()))


def onnx_symlink_out(folder: Path, sentinel: Path) -> Path:
    path = _onnx_with_external(folder, "weights.bin")
    (path.parent / "weights.bin").symlink_to(_secret(folder))
    return path


def onnx_hardlink(folder: Path, sentinel: Path) -> Path:
    path = _onnx_with_external(folder, "weights.bin")
    os.link(_secret(folder), path.parent / "weights.bin")
    return path


def onnx_offset_beyond(folder: Path, sentinel: Path) -> Path:
    path = _onnx_with_external(folder, "weights.bin", offset=1 << 20, length=16)
    (path.parent / "weights.bin").write_bytes(np.zeros(4, np.float32).tobytes())
    return path


def onnx_endless_loop(folder: Path, sentinel: Path) -> Path:
    """A Loop with a trip count of 2**62: ONNX Runtime runs it until it is stopped."""
    import onnx
    from onnx import TensorProto, helper

    body = helper.make_graph(
        [helper.make_node("Identity", ["cond_in"], ["cond_out"]),
         helper.make_node("Add", ["acc_in", "acc_in"], ["acc_out"])], "body",
        [helper.make_tensor_value_info("i", TensorProto.INT64, []),
         helper.make_tensor_value_info("cond_in", TensorProto.BOOL, []),
         helper.make_tensor_value_info("acc_in", TensorProto.FLOAT, [4])],
        [helper.make_tensor_value_info("cond_out", TensorProto.BOOL, []),
         helper.make_tensor_value_info("acc_out", TensorProto.FLOAT, [4])])
    graph = helper.make_graph(
        [helper.make_node("Loop", ["trips", "cond", "x"], ["y"], body=body)], "g",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [4])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [4])],
        initializer=[helper.make_tensor("trips", TensorProto.INT64, [], [2**62]),
                     helper.make_tensor("cond", TensorProto.BOOL, [], [True])])
    path = folder / "loop.onnx"
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), str(path))
    return path


def tflite_8_bytes(folder: Path, sentinel: Path) -> Path:
    path = folder / "tiny.tflite"
    path.write_bytes(b"\x04\x00\x00\x00TFL3")
    return path


def tflite_model(folder: Path) -> Path:
    """A small valid ``.tflite`` (two dense layers), the file the TFLite cases break."""
    import tensorflow as tf

    model = tf.keras.Sequential([tf.keras.Input((4,)), tf.keras.layers.Dense(8, "relu"),
                                 tf.keras.layers.Dense(2)])
    path = folder / "model.tflite"
    path.write_bytes(tf.lite.TFLiteConverter.from_keras_model(model).convert())
    return path


def tflite_truncated(folder: Path, sentinel: Path) -> Path:
    data = tflite_model(folder).read_bytes()
    path = folder / "truncated.tflite"
    path.write_bytes(data[: len(data) // 3])
    return path


def fuzzed(model: Path, folder: Path, seed: int, changes: int = 3) -> Path:
    """A copy of ``model`` with ``changes`` random bytes set to random values (seeded)."""
    rng = random.Random(seed)
    data = bytearray(model.read_bytes())
    for _ in range(changes):
        data[rng.randrange(len(data))] = rng.randrange(256)
    path = folder / f"fuzzed{seed}{model.suffix}"
    path.write_bytes(bytes(data))
    return path


def keras_callable(folder: Path, sentinel: Path) -> Path:
    """A .keras whose config makes ``os.system`` a Dense layer's activation."""
    dense = {"module": "keras.layers", "class_name": "Dense", "registered_name": None,
             "config": {"name": "dense", "units": 2,
                        "activation": {"module": "os", "class_name": "function",
                                       "config": "system", "registered_name": "function"}}}
    config = {"module": "keras", "class_name": "Sequential", "registered_name": None,
              "config": {"name": "seq", "layers": [dense]}}
    path = folder / "callable.keras"
    with zipfile.ZipFile(path, "w") as zf:
        zf.writestr("config.json", json.dumps(config))
        zf.writestr("metadata.json", json.dumps({"keras_version": "3.15.1"}))
    return path


def keras_lambda(folder: Path, sentinel: Path) -> Path:
    """A .keras whose Lambda layer would create the sentinel when the model runs."""
    import keras

    target = str(sentinel)
    x = keras.Input((4,), name="x")
    y = keras.layers.Lambda(lambda t: (open(target, "w").close(), t)[1], name="touch")(x)
    path = folder / "lambda.keras"
    keras.Model(x, y).save(path)
    if sentinel.exists():
        sentinel.unlink()  # building the model ran the lambda once
    return path


def savedmodel_writefile(folder: Path, sentinel: Path) -> Path:
    """A SavedModel whose serving signature writes the sentinel file."""
    import tensorflow as tf

    class Writer(tf.Module):
        @tf.function(input_signature=[tf.TensorSpec((1, 4), tf.float32, name="x")],
                     autograph=False)
        def serve(self, x: tf.Tensor) -> dict[str, tf.Tensor]:
            with tf.control_dependencies([tf.io.write_file(str(sentinel), "pwned")]):
                return {"y": tf.identity(x)}

    module = Writer()
    path = folder / "writer_savedmodel"
    tf.saved_model.save(module, str(path), signatures={"serving_default": module.serve})
    return path


def npz_object_array(folder: Path, sentinel: Path) -> Path:
    path = folder / "inputs.npz"
    np.savez(path, x=np.array([_Payload(sentinel)], dtype=object))
    return path
