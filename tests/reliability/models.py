"""Small ONNX files the reliability tests build at test time: a harmless one, and memory bombs
whose one node asks for 1e10 float32 elements (37.3 GB)."""

from __future__ import annotations

from pathlib import Path

import numpy as np

BOMB_SHAPE = (100_000, 100_000)


def _save(nodes: list, inputs: list, initializers: list, path: Path) -> Path:
    import onnx
    from onnx import TensorProto, helper

    out = helper.make_tensor_value_info("y", TensorProto.FLOAT, None)
    graph = helper.make_graph(nodes, path.stem, inputs, [out], initializers)
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), path)
    return path


def relu(folder: Path) -> Path:
    """``y = relu(x)``, x float 1x4: a model every route converts."""
    from onnx import TensorProto, helper

    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 4])
    return _save([helper.make_node("Relu", ["x"], ["y"])], [x], [], folder / "relu.onnx")


def expand_bomb(folder: Path) -> Path:
    """A 1x1 input expanded to 100000x100000."""
    from onnx import TensorProto, helper, numpy_helper

    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 1])
    shape = numpy_helper.from_array(np.array(BOMB_SHAPE, dtype=np.int64), "shape")
    return _save([helper.make_node("Expand", ["x", "shape"], ["y"])], [x], [shape],
                 folder / "expand_bomb.onnx")


def constant_bomb(folder: Path) -> Path:
    """ConstantOfShape with a 100000x100000 shape initializer, added to the input."""
    from onnx import TensorProto, helper, numpy_helper

    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, [1])
    shape = numpy_helper.from_array(np.array(BOMB_SHAPE, dtype=np.int64), "shape")
    nodes = [helper.make_node("ConstantOfShape", ["shape"], ["c"]),
             helper.make_node("Add", ["x", "c"], ["y"])]
    return _save(nodes, [x], [shape], folder / "constant_bomb.onnx")


def linear_pt2(folder: Path) -> Path:
    """Issue 27's setup: ``Linear(8, 4) + ReLU`` (seed 0) exported as ``folder/m.pt2``, input
    1x8 float32."""
    import torch

    torch.manual_seed(0)
    module = torch.nn.Sequential(torch.nn.Linear(8, 4), torch.nn.ReLU()).eval()
    path = folder / "m.pt2"
    torch.export.save(torch.export.export(module, (torch.randn(1, 8),)), str(path))
    return path
