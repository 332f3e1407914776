"""Every node output of an ONNX model, from ONNX Runtime with each one made a graph output.

The model is run in groups of outputs sized so that no group holds more than ``GROUP_BYTES`` of
tensors (shapes from ONNX shape inference; one group when they are unknown), and each group's
values are written to ``.npy`` files before the next runs.

Names: ``node_id`` is the ONNX node's name, as Model Explorer's ONNX adapter
(``model-explorer-onnx``) names its nodes (graph inputs are ``[io]NAME`` there). ``origin`` is
the FX node a value came from when torch.onnx's dynamo exporter made the file: it names values
after FX nodes (``relu``, ``getitem``), records the FX node in the ONNX node's
``pkg.torch.onnx.fx_node`` metadata, and names the values of a multi-node lowering ``val_N``.
"""

from __future__ import annotations

import re
import tempfile
from pathlib import Path
from typing import Any

import numpy as np

from portkit.runtimes.tracing import TensorWriter, traceable
from portkit.traces import TracedTensor

GROUP_BYTES = 1 << 30
FX_NODE_KEY = "pkg.torch.onnx.fx_node"
_FX_NAME = re.compile(r"^%(\S+) :")
_LOWERED = re.compile(r"^val_\d+$")
_ITEMSIZE = {1: 4, 2: 1, 3: 1, 4: 2, 5: 2, 6: 4, 7: 8, 9: 1, 10: 2, 11: 8, 12: 4, 13: 8, 16: 2}


def fx_origin(node: Any, value: str, graph_outputs: set[str]) -> str:
    """The FX node name ``value`` had in the ExportedProgram torch.onnx exported ("" if none)."""
    fx = next((p.value for p in node.metadata_props if p.key == FX_NODE_KEY), "")
    match = _FX_NAME.match(fx)
    if not match or _LOWERED.match(value):
        return ""
    if value in graph_outputs:  # renamed by output_names; the FX node is the producer
        return match.group(1) if len(node.output) == 1 else ""
    return value


def trace_onnx(path: Path, feeds: dict[str, np.ndarray], folder: Path, settings: Any,
               providers: list[str]) -> list[TracedTensor]:
    """Run ``path`` on ONNX Runtime with every top-level node output exposed.

    Args:
        path: The ONNX file.
        feeds: One array per graph input, by name.
        folder: Where the ``.npy`` files go.
        settings: The ``SessionOptions`` the plain session used.
        providers: Its execution providers.

    Returns:
        The graph inputs, then each node's outputs in the graph's (topological) order.
    """
    import onnx
    import onnxruntime

    model = onnx.load(str(path))
    graph = model.graph
    writer = start(graph, feeds, folder)
    wanted = [out for node in graph.node for out in node.output if out]
    sizes = _sizes(model)
    with tempfile.TemporaryDirectory(dir=folder, prefix=".model-") as tmp:
        for group in _groups(wanted, sizes):
            outputs = list(graph.output)
            del graph.output[:]
            graph.output.extend(onnx.helper.make_empty_tensor_value_info(n) for n in group)
            file = Path(tmp) / "traced.onnx"
            onnx.save(model, str(file), save_as_external_data=model.ByteSize() > (1 << 30))
            del graph.output[:]
            graph.output.extend(outputs)
            session = onnxruntime.InferenceSession(str(file), sess_options=settings,
                                                   providers=providers)
            record(writer, graph, dict(zip(group, session.run(group, feeds))))
            del session
    return writer.tensors


def start(graph: Any, feeds: dict[str, np.ndarray], folder: Path) -> TensorWriter:
    """A writer holding the graph's inputs (``[io]NAME`` ids, as Model Explorer's adapter)."""
    initializers = {t.name for t in graph.initializer}
    writer = TensorWriter(folder)
    for name, value in feeds.items():
        if name not in initializers:
            writer.add(name, value, node="", op_type="input", node_id=f"[io]{name}")
    return writer


def record(writer: TensorWriter, graph: Any, values: dict[str, np.ndarray]) -> None:
    """Write the node outputs among ``values`` in the graph's order, dropping each from
    ``values`` once written."""
    graph_outputs = {o.name for o in graph.output}
    for node in graph.node:
        for out in node.output:
            value = values.pop(out, None)
            if value is not None and traceable(value):
                writer.add(out, value, node=node.name, op_type=node.op_type,
                           inputs=tuple(node.input), origin=fx_origin(node, out, graph_outputs),
                           node_id=node.name)


def _sizes(model: Any) -> dict[str, int]:
    """Each value's size in bytes where shape inference knows it."""
    import onnx

    try:
        inferred = onnx.shape_inference.infer_shapes(model).graph
    except Exception:  # noqa: BLE001 - sizes only decide grouping; unknown means one group
        return {}
    sizes = {}
    for info in list(inferred.value_info) + list(inferred.output):
        t = info.type.tensor_type
        dims = [d.dim_value if d.HasField("dim_value") else 0 for d in t.shape.dim]
        if t.HasField("shape") and all(dims or [1]):
            sizes[info.name] = int(np.prod(dims)) * _ITEMSIZE.get(t.elem_type, 8)
    return sizes


def _groups(names: list[str], sizes: dict[str, int]) -> list[list[str]]:
    """``names`` split in order into groups of at most ``GROUP_BYTES`` (unknown sizes count 0)."""
    groups: list[list[str]] = [[]]
    total = 0
    for name in names:
        size = sizes.get(name, 0)
        if groups[-1] and total + size > GROUP_BYTES:
            groups.append([])
            total = 0
        groups[-1].append(name)
        total += size
    return groups
