"""ExecuTorch programs (``.pte``) through ExecuTorch's C++ runtime bindings (portable kernels,
and the XNNPACK delegate where the program was lowered to it).

A program's bounded inputs take any size up to the one they were planned for; a feed beyond
it is refused with the input, axis and bound named (ExecuTorch itself says only "Attempted to
resize a bounded tensor"). A program calling a kernel this runtime lacks is refused at load
with the kernel named. ``trace`` and ``profile`` run the program again with ETDump (and its
debug buffer): every delegate call's and portable kernel's output, and every XNNPACK node's
time. ``load_decoder`` runs a language model's program (``convert/hf_to_executorch.py``) as a
``Decoder``: its cache lives in the program's mutable buffers.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np

from portkit.errors import InvalidModelError, UsageError
from portkit.formats import Format
from portkit.formats.pte import PteMethod, PteTensor, read_program
from portkit.options import LoadOptions
from portkit.options.generation import Export
from portkit.profiles import OpTime, OpTimes
from portkit.runtimes.base import Runtime, Session
from portkit.runtimes.decoding import Decoder
from portkit.runtimes.registry import register_runtime
from portkit.specs import Dim, TensorSpec
from portkit.traces import TracedTensor

METHOD = "forward"
_DEBUG_BUFFER = 256 * 2**20  # bytes of intermediates ETDump may keep (trace)


def _spec(name: str, t: PteTensor) -> TensorSpec:
    """A bounded tensor's axes free up to their bounds, the bounds its example sizes (the
    sizes memory was planned for; ExecuTorch doesn't record which axis the export let
    change); a static one's fixed."""
    if not t.bounded and not t.unbounded:
        return TensorSpec(name, t.sizes, t.dtype)
    dims = tuple(Dim(f"{name}.{axis}", 1, None if t.unbounded else size)
                 for axis, size in enumerate(t.sizes))
    return TensorSpec(name, t.sizes, t.dtype, dims)


def method_of(path: Path, name: str = METHOD) -> PteMethod:
    """The program's method ``name``.

    Raises:
        InvalidModelError: The program has no such method.
    """
    methods = read_program(path)
    for m in methods:
        if m.name == name:
            return m
    raise InvalidModelError(f"{path}: the program has no method {name!r} (it has "
                            f"{', '.join(m.name for m in methods) or 'none'})")


class ExecutorchSession(Session):
    """One method of a loaded program; inputs are named ``input_N`` (a ``.pte`` keeps no
    names), outputs ``output_N`` as the torch runtime names a module's."""

    def __init__(self, method: Any, meta: PteMethod, path: Path) -> None:
        super().__init__([_spec(f"input_{i}", t) for i, t in enumerate(meta.inputs)],
                         [_spec(f"output_{i}", t) for i, t in enumerate(meta.outputs)])
        self._method = method
        self._meta = meta
        self._path = path
        self._traced_outputs: list[str] = []

    def _tensors(self, feeds: dict[str, np.ndarray]) -> list[Any]:
        import torch

        self.check_bounds(feeds)
        return [torch.from_numpy(np.ascontiguousarray(feeds[s.name])) for s in self.inputs]

    def check_bounds(self, feeds: dict[str, np.ndarray]) -> None:
        """Refuse a feed the program can't take: another rank, another size on a static input,
        or a size beyond a bounded input's bound.

        Raises:
            UsageError: Naming the input, the axis, the size and the bound.
        """
        for spec, t in zip(self.inputs, self._meta.inputs):
            shape = tuple(np.shape(feeds[spec.name]))
            if not t.sizes and not shape:
                continue
            if len(shape) != len(t.sizes):
                raise UsageError(f"{spec.name}: the program takes {len(t.sizes)}-D "
                                 f"{_sizes(t.sizes)}, got {_sizes(shape)}")
            for axis, (size, bound) in enumerate(zip(shape, t.sizes)):
                if t.unbounded or size == bound or (t.bounded and size <= bound):
                    continue
                if not t.bounded:
                    raise UsageError(f"{spec.name}: the program is fixed at {_sizes(t.sizes)}; "
                                     f"it can't take {_sizes(shape)} (axis {axis} is {size}); "
                                     "export it with that dimension dynamic")
                raise UsageError(
                    f"{spec.name}: axis {axis} is {size}, beyond this program's bound of {bound} "
                    f"(it takes up to {_sizes(t.sizes)}); convert again with a larger range "
                    f"(--dim NAME=1..{size}) or feed at most {bound}")

    def _run(self, feeds: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        outputs = self._method.call(self._tensors(feeds))
        return {s.name: _numpy(o) for s, o in zip(self.outputs, outputs)}

    def _debug_run(self, feeds: dict[str, np.ndarray], runs: int, folder: Path,
                   buffer: int) -> tuple[Any, list[np.ndarray]]:
        """Run ``runs`` times with ETDump (and a debug buffer of ``buffer`` bytes): the dump
        read by ExecuTorch's Inspector, and the last run's outputs."""
        from executorch.devtools import Inspector

        module = _bindings()._load_for_executorch(str(self._path), enable_etdump=True,
                                                  debug_buffer_size=buffer)
        tensors = self._tensors(feeds)
        outputs: list[Any] = []
        for _ in range(runs):
            outputs = list(module.run_method(METHOD, tensors))
        folder.mkdir(parents=True, exist_ok=True)
        dump, debug = folder / "run.etdump", folder / "run.debug"
        module.write_etdump_result_to_file(str(dump), str(debug) if buffer else None)
        inspector = Inspector(etdump_path=str(dump),
                              debug_buffer_path=str(debug) if buffer else None)
        return inspector, [_numpy(o) for o in outputs]

    def _trace(self, feeds: dict[str, np.ndarray], folder: Path) -> list[TracedTensor]:
        """The graph inputs, then each delegate call's and portable kernel's outputs, named
        ``delegate#K (XNNPACK: nodes)`` and ``KERNEL#K``: ETDump's debug buffer keeps a
        delegate call's arguments (inputs and outputs) and a kernel call's outputs, of which
        those not seen before are the call's outputs. The program's outputs are the traced
        tensors equal to what the run returned (``traced_outputs``)."""
        from portkit.runtimes.tracing import TensorWriter

        inspector, outputs = self._debug_run(feeds, 1, Path(folder) / "etdump", _DEBUG_BUFFER)
        writer = TensorWriter(folder)
        seen: list[tuple[str, np.ndarray]] = []
        for spec in self.inputs:
            value = np.asarray(feeds[spec.name])
            writer.add(spec.name, value, node="", op_type="input")
            seen.append((spec.name, value))
        delegated: list[str] = []
        calls = {"delegate": 0, "kernel": 0}
        kernel = ""
        for block in inspector.event_blocks:
            if block.name != "Execute":
                continue
            for event in block.events:
                if event.is_delegated_op:
                    delegated.append(str(event.name).split(" #")[0])
                    continue
                if str(event.name).startswith("native_call_"):
                    kernel = str(event.name).removeprefix("native_call_")
                    continue
                if event.name not in ("DELEGATE_CALL", "OPERATOR_CALL"):
                    continue
                if event.name == "DELEGATE_CALL":
                    calls["delegate"] += 1
                    node = (f"delegate#{calls['delegate']} (XNNPACK: "
                            f"{', '.join(dict.fromkeys(delegated)) or 'opaque'})")
                    op_type = "DELEGATE_CALL"
                else:
                    calls["kernel"] += 1
                    node, op_type = f"{kernel or 'kernel'}#{calls['kernel']}", kernel or "kernel"
                delegated, kernel = [], ""
                self._add_outputs(writer, seen, event.debug_data or [], node, op_type)
        self._traced_outputs = [self._output_name(writer, seen, spec.name, value)
                                for spec, value in zip(self.outputs, outputs)]
        return writer.tensors

    @staticmethod
    def _output_name(writer: Any, seen: list[tuple[str, np.ndarray]], name: str,
                     value: np.ndarray) -> str:
        """The traced tensor the program returns as its output ``name``: the last one equal to
        it, else ``value`` traced as ``name`` (an output no instruction's arguments held)."""
        found = next((n for n, v in reversed(seen) if v.shape == value.shape
                      and np.array_equal(v, value)), None)
        if found is None:
            writer.add(name, value, node=name, op_type="output")
            seen.append((name, value))
        return found or name

    def traced_outputs(self) -> list[str]:
        return self._traced_outputs or super().traced_outputs()

    @staticmethod
    def _add_outputs(writer: Any, seen: list[tuple[str, np.ndarray]], values: list[Any],
                     node: str, op_type: str) -> None:
        """Trace an instruction's arguments that are new (its outputs); those equal to a
        tensor traced before (the latest such) are its inputs. A list argument (a split's
        outputs) counts as its tensors."""
        inputs: list[str] = []
        new = 0
        for value in _flat(values):
            array = _numpy(value) if hasattr(value, "numpy") else np.asarray(value)
            if array.dtype.kind not in "biuf":
                continue
            known = next((n for n, v in reversed(seen) if v.shape == array.shape
                          and np.array_equal(v, array)), None)
            if known is not None:
                inputs.append(known)
                continue
            name = f"{node}:{new}"
            new += 1
            writer.add(name, array, node=node, op_type=op_type, inputs=tuple(inputs))
            seen.append((name, array))

    def _profile(self, feeds: dict[str, np.ndarray], runs: int) -> tuple[OpTime, ...]:
        """Each XNNPACK node's and portable kernel's time per run (ETDump), after one run
        that isn't counted."""
        import tempfile

        with tempfile.TemporaryDirectory() as tmp:
            inspector, _ = self._debug_run(feeds, runs + 1, Path(tmp), 0)
        times = OpTimes(runs)
        for block in inspector.event_blocks:
            if block.name != "Execute":
                continue
            portable = 0
            for event in block.events:
                name = str(event.name)
                if event.is_delegated_op:
                    key = (name, name.split(" #")[0], True, "XNNPACK")
                elif name.startswith("native_call_"):
                    portable += 1
                    kind = name.removeprefix("native_call_")
                    key = (f"{kind}#{portable}", kind, False, "portable")
                else:
                    continue
                raw = list(event.perf_data.raw) if event.perf_data else []
                for run, ms in enumerate(raw[1:]):  # the first run warms up
                    times.add(key, run, ms / 1000.0)
        return times.rows()

    def op_counts(self) -> dict[str, int]:
        counts = dict(self._meta.inside())
        for name, n in self._meta.outside().items():
            counts[name] = counts.get(name, 0) + n
        return counts


def _flat(values: Any) -> Iterator[Any]:
    """``values`` with lists and tuples in it replaced by their items, depth first."""
    for value in values:
        if isinstance(value, (list, tuple)):
            yield from _flat(value)
        else:
            yield value


def _numpy(value: Any) -> np.ndarray:
    """A runtime output (a tensor, or a scalar) as numpy, copied."""
    if hasattr(value, "detach"):
        return value.detach().cpu().numpy().copy()
    return np.asarray(value)


def _sizes(shape: tuple[int, ...]) -> str:
    return "x".join(map(str, shape)) or "a scalar"


@register_runtime
class ExecutorchRuntime(Runtime):
    """ExecuTorch's runtime on the CPU (``_load_program``, as ``executorch.runtime`` loads):
    XNNPACK's thread pool set to one thread per core (``--threads``)."""

    name = "executorch"
    formats = (Format.EXECUTORCH,)

    def _load(self, path: Path, fmt: Format, device: str, options: LoadOptions) -> Session:
        meta = method_of(path)
        bindings = _bindings()
        missing = missing_kernels(meta)
        if missing:
            raise InvalidModelError(
                f"{path}: the program calls kernels this ExecuTorch runtime lacks: "
                f"{', '.join(missing)}; lower it with the XNNPACK partitioner, or build the "
                "runtime with those kernels (a selective build that left them out fails the same "
                "way on the phone)")
        threads = options.threads or os.cpu_count() or 1
        if bindings._threadpool_get_thread_count() != threads:
            bindings._unsafe_reset_threadpool(threads)
        program = bindings._load_program(str(path))
        return ExecutorchSession(program.load_method(METHOD), meta, Path(path))


class ExecutorchDecoder(Decoder):
    """A language model's program (``forward(input_ids [1, T], cache_position [T]) -> logits
    [1, T, vocab]``, the static cache in its mutable buffers) as a ``Decoder``.

    A prefill loads ``forward`` afresh (the program has no reset: a new method gets new planned
    memory, which the runtime zeroes, so an empty cache), then runs the prompt in one call where
    ``T`` may reach the prompt's length, else in pieces of the longest ``T`` it takes (one
    token, for a program exported that way). The cache stays hidden (``cache()`` is empty).
    """

    def __init__(self, program: Any, meta: PteMethod, max_seq: int) -> None:
        super().__init__(vocab=meta.outputs[0].sizes[-1], max_seq=max_seq)
        self._program = program
        self._chunk = meta.inputs[0].sizes[1]
        self._forward: Any = None

    def _prefill(self, ids: np.ndarray) -> np.ndarray:
        self._forward = self._program.load_method(METHOD)
        for start in range(0, ids.size, self._chunk):
            logits = self._run(ids[start:start + self._chunk], start)
        return logits

    def _decode(self, token: int) -> np.ndarray:
        return self._run(np.array([token], np.int64), self._length - 1)

    def _run(self, ids: np.ndarray, start: int) -> np.ndarray:
        """``ids`` at positions ``start``...; the last one's logits."""
        import torch

        positions = torch.arange(start, start + ids.size, dtype=torch.long)
        out = self._forward.call([torch.from_numpy(np.ascontiguousarray(ids[None])), positions])
        return _numpy(out[0])[0, -1]


def load_decoder(path: Path, export: Export) -> Decoder:
    """The language model's program at ``path`` as a ``Decoder`` (ExecuTorch's runtime, CPU).

    Args:
        path: A ``.pte`` with ``forward(input_ids, cache_position)`` and the static cache as
            mutable buffers (``convert/hf_to_executorch.py``).
        export: Unused: the cache length is the program's own (its ``get_max_seq_len``).

    Returns:
        An ``ExecutorchDecoder``.

    Raises:
        InvalidModelError: The program is no such decoder (its inputs, or no
            ``get_max_seq_len``), or calls kernels this runtime lacks.
    """
    meta = method_of(path)
    ids = meta.inputs[0] if meta.inputs else None
    if (len(meta.inputs) != 2 or len(meta.outputs) != 1 or ids is None or len(ids.sizes) != 2
            or ids.dtype != "int64" or len(meta.outputs[0].sizes) != 3):
        raise InvalidModelError(
            f"{path}: forward takes {_shapes(meta.inputs)} and returns {_shapes(meta.outputs)}; "
            "a language model's program takes input_ids [1, T] int64 and cache_position [T] "
            "int64 and returns logits [1, T, vocab] (portkit convert DIR --to executorch)")
    missing = missing_kernels(meta)
    if missing:
        raise InvalidModelError(f"{path}: the program calls kernels this ExecuTorch runtime "
                                f"lacks: {', '.join(missing)}")
    program = _bindings()._load_program(str(path))
    names = {program.get_method_name(i) for i in range(program.num_methods())}
    if "get_max_seq_len" not in names:
        raise InvalidModelError(f"{path}: no get_max_seq_len method, so its cache length is "
                                "unknown; export it with its metadata (portkit convert DIR "
                                "--to executorch, or optimum-executorch)")
    max_seq = int(program.load_method("get_max_seq_len").call([])[0])
    return ExecutorchDecoder(program, meta, max_seq)


def _shapes(tensors: tuple[PteTensor, ...]) -> str:
    return ", ".join(f"{_sizes(t.sizes)} {t.dtype}" for t in tensors) or "nothing"


def _bindings() -> Any:
    """ExecuTorch's C++ runtime bindings, imported without ``executorch.runtime``, whose import
    pulls in the whole exporter (ten seconds more)."""
    import torch  # noqa: F401 - the bindings link against libtorch, loaded first
    from executorch.extension.pybindings import _C

    return _C


def missing_kernels(meta: PteMethod) -> list[str]:
    """The portable kernels ``meta`` calls that this runtime has not registered."""
    registered = set(_bindings()._get_operator_names())
    return sorted({k for k in meta.kernels if k not in registered})
