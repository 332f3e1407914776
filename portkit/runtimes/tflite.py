"""TFLite through ``ai_edge_litert`` (CPU, XNNPACK delegate by default).

A file whose signatures take the same inputs at different sizes (``--seq-buckets``: one per
sequence length) runs as one model whose differing axes are free: each run goes to the
signature of the feeds' shapes. A length between buckets is an error naming them, not padded:
padding changes the outputs unless the model masks it, which only its author knows.
"""

from __future__ import annotations

import os
import re
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
from portkit.specs import TensorSpec
from portkit.traces import TracedTensor


def _signature_names(interpreter: Any, kind: str) -> dict[int, str]:
    """Tensor index -> the clean name the model's first signature gives it."""
    signatures = interpreter.get_signature_list()
    if not signatures:
        return {}
    runner = interpreter.get_signature_runner(next(iter(signatures)))
    details = runner.get_input_details() if kind == "inputs" else runner.get_output_details()
    return {d["index"]: name for name, d in details.items()}


def _specs(details: list[dict[str, Any]], names: dict[int, str]) -> list[TensorSpec]:
    """Tensors as specs: a dimension the signature leaves free (-1) is None."""
    return [
        TensorSpec(names.get(d["index"], d["name"]),
                   tuple(int(x) if x >= 0 else None for x in d.get("shape_signature", d["shape"])),
                   np.dtype(d["dtype"]).name)
        for d in details
    ]


def _quantize(x: np.ndarray, detail: dict[str, Any]) -> np.ndarray:
    """A float feed for a quantized (int8/int16) input: ``round(x / scale) + zero_point``."""
    scale, zero = detail["quantization"]
    dtype = np.dtype(detail["dtype"])
    if scale and x.dtype.kind == "f" and dtype.kind in "iu":
        info = np.iinfo(dtype)
        return np.clip(np.round(x / scale) + zero, info.min, info.max).astype(dtype)
    return x.astype(dtype, copy=False)


def _dequantize(y: np.ndarray, detail: dict[str, Any]) -> np.ndarray:
    """A quantized output as float32: ``(y - zero_point) * scale``; others as they are."""
    scale, zero = detail["quantization"]
    if scale and y.dtype.kind in "iu":
        return ((y.astype(np.float32) - zero) * scale).astype(np.float32)
    return y.copy()


class TfliteSession(Session):
    """Quantized inputs take float feeds and quantized outputs come back as float (dequantized
    with the tensor's scale and zero point), so they compare with a float reference."""

    def __init__(self, interpreter: Any, path: Path | None = None, threads: int = 1) -> None:
        self._in = interpreter.get_input_details()
        self._out = interpreter.get_output_details()
        super().__init__(_specs(self._in, _signature_names(interpreter, "inputs")),
                         _specs(self._out, _signature_names(interpreter, "outputs")))
        self._interpreter = interpreter
        self._shapes = {d["index"]: tuple(d["shape"]) for d in self._in}  # as allocated now
        self._path = path
        self._threads = threads
        self._traced_outputs: list[str] = []

    def _trace(self, feeds: dict[str, np.ndarray], folder: Path) -> list[TracedTensor]:
        from portkit.runtimes.tflite_trace import trace_tflite

        if self._path is None:
            return super()._trace(feeds, folder)
        tensors, self._traced_outputs = trace_tflite(
            self._path, [_quantize(feeds[s.name], d) for s, d in zip(self.inputs, self._in)],
            folder, self._threads)
        return tensors

    def traced_outputs(self) -> list[str]:
        return self._traced_outputs or super().traced_outputs()

    def _profile(self, feeds: dict[str, np.ndarray], runs: int) -> tuple[OpTime, ...]:
        from portkit.runtimes.litert_profile import profile_tflite

        if self._path is None:
            return super()._profile(feeds, runs)
        quantized = {s.name: _quantize(feeds[s.name], d) for s, d in zip(self.inputs, self._in)}
        return profile_tflite(str(self._path), quantized, runs, self._threads)

    def _run(self, feeds: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        it = self._interpreter
        self._resize(feeds)
        for spec, d in zip(self.inputs, self._in):
            it.set_tensor(d["index"], np.ascontiguousarray(_quantize(feeds[spec.name], d)))
        it.invoke()
        return {spec.name: _dequantize(it.get_tensor(d["index"]), d)
                for spec, d in zip(self.outputs, self._out)}

    def _resize(self, feeds: dict[str, np.ndarray]) -> None:
        """Resize the inputs to the feeds' shapes (only dimensions the signature leaves free,
        -1: a fixed one is refused) and allocate the tensors again."""
        it = self._interpreter
        changed = [(d, tuple(feeds[spec.name].shape)) for spec, d in zip(self.inputs, self._in)
                   if self._shapes[d["index"]] != tuple(feeds[spec.name].shape)]
        if not changed:
            return
        for d, shape in changed:
            fixed = [i for i, x in enumerate(d.get("shape_signature", d["shape"]))
                     if x >= 0 and i < len(shape) and x != shape[i]]
            if fixed or len(shape) != len(d["shape"]):
                signature = [int(x) for x in d.get("shape_signature", d["shape"])]
                raise ValueError(
                    f"input {d['name']!r} is fixed at {'x'.join(map(str, d['shape']))} in this "
                    f"model (shape_signature {signature}); it "
                    f"can't take {'x'.join(map(str, shape))}: the converter wrote a static "
                    "dimension where the source's is dynamic (--static judges it at the "
                    "example size only)")
            it.resize_tensor_input(d["index"], list(shape), strict=True)
            self._shapes[d["index"]] = shape
        it.allocate_tensors()

    def op_counts(self) -> dict[str, int]:
        return count([op["op_name"] for op in self._interpreter._get_ops_details()])


def buckets(interpreter: Any) -> dict[tuple[tuple[int, ...], ...], str]:
    """Signature name by its inputs' shapes (in its input order), for a file of several
    signatures that take the same inputs (names, dtypes, ranks) and give the same outputs at
    different sizes, as ``--seq-buckets`` writes; empty for any other file."""
    signatures = interpreter.get_signature_list()
    names = {(tuple(v["inputs"]), tuple(v["outputs"])) for v in signatures.values()}
    if len(signatures) < 2 or len(names) > 1:  # a language model's prefill/decode differ here
        return {}
    found: dict[tuple[tuple[int, ...], ...], str] = {}
    kinds = set()
    for name in signatures:
        runner = interpreter.get_signature_runner(name)
        kinds.add(tuple((n, np.dtype(d["dtype"]).name, len(d["shape"])) for details in (
            runner.get_input_details(), runner.get_output_details())
            for n, d in details.items()))
        found[tuple(tuple(int(x) for x in d["shape"])
                    for d in runner.get_input_details().values())] = name
    return found if len(kinds) == 1 and len(found) == len(signatures) else {}


def _free_axes(shapes: list[tuple[int, ...]]) -> tuple[int | None, ...]:
    """One shape with None on every axis where ``shapes`` differ."""
    return tuple(sizes[0] if len(set(sizes)) == 1 else None for sizes in zip(*shapes))


class BucketSession(TfliteSession):
    """A file of one signature per size (``buckets``): its inputs and outputs free along the
    axes the signatures differ on, each run given to the signature of the feeds' shapes."""

    def __init__(self, interpreter: Any, path: Path | None, threads: int,
                 by_shape: dict[tuple[tuple[int, ...], ...], str]) -> None:
        super().__init__(interpreter, path, threads)
        self._by_shape = by_shape
        self._runners = {name: interpreter.get_signature_runner(name)
                         for name in by_shape.values()}
        first = next(iter(self._runners.values()))
        outs = [[tuple(int(x) for x in d["shape"]) for d in r.get_output_details().values()]
                for r in self._runners.values()]
        self.inputs = [TensorSpec(n, _free_axes([k[i] for k in by_shape]),
                                  np.dtype(d["dtype"]).name)
                       for i, (n, d) in enumerate(first.get_input_details().items())]
        self.outputs = [TensorSpec(n, _free_axes([o[i] for o in outs]),
                                   np.dtype(d["dtype"]).name)
                        for i, (n, d) in enumerate(first.get_output_details().items())]

    @property
    def signatures(self) -> dict[str, tuple[tuple[int, ...], ...]]:
        """Each signature's inputs' shapes, by name (smallest first)."""
        return {name: shape for shape, name in sorted(self._by_shape.items())}

    def _run(self, feeds: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        shape = tuple(tuple(feeds[s.name].shape) for s in self.inputs)
        name = self._by_shape.get(shape)
        if name is None:
            have = "; ".join(f"{n} ({', '.join('x'.join(map(str, x)) for x in k)})"
                             for n, k in self.signatures.items())
            fed = ", ".join(f"{s.name} {'x'.join(map(str, x))}"
                            for s, x in zip(self.inputs, shape))
            raise ValueError(f"{fed}: this model holds one signature per length and none "
                             f"takes that: {have}; pad the input to one of them (with the "
                             "token the model masks), or convert again with --seq-buckets "
                             "naming this length")
        runner = self._runners[name]
        ins, outs = runner.get_input_details(), runner.get_output_details()
        got = runner(**{n: np.ascontiguousarray(_quantize(feeds[n], d)) for n, d in ins.items()})
        return {n: _dequantize(got[n], d) for n, d in outs.items()}

    def _profile(self, feeds: dict[str, np.ndarray], runs: int) -> tuple[OpTime, ...]:
        if tuple(feeds[s.name].shape for s in self.inputs) != next(iter(sorted(self._by_shape))):
            raise UsageError("--profile times a bucketed model's first signature only (its "
                             "main subgraph): bench it with --shape at the smallest length")
        return super()._profile(feeds, runs)


ONE_THREAD = "cpu-1thread"


@register_runtime
class TfliteRuntime(Runtime):
    """``ai_edge_litert.interpreter.Interpreter`` (XNNPACK) with one thread per core, and on one
    thread as a device of its own (``cpu-1thread``): multi-threaded kernels may sum in another
    order, and phones often run a model on one thread."""

    name = "tflite"
    formats = (Format.TFLITE,)
    all_devices = ("cpu", ONE_THREAD)

    def devices(self) -> list[str]:
        return ["cpu", ONE_THREAD] if (os.cpu_count() or 1) > 1 else ["cpu"]

    def unavailable(self, device: str) -> str:
        return "one core here: the cpu run already used one thread"

    def verify(self, path: Path) -> None:
        """Let the interpreter read ``path`` (flatbuffer verifier, schema version, kernels for
        every op) without delegates or tensors, which a large model makes slow.

        Raises:
            InvalidModelError: The interpreter refuses the file.
        """
        from ai_edge_litert.interpreter import Interpreter, OpResolverType

        with self.load_errors(path, Format.TFLITE):
            Interpreter(model_path=str(path), experimental_op_resolver_type=(
                OpResolverType.BUILTIN_WITHOUT_DEFAULT_DELEGATES))

    def _load(self, path: Path, fmt: Format, device: str, options: LoadOptions) -> Session:
        from ai_edge_litert.interpreter import Interpreter

        threads = 1 if device == ONE_THREAD else options.threads or os.cpu_count() or 1
        interpreter = Interpreter(model_path=str(path), num_threads=threads)
        interpreter.allocate_tensors()
        by_shape = buckets(interpreter)
        if by_shape:
            return BucketSession(interpreter, path, threads, by_shape)
        return TfliteSession(interpreter, path, threads)


# The inputs a LiteRT LLM signature takes besides its cache (litert_torch.generative.export_hf).
_LLM_INPUTS = ("tokens", "input_pos", "mask")
_PREFILL = re.compile(r"prefill_(\d+)")
_MASKED = np.float32(-1e9)  # an additive mask's "not attended"; the exporter adds its own -1e4


class LiteRtDecoder(Decoder):
    """A TFLite file in the LiteRT LLM layout (``convert/hf_to_tflite.py``) as a ``Decoder``.

    The file holds no state: each signature takes the cache tensors (the inputs it also
    returns, ``kv_cache_k_N`` / ``kv_cache_v_N``) and returns them updated; this keeps them and
    feeds them back. Prefill signatures write the cache without logits, so a prompt of T
    tokens is prefilled up to T-1 (in chunks of the ``prefill_<len>`` lengths: the shortest
    that holds the rest, padded past the prompt where the causal mask hides it and the next
    tokens overwrite it; the longest where none does; token by token through ``decode`` where
    no chunk fits before the cache's end, as a chunk's write would be clamped to it) and its
    last token is decoded, which gives the logits: the order the LiteRT LLM runtime uses.
    The mask is built here: 0 where a position may attend, -1e9 where not; sliding windows are
    applied in the graph from ``input_pos``.
    """

    def __init__(self, interpreter: Any, path: Path) -> None:
        signatures = interpreter.get_signature_list()
        prefill = {int(m.group(1)): name for name in signatures
                   if (m := _PREFILL.fullmatch(name))}
        if "decode" not in signatures:
            found = ", ".join(signatures) or "none"
            raise UsageError(f"{path}: no decode signature (it has {found}); a language model "
                             "in TFLite needs prefill_<len> and decode signatures: convert the "
                             "Hugging Face directory with portkit convert")
        self._decode_runner = interpreter.get_signature_runner("decode")
        ins = self._decode_runner.get_input_details()
        outs = self._decode_runner.get_output_details()
        missing = [n for n in _LLM_INPUTS if n not in ins] + (
            [] if "logits" in outs else ["logits (output)"])
        self._cache_names = [n for n in ins if n in outs]
        extra = [n for n in ins if n not in _LLM_INPUTS and n not in outs]
        if missing or extra or not self._cache_names:
            raise UsageError(
                f"{path}: the decode signature takes {', '.join(ins)} and returns "
                f"{', '.join(outs)}; missing {', '.join(missing) or 'nothing'}, not understood "
                f"{', '.join(extra) or 'nothing'}, cache {'found' if self._cache_names else 'none'}"
                ": portkit runs the LiteRT LLM layout (tokens, input_pos, mask and the cache as "
                "inputs and outputs) that litert_torch.generative.export_hf writes by default")
        self._zeros = {n: np.zeros(ins[n]["shape"], ins[n]["dtype"]) for n in self._cache_names}
        self._mask_dtype = np.dtype(ins["mask"]["dtype"])
        self._prefills = {n: interpreter.get_signature_runner(name)
                         for n, name in sorted(prefill.items())}
        self._state: dict[str, np.ndarray] = dict(self._zeros)
        super().__init__(int(outs["logits"]["shape"][-1]), int(ins["mask"]["shape"][-1]))

    def _run(self, runner: Any, ids: np.ndarray, start: int) -> dict[str, np.ndarray]:
        """Run ``ids`` at positions ``start..``; keep the cache it returns, the rest back."""
        n = ids.size
        positions = np.arange(start, start + n, dtype=np.int32)
        allowed = np.arange(self.max_seq or 0)[None, :] <= positions[:, None]
        if self._mask_dtype == np.bool_:
            mask = allowed
        else:
            mask = np.where(allowed, np.float32(0), _MASKED).astype(self._mask_dtype)
        out = runner(tokens=ids.astype(np.int32).reshape(1, n), input_pos=positions,
                     mask=mask.reshape(1, 1, n, -1), **self._state)
        self._state = {name: out.pop(name) for name in self._cache_names}
        return dict(out)

    def _prefill(self, ids: np.ndarray) -> np.ndarray:
        self._state = dict(self._zeros)
        start, last = 0, ids.size - 1
        while start < last:
            fits = [n for n in self._prefills if start + n <= (self.max_seq or 0)]
            if not fits:  # too near the cache's end for any prefill: one token at a time
                self._run(self._decode_runner, ids[start:start + 1], start)
                start += 1
                continue
            rest = last - start
            length = min((n for n in fits if n >= rest), default=max(fits))
            chunk = ids[start:start + min(rest, length)]
            padded = np.concatenate([chunk, np.zeros(length - chunk.size, np.int64)])
            self._run(self._prefills[length], padded, start)
            start += chunk.size
        return self._run(self._decode_runner, ids[last:], last)["logits"]

    def _decode(self, token: int) -> np.ndarray:
        position = self._length - 1
        return self._run(self._decode_runner, np.array([token], np.int64), position)["logits"]

    def cache(self) -> list[tuple[np.ndarray, np.ndarray]]:
        """Each layer's ``kv_cache_k_N`` and ``kv_cache_v_N`` for the positions used, as
        ``[kv_heads, positions, head_dim]`` (the file's values are ``[.., head_dim, cache]``)."""
        layers = []
        for i in range(sum(n.startswith("kv_cache_k_") for n in self._cache_names)):
            keys, values = self._state.get(f"kv_cache_k_{i}"), self._state.get(f"kv_cache_v_{i}")
            if keys is None or values is None:
                return []
            layers.append((_positions_second(keys, self.max_seq, 1)[:, :self._length],
                           _positions_second(values, self.max_seq, 2)[:, :self._length]))
        return layers


def _positions_second(x: np.ndarray, length: int | None, default: int) -> np.ndarray:
    """A cache tensor ``[1, heads, a, b]`` as ``[heads, positions, head_dim]`` float32: the
    positions' axis is the one ``length`` long, ``default`` (1 or 2 after the batch) if both
    are (the exporter's layout: keys' positions first, values' last)."""
    x = x[0].astype(np.float32)
    axis = default if x.shape[1] == x.shape[2] else (1 if x.shape[1] == length else 2)
    return x if axis == 1 else x.transpose(0, 2, 1)


def load_decoder(path: Path, export: Export) -> Decoder:
    """The TFLite file at ``path`` as a ``Decoder`` (its ``prefill_<len>`` and ``decode``
    signatures, the cache fed back by ``LiteRtDecoder``; one thread per core).

    Args:
        path: A ``.tflite`` in the LiteRT LLM layout (``convert/hf_to_tflite.py``).
        export: Unused: the file's own signatures say its cache and prefill lengths.

    Returns:
        A ``LiteRtDecoder``; its ``max_seq`` is the file's cache length.

    Raises:
        UsageError: The file has no ``decode`` signature, or one portkit can't drive.
    """
    from ai_edge_litert.interpreter import Interpreter

    interpreter = Interpreter(model_path=str(path), num_threads=os.cpu_count() or 1)
    return LiteRtDecoder(interpreter, Path(path))
