"""ONNX Runtime: the CPU provider, and the CUDA provider when onnxruntime-gpu sees a GPU.

``load_decoder`` runs a language model exported with its cache as inputs and outputs
(``input_ids``, ``attention_mask``, ``position_ids``, ``past_key_values.N.key/value`` ->
``logits``, ``present.N.key/value``: ``convert/hf_to_onnx.py``, optimum, ONNX Runtime GenAI),
feeding each call's ``present`` back as the next one's past.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from portkit.errors import UsageError
from portkit.formats import Format
from portkit.options import LoadOptions
from portkit.options.generation import Export
from portkit.profiles import OpTime
from portkit.runtimes.base import Runtime, Session, count
from portkit.runtimes.decoding import Decoder
from portkit.runtimes.registry import register_runtime
from portkit.specs import Dim, TensorSpec
from portkit.traces import TracedTensor

_PROVIDERS = {"cpu": "CPUExecutionProvider", "cuda": "CUDAExecutionProvider"}
# 'tensor(float)' -> 'float32'
_ORT_TYPES = {"float": "float32", "double": "float64", "float16": "float16", "int64": "int64",
              "int32": "int32", "int8": "int8", "uint8": "uint8", "bool": "bool"}


def _spec(arg: Any) -> TensorSpec:
    """A graph input or output; a dimension named by ``dim_param`` is a ``Dim`` of that name
    (inputs that share it change together)."""
    shape = tuple(d if isinstance(d, int) else None for d in arg.shape)
    kind = arg.type.removeprefix("tensor(").removesuffix(")")
    dims = tuple(Dim(d) if isinstance(d, str) and d else None for d in arg.shape)
    return TensorSpec(arg.name, shape, _ORT_TYPES.get(kind, kind), dims if any(dims) else ())


class OrtSession(Session):
    def __init__(self, session: Any, path: Path, settings: Any = None,
                 providers: list[str] | None = None) -> None:
        super().__init__([_spec(a) for a in session.get_inputs()],
                         [_spec(a) for a in session.get_outputs()])
        self._session = session
        self._path = path
        self._settings = settings
        self._providers = providers or ["CPUExecutionProvider"]

    def _run(self, feeds: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        names = [s.name for s in self.outputs]
        return dict(zip(names, self._session.run(names, feeds)))

    def _trace(self, feeds: dict[str, np.ndarray], folder: Path) -> list[TracedTensor]:
        from portkit.runtimes.onnx_trace import trace_onnx

        return trace_onnx(self._path, feeds, folder, self._settings, self._providers)

    def _profile(self, feeds: dict[str, np.ndarray], runs: int) -> tuple[OpTime, ...]:
        from portkit.runtimes.onnx_profile import profile_onnx

        return profile_onnx(self._path, feeds, runs, self._settings, self._providers)

    def op_counts(self) -> dict[str, int]:
        import onnx

        graph = onnx.load(str(self._path), load_external_data=False).graph
        return count([n.op_type for n in graph.node])

    def weight_shapes(self) -> list[tuple[int, ...]]:
        import onnx

        graph = onnx.load(str(self._path), load_external_data=False).graph
        return [tuple(i.dims) for i in graph.initializer]


@register_runtime
class OnnxRuntime(Runtime):
    """``onnxruntime.InferenceSession`` with one execution provider per device."""

    name = "onnxruntime"
    formats = (Format.ONNX,)
    all_devices = ("cpu", "cuda")

    def devices(self) -> list[str]:
        import onnxruntime

        available = onnxruntime.get_available_providers()
        return [d for d, p in _PROVIDERS.items() if p in available]

    def _load(self, path: Path, fmt: Format, device: str, options: LoadOptions) -> Session:
        import onnxruntime

        from portkit.safety import check_onnx

        check_onnx(path)

        settings = onnxruntime.SessionOptions()
        settings.log_severity_level = 3
        if options.threads:
            settings.intra_op_num_threads = options.threads
        session = onnxruntime.InferenceSession(
            str(path), sess_options=settings, providers=[_PROVIDERS[device]]
        )
        return OrtSession(session, path, settings, [_PROVIDERS[device]])


class OrtDecoder(Decoder):
    """An ONNX graph with a key/value cache, run on ONNX Runtime's CPU provider: the prefill
    starts from an empty past (length 0), each call's ``present`` is the next one's past, the
    attention mask is all ones over past and new tokens, the positions count on from the
    past's length."""

    def __init__(self, session: Any, path: Path, max_seq: int) -> None:
        inputs = {a.name: a for a in session.get_inputs()}
        outputs = {a.name: a for a in session.get_outputs()}
        count = sum(1 for name in inputs if name.startswith("past_key_values."))
        pasts = [f"past_key_values.{i}.{kv}" for i in range((count + 1) // 2)
                 for kv in ("key", "value")]
        presents = [name.replace("past_key_values.", "present.") for name in pasts]
        missing = ([n for n in ("input_ids", "attention_mask", *pasts) if n not in inputs]
                   + [n for n in ("logits", *presents) if n not in outputs])
        if not count or missing:
            raise UsageError(
                f"{path}: not a decoder with a key/value cache: "
                + (f"{', '.join(missing)} missing" if missing else "no past_key_values.N.key/"
                   "value inputs")
                + "; export it with portkit convert DIR -o model.onnx (or optimum's "
                "text-generation-with-past task)")
        vocab = outputs["logits"].shape[-1]
        if not isinstance(vocab, int):
            raise UsageError(f"{path}: logits' last dimension ({vocab!r}) is not fixed, so the "
                             "vocabulary's size is unknown; export it with a fixed vocabulary")
        super().__init__(vocab, max_seq)
        self._session = session
        self._position_ids = "position_ids" in inputs
        self._pasts, self._outputs = pasts, ["logits", *presents]
        self._empty = [_empty_past(inputs[name], path) for name in pasts]
        self._cache: list[np.ndarray] = []

    def _prefill(self, ids: np.ndarray) -> np.ndarray:
        self._cache = list(self._empty)
        return self._run(ids, 0)

    def _decode(self, token: int) -> np.ndarray:
        return self._run(np.asarray([token], np.int64), self._length - 1)

    def _run(self, ids: np.ndarray, start: int) -> np.ndarray:
        """``ids`` at positions ``start..`` on the kept cache; the last position's logits."""
        total = start + ids.size
        feeds = {"input_ids": ids.reshape(1, -1),
                 "attention_mask": np.ones((1, total), np.int64),
                 **dict(zip(self._pasts, self._cache))}
        if self._position_ids:
            feeds["position_ids"] = np.arange(start, total, dtype=np.int64)[None]
        logits, *self._cache = self._session.run(self._outputs, feeds)
        return logits[0, -1]

    def cache(self) -> list[tuple[np.ndarray, np.ndarray]]:
        """Each layer's (keys, values) from the last call's ``present``, ``[kv_heads,
        positions, head_dim]`` float32: every position so far, a sliding-window layer's too
        (its mask, not its cache, keeps it to the window)."""
        return [(self._cache[i][0].astype(np.float32), self._cache[i + 1][0].astype(np.float32))
                for i in range(0, len(self._cache), 2)]


def _empty_past(arg: Any, path: Path) -> np.ndarray:
    """A past of no positions for the input ``arg`` (``[batch, kv_heads, past, head_dim]``)."""
    shape = arg.shape
    if len(shape) != 4 or not all(isinstance(d, int) for d in (shape[1], shape[3])):
        raise UsageError(f"{path}: input {arg.name} has shape {shape}, not [batch, kv_heads, "
                         "past, head_dim] with kv_heads and head_dim fixed")
    kind = arg.type.removeprefix("tensor(").removesuffix(")")
    return np.zeros((1, shape[1], 0, shape[3]), _ORT_TYPES.get(kind, "float32"))


def load_decoder(path: Path, export: Export) -> Decoder:
    """The ONNX graph at ``path`` as a ``Decoder`` on ONNX Runtime's CPU provider.

    Args:
        path: An ``.onnx`` file with ``input_ids``, ``attention_mask`` (``position_ids``
            where it has one) and ``past_key_values.N.key/value`` in, ``logits`` and
            ``present.N.key/value`` out.
        export: Its ``max_seq`` bounds prompt and generated tokens together.

    Returns:
        An ``OrtDecoder``.

    Raises:
        UsageError: The graph is not a decoder with a cache (what is missing named).
        UnsafeModelError: Its external data lies outside its folder (``check_onnx``).
    """
    import onnxruntime

    from portkit.safety import check_onnx

    check_onnx(path)
    settings = onnxruntime.SessionOptions()
    settings.log_severity_level = 3
    session = onnxruntime.InferenceSession(str(path), sess_options=settings,
                                           providers=[_PROVIDERS["cpu"]])
    return OrtDecoder(session, path, export.max_seq)
