"""Checks on a model file made before any framework deserializes it.

PyTorch: a state_dict or a pickled module is refused (``refuse_unloadable``); portkit never
unpickles without ``--trust-model``.

ONNX: every external-data location must stay inside the model's folder (no absolute path, no
``..``, no symlink or hard link out) and its offset and length must lie inside the file, checked
on the ModelProto parsed without external data (CVE-2022-25882, CVE-2024-27318 were path
traversals in ONNX's own loader). SavedModel: a graph holding file-system or process ops is
refused unless trusted.

A Keras file's config can name Python code to run on load: a ``Lambda`` layer carries marshalled
bytecode, and a custom object names any importable callable (``{"module": "os", "class_name":
"function", "config": "system"}``). Keras's ``safe_mode`` refuses Lambda bytecode but imports
modules named in the config; portkit refuses both before Keras sees the file, unless the user
passes ``--trust-model``.
"""

from __future__ import annotations

import json
import zipfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from portkit.errors import InvalidModelError, UnsafeModelError
from portkit.formats import Format

# Config modules Keras resolves itself (its layers, activations, initializers…).
_KERAS_MODULES = ("keras", "keras.", "keras_hub.", "tf_keras.")


def refuse_unloadable(path: Path, fmt: Format) -> None:
    """Refuse what portkit never loads: a state_dict (weights without code) or a pickled module
    (code that runs when unpickled; ``--trust-model`` converts it in a worker instead).

    Raises:
        InvalidModelError: A state_dict.
        UnsafeModelError: A pickled Python object.
    """
    if fmt is Format.STATE_DICT:
        raise InvalidModelError(
            f"{path}: holds only weights (a state_dict), not the model's code; save the model "
            "with torch.export.save(torch.export.export(model, args), 'model.pt2') or "
            "torch.jit.save(torch.jit.trace(model, args), 'model.pt')"
        )
    if fmt is Format.TORCH_PICKLE:
        raise UnsafeModelError(
            f"{path}: a pickled Python object, which runs code when loaded; save it as .pt2 "
            "(torch.export.save) or TorchScript (torch.jit.save), or, if you trust this file, "
            "pass --trust-model (it is unpickled in a worker)"
        )


def check_keras(path: Path, fmt: Format, trust_model: bool) -> None:
    """Refuse a ``.keras``/``.h5`` whose config runs Python code on load, unless trusted.

    Args:
        path: The model file.
        fmt: ``Format.KERAS`` or ``Format.H5``.
        trust_model: ``--trust-model`` was given.

    Raises:
        InvalidModelError: The config can't be read, or it holds a Lambda layer or a custom
            object and the model is not trusted.
    """
    if trust_model:
        return
    found = list(code_in_config(_keras_config(path, fmt)))
    if found:
        raise InvalidModelError(
            f"{path}: {', '.join(found[:5])}{' …' if len(found) > 5 else ''} would run Python "
            "code when the model is loaded; if you trust this file, pass --trust-model"
        )


def code_in_config(config: Any, layer: str = "") -> Iterator[str]:
    """Describe every Lambda layer and custom object in a Keras config, with its layer's name."""
    if isinstance(config, list):
        for item in config:
            yield from code_in_config(item, layer)
        return
    if not isinstance(config, dict):
        return
    inner = config.get("config")
    name = inner.get("name", layer) if isinstance(inner, dict) else layer
    cls = config.get("class_name")
    module = config.get("module")
    if cls == "Lambda":
        yield f"Lambda layer {name!r}"
    elif isinstance(cls, str) and (
        (isinstance(module, str) and not module.startswith(_KERAS_MODULES))
        or ">" in str(config.get("registered_name") or "")  # registered custom: 'pkg>Name'
    ):
        what = f"{module}.{inner}" if cls == "function" and isinstance(inner, str) else (
            f"{module}.{cls}" if module else str(config.get("registered_name")))
        yield f"custom object {what} in layer {name!r}" if name else f"custom object {what}"
        return
    for value in config.values():
        yield from code_in_config(value, name)


def _keras_config(path: Path, fmt: Format) -> Any:
    try:
        if fmt is Format.KERAS:
            with zipfile.ZipFile(path) as zf:
                return json.loads(zf.read("config.json"))
        import h5py

        with h5py.File(path, "r") as f:
            raw = f.attrs.get("model_config")
        if raw is None:
            raise InvalidModelError(
                f"{path}: an HDF5 file without a model config (weights only?); save the whole "
                "model with model.save('model.keras')"
            )
        return json.loads(raw.decode() if isinstance(raw, bytes) else raw)
    except InvalidModelError:
        raise
    except Exception as e:  # noqa: BLE001 - any failure to read the config means a bad file
        raise InvalidModelError(
            f"{path}: cannot read its Keras config ({type(e).__name__}: {e}); re-save the model"
        ) from None


# Ops that read or write files, list directories or run Python: a model has no need of them.
SAVEDMODEL_UNSAFE_OPS = frozenset({
    "ReadFile", "WriteFile", "MatchingFiles", "PyFunc", "PyFuncStateless", "EagerPyFunc",
    "ImmutableConst",
    # debug and summary ops write to files or URLs
    "DebugIdentity", "DebugIdentityV2", "DebugNanCount", "DebugNumericSummary",
    "DebugNumericSummaryV2", "CreateSummaryFileWriter", "WriteSummary", "WriteScalarSummary",
    "WriteHistogramSummary", "WriteImageSummary", "WriteAudioSummary", "WriteGraphSummary",
    "WriteRawProtoSummary", "ImportEvent",
    # datasets that read or write files
    "TextLineDataset", "TFRecordDataset", "TFRecordDatasetV2", "FixedLengthRecordDataset",
    "FixedLengthRecordDatasetV2", "MatchingFilesDataset", "DatasetToTFRecord",
    "SnapshotDataset", "SnapshotDatasetV2", "SaveDataset", "SaveDatasetV2", "LoadDataset",
    # TF1 checkpoint ops (a TF2 SavedModel's own saver uses SaveV2/RestoreV2)
    "Save", "SaveSlices", "Restore", "RestoreSlice",
})


def check_onnx(path: Path) -> None:
    """Refuse ONNX external data that escapes the model's folder or lies outside its file.

    Runs in a worker (it parses the ModelProto, without external data).

    Raises:
        UnsafeModelError: A location is absolute, climbs out with ``..``, or resolves (symlink)
            or links (hard link) to a file outside the folder.
        InvalidModelError: An offset or length lies outside the data file, or it is missing.
    """
    import onnx

    model = onnx.load(str(path), load_external_data=False)
    base = path.parent.resolve()
    tensors = list(_onnx_tensors(model.graph))
    for function in model.functions:
        tensors += list(_node_tensors(function.node))
    for info in model.training_info:
        for graph in (info.initialization, info.algorithm):
            tensors += list(_onnx_tensors(graph))
    for tensor in tensors:
        if tensor.data_location != onnx.TensorProto.EXTERNAL:
            continue
        info = {e.key: e.value for e in tensor.external_data}
        where = f"{path}: tensor {tensor.name!r} keeps its data in {info.get('location')!r}"
        location = Path(info.get("location", ""))
        if not info.get("location") or location.is_absolute() or ".." in location.parts:
            raise UnsafeModelError(f"{where}, outside the model's folder; refused (external "
                                   "data must be a relative path inside the folder)")
        data = base / location
        real = data.resolve()
        if not real.is_relative_to(base):
            raise UnsafeModelError(f"{where}, a link to {real}, outside the model's folder; "
                                   "refused")
        if not real.is_file():
            raise InvalidModelError(f"{where}, which does not exist; copy it beside the model")
        stat = real.stat()
        if stat.st_nlink > 1:
            raise UnsafeModelError(f"{where}, a hard link ({stat.st_nlink} names); refused: "
                                   "copy the data file instead of linking it")
        try:
            offset = int(info.get("offset", 0))
            length = int(info.get("length", stat.st_size - offset))
        except ValueError:
            raise InvalidModelError(f"{where} with an offset or length that is not a number "
                                    f"({info.get('offset')!r}, {info.get('length')!r})") from None
        if offset < 0 or length < 0 or offset + length > stat.st_size:
            raise InvalidModelError(f"{where} at offset {offset}, length {length}, beyond its "
                                    f"{stat.st_size} bytes; the data file is truncated or wrong")


def _onnx_tensors(graph: Any) -> Iterator[Any]:
    """Every tensor of a graph: initializers, sparse initializers and attributes, subgraphs too."""
    yield from graph.initializer
    for sparse in graph.sparse_initializer:
        yield sparse.values
        yield sparse.indices
    yield from _node_tensors(graph.node)


def _node_tensors(nodes: Any) -> Iterator[Any]:
    """Tensors in node attributes (dense and sparse), subgraphs included."""
    for node in nodes:
        for attr in node.attribute:
            if attr.HasField("t"):
                yield attr.t
            yield from attr.tensors
            for sparse in [attr.sparse_tensor] * attr.HasField("sparse_tensor") + list(
                    attr.sparse_tensors):
                yield sparse.values
                yield sparse.indices
            if attr.HasField("g"):
                yield from _onnx_tensors(attr.g)
            for sub in attr.graphs:
                yield from _onnx_tensors(sub)


def check_savedmodel(path: Path, trust_model: bool) -> None:
    """Refuse a SavedModel whose graphs hold file-system or process ops, unless trusted.

    Runs in a worker (it parses ``saved_model.pb`` with TensorFlow's protos).

    Raises:
        UnsafeModelError: Such ops are present and the model is not trusted.
        InvalidModelError: ``saved_model.pb`` can't be parsed.
    """
    if trust_model:
        return
    from tensorflow.core.protobuf import saved_model_pb2

    proto = saved_model_pb2.SavedModel()
    try:
        proto.ParseFromString((path / "saved_model.pb").read_bytes())
    except Exception as e:  # noqa: BLE001 - protobuf's DecodeError and OSError alike
        raise InvalidModelError(f"{path}: saved_model.pb can't be parsed ({e})") from None
    nodes = [n for meta in proto.meta_graphs for n in meta.graph_def.node]
    nodes += [n for meta in proto.meta_graphs for f in meta.graph_def.library.function
              for n in f.node_def]
    bad = sorted({n.op for n in nodes if n.op in SAVEDMODEL_UNSAFE_OPS or (
        n.op == "PrintV2" and n.attr["output_stream"].s.decode(errors="replace")
        .startswith("file"))})
    if bad:
        raise UnsafeModelError(f"{path}: its graph holds {', '.join(bad)}, which read or write "
                               "files or run code; if you trust this model, pass --trust-model")
