"""TensorFlow: SavedModel signatures and Keras models (``.keras``, ``.h5``), on CPU or a GPU.

Keras files load with ``safe_mode=True`` after ``portkit.safety.check_keras`` has read their
config; ``--trust-model`` lifts both. Keras models are called through ``tf.function`` (eager
Keras calls are slower and not what an exported artifact computes).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from portkit.errors import InvalidModelError
from portkit.formats import Format
from portkit.options import LoadOptions
from portkit.runtimes.base import Runtime, Session, count
from portkit.runtimes.registry import register_runtime
from portkit.safety import check_savedmodel
from portkit.specs import TensorSpec
from portkit.traces import TracedTensor

DEFAULT_SIGNATURE = "serving_default"
_DEVICES = {"cpu": "/CPU:0", "gpu": "/GPU:0"}


def load_keras(path: Path, fmt: Format, options: LoadOptions) -> Any:
    """A Keras model from ``.keras``/``.h5``, refused if its config runs code and isn't trusted.

    Raises:
        InvalidModelError: The config names a Lambda layer or custom object (without
            ``--trust-model``), or Keras could not load the file.
    """
    import keras

    from portkit.safety import check_keras

    check_keras(path, fmt, options.trust_model)
    return keras.saving.load_model(str(path), compile=False, safe_mode=not options.trust_model)


def export_keras(model: Any, dst: Path, inputs: list[TensorSpec] | None = None) -> None:
    """``model.export(dst)``: a SavedModel with ``serving_default``; with ``inputs``, its
    signature takes those shapes, ``None`` where ``inputs`` keep a dimension dynamic (its
    ``dims``) and the example size elsewhere (with ``--static`` every size is fixed: a batch-1
    LSTM becomes TFLite builtins, a free-batch one can't). Without ``inputs`` Keras frees the
    batch dimension even of a model built with a fixed ``batch_size``."""
    import tensorflow as tf

    signature = None
    if inputs:
        specs = [tf.TensorSpec(signature_shape(s), s.dtype, name=s.name) for s in inputs]
        signature = specs if len(specs) == 1 else [specs]
    model.export(str(dst), verbose=False, input_signature=signature)


def signature_shape(spec: TensorSpec) -> tuple[int | None, ...] | None:
    """``spec``'s shape with ``None`` on each axis its ``dims`` keep dynamic."""
    if spec.shape is None or not spec.dims:
        return spec.shape
    return tuple(None if d is not None else size for size, d in zip(spec.shape, spec.dims))


def signature(path: Path, loaded: Any, name: str | None) -> tuple[str, Any]:
    """The signature ``name`` of a loaded SavedModel (default: ``serving_default``, else the only
    one).

    Raises:
        InvalidModelError: The SavedModel has no such signature (the error lists those it has).
    """
    names = list(loaded.signatures.keys())
    if name is None:
        name = DEFAULT_SIGNATURE if DEFAULT_SIGNATURE in names or len(names) != 1 else names[0]
    if name not in names:
        raise InvalidModelError(
            f"{path}: no signature {name!r}; it has {', '.join(names) or 'none'}; "
            "pick one with --signature"
        )
    return name, loaded.signatures[name]


def _spec(name: str, t: Any) -> TensorSpec:
    shape = None if t.shape.rank is None else tuple(t.shape.as_list())
    return TensorSpec(name, shape, t.dtype.name)


def keras_name(t: Any) -> str:
    return str(getattr(t, "name", "")).split(":")[0]


class TensorflowSession(Session):
    """Runs a ``tf.function`` taking and returning tensors by name."""

    def __init__(self, fn: Any, inputs: list[TensorSpec], outputs: list[TensorSpec],
                 device: str, ops: dict[str, int], positional: bool, model: Any = None) -> None:
        super().__init__(inputs, outputs)
        self._fn = fn
        self._device = _DEVICES[device]
        self._ops = ops
        self._positional = positional
        self._model = model  # the Keras model, which traces; None for a SavedModel signature
        self._traced_outputs: list[str] = []

    def _trace(self, feeds: dict[str, np.ndarray], folder: Path) -> list[TracedTensor]:
        from portkit.runtimes.keras_trace import trace_keras

        if self._model is None:
            return super()._trace(feeds, folder)
        names = [s.name for s in self.inputs]
        tensors, self._traced_outputs = trace_keras(self._model, [feeds[n] for n in names],
                                                    names, folder, self._device)
        return tensors

    def traced_outputs(self) -> list[str]:
        return self._traced_outputs or super().traced_outputs()

    def _run(self, feeds: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        import tensorflow as tf

        with tf.device(self._device):
            tensors = {s.name: tf.constant(feeds[s.name]) for s in self.inputs}
            if self._positional:
                result = self._fn([tensors[s.name] for s in self.inputs])
            else:
                result = self._fn(**tensors)
        if isinstance(result, dict):
            return {s.name: np.asarray(result[s.name]) for s in self.outputs}
        values = result if isinstance(result, (list, tuple)) else [result]
        return {s.name: np.asarray(v) for s, v in zip(self.outputs, values)}

    def op_counts(self) -> dict[str, int]:
        return self._ops

    def weight_shapes(self) -> list[tuple[int, ...]]:
        weights = self._model.weights if self._model is not None else \
            getattr(self._fn, "variables", ())
        return [tuple(int(d) for d in w.shape) for w in weights]


@register_runtime
class TensorflowRuntime(Runtime):
    """``tf.saved_model.load`` signatures and Keras models, pinned to one device."""

    name = "tensorflow"
    formats = (Format.SAVEDMODEL, Format.KERAS, Format.H5)
    all_devices = ("cpu", "gpu")

    def devices(self) -> list[str]:
        import tensorflow as tf

        return ["cpu"] + (["gpu"] if tf.config.list_physical_devices("GPU") else [])

    def _load(self, path: Path, fmt: Format, device: str, options: LoadOptions) -> Session:
        import tensorflow as tf

        if options.threads:
            tf.config.threading.set_intra_op_parallelism_threads(options.threads)
            tf.config.threading.set_inter_op_parallelism_threads(1)
        if fmt is Format.SAVEDMODEL:
            check_savedmodel(path, options.trust_model)
            with tf.device(_DEVICES[device]):
                loaded = tf.saved_model.load(str(path))
            _name, fn = signature(path, loaded, options.signature)
            inputs = [_spec(k, t) for k, t in fn.structured_input_signature[1].items()]
            outputs = [_spec(k, t) for k, t in fn.structured_outputs.items()]
            session = TensorflowSession(fn, inputs, outputs, device, _graph_ops(fn), False)
            session.keep = loaded  # type: ignore[attr-defined] # the signature needs its object
            return session
        model = load_keras(path, fmt, options)
        inputs = [TensorSpec(keras_name(t), tuple(t.shape), str(t.dtype)) for t in model.inputs]
        names = list(getattr(model, "output_names", None) or [])
        if len(names) != len(model.outputs):
            names = [f"output_{i}" for i in range(len(model.outputs))]
        outputs = [TensorSpec(n, tuple(t.shape), str(t.dtype))
                   for n, t in zip(names, model.outputs)]
        fn = tf.function(lambda xs: model(xs if len(xs) > 1 else xs[0], training=False))
        layers = count([type(layer).__name__ for layer in model.layers])
        return TensorflowSession(fn, inputs, outputs, device, layers, True, model)


def _graph_ops(fn: Any) -> dict[str, int]:
    """Op types in a concrete function's graph and the functions it calls."""
    graph = fn.graph.as_graph_def()
    skip = {"Placeholder", "Identity", "NoOp", "Const", "StatefulPartitionedCall",
            "PartitionedCall", "ReadVariableOp", "_Arg", "_Retval"}
    names = [n.op for n in graph.node]
    names += [n.op for f in graph.library.function for n in f.node_def]
    return count([n for n in names if n not in skip])
