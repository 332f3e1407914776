"""Per-op times of a TFLite model from LiteRT's own profiler.

``ai_edge_litert``'s Python ``Interpreter`` and ``CompiledModel`` expose no profiler, but the
``libLiteRt.so`` shipped beside them exports the C API that does (``LiteRtCompiledModel`` with
the ``runtime_options_string`` option ``enable_profiling``, ``LiteRtCompiledModelGetProfiler``,
``LiteRtGetProfilerEvents``). This module drives it through ``ctypes``: the same file, compiled
for the CPU accelerator (XNNPACK, same thread count), run ``runs`` times after one untimed run.

Events read: ``OPERATOR_INVOKE_EVENT`` (a node run by TFLite's builtin kernels: the op fell back
from XNNPACK) and ``DELEGATE_PROFILED_OPERATOR_INVOKE_EVENT`` (an XNNPACK operator inside the
delegate). A control-flow node (``WHILE``, ``IF``) keeps only its own time (its elapsed time
less its subgraphs' ops, which are rows of their own), so the rows add up to a run. Each op's
time is its median over the runs; events are timed in whole microseconds.
"""

from __future__ import annotations

import ctypes as C
import functools
import os
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import numpy as np

from portkit.errors import InternalError, UsageError
from portkit.profiles import OpKey, OpTime, OpTimes

_P = C.c_void_p
_DESTRUCTOR = C.CFUNCTYPE(None, C.c_void_p)
_KEEP = _DESTRUCTOR(lambda _: None)  # the option strings are owned here, kept alive by the caller
_DEFAULT, _OPERATOR, _DELEGATE_PROFILED, _INSTRUMENTATION = 1, 2, 8, 32
_LOCK_READ_WRITE = 2


class _Memory(C.Structure):
    _fields_ = [("a", C.c_int64), ("b", C.c_int64), ("c", C.c_int64)]


class _Event(C.Structure):
    """``ProfiledEventData`` as ai-edge-litert 2.3 lays it out (104 bytes)."""

    _fields_ = [("tag", C.c_char_p), ("event_type", C.c_int), ("start_us", C.c_uint64),
                ("elapsed_us", C.c_uint64), ("begin_mem", _Memory), ("end_mem", _Memory),
                ("metadata1", C.c_uint64), ("metadata2", C.c_uint64), ("source", C.c_int)]


_KNOWN = "2.3."  # the ai-edge-litert whose C signatures and event layout this file follows


def _library() -> Any:
    """``libLiteRt.so`` of the installed ai-edge-litert.

    Raises:
        UsageError: Another ai-edge-litert version, whose C API may differ (a wrong guess would
            crash the worker rather than fail).
    """
    from importlib import metadata

    import ai_edge_litert

    version = metadata.version("ai-edge-litert")
    if not version.startswith(_KNOWN):
        raise UsageError(f"--profile reads LiteRT's profiler through the C API of "
                         f"ai-edge-litert {_KNOWN}x, and {version} is installed; install "
                         f"ai-edge-litert=={_KNOWN}* to profile TFLite models, or leave out "
                         "--profile")
    return C.CDLL(os.path.join(os.path.dirname(ai_edge_litert.__file__), "libLiteRt.so"))


def _check(status: int, what: str) -> None:
    if status != 0:
        raise InternalError(f"LiteRT's C API failed at {what} (status {status}) while profiling")


@contextmanager
def _compiled(lib: Any, path: str, threads: int) -> Iterator[tuple[_P, _P, _P]]:
    """Environment, model and compiled model (CPU, profiling on), destroyed on exit."""
    env, model, options, compiled = _P(), _P(), _P(), _P()
    strings = [C.create_string_buffer(b"enable_profiling = true"),
               C.create_string_buffer(f"num_threads = {threads}".encode())]
    try:
        _check(lib.LiteRtCreateEnvironment(0, None, C.byref(env)), "CreateEnvironment")
        _check(lib.LiteRtCreateModelFromFile(env, path.encode(), C.byref(model)),
               "CreateModelFromFile")
        _check(lib.LiteRtCreateOptions(C.byref(options)), "CreateOptions")
        _check(lib.LiteRtSetOptionsHardwareAccelerators(options, 1), "SetHardwareAccelerators")
        for ident, payload in zip((b"runtime_options_string", b"xnnpack"), strings):
            opaque = _P()
            _check(lib.LiteRtCreateOpaqueOptions(ident, C.cast(payload, _P), _KEEP,
                                                 C.byref(opaque)), "CreateOpaqueOptions")
            _check(lib.LiteRtAddOpaqueOptions(options, opaque), "AddOpaqueOptions")
        _check(lib.LiteRtCreateCompiledModel(env, model, options, C.byref(compiled)),
               "CreateCompiledModel")
        yield env, model, compiled
    finally:
        for handle, destroy in ((compiled, lib.LiteRtDestroyCompiledModel),
                                (options, lib.LiteRtDestroyOptions),
                                (model, lib.LiteRtDestroyModel),
                                (env, lib.LiteRtDestroyEnvironment)):
            if handle.value:
                destroy(handle)


def _buffers(lib: Any, env: _P, model: _P, compiled: _P, feeds: dict[str, np.ndarray],
             output_shapes: Callable[[], list[tuple[tuple[int, ...], int]]]
             ) -> tuple[Any, Any, list[_P]]:
    """Input buffers filled with ``feeds`` (by signature input name), and output buffers: an
    output with a dynamic dimension (-1 in the file) sized as ``output_shapes()`` says (each
    output's shape and bytes at the fed sizes)."""
    sig = _P()
    _check(lib.LiteRtGetModelSignature(model, C.c_size_t(0), C.byref(sig)), "GetModelSignature")
    created: list[_P] = []
    counts = []
    for count_fn in (lib.LiteRtGetNumSignatureInputs, lib.LiteRtGetNumSignatureOutputs):
        n = C.c_size_t()
        _check(count_fn(sig, C.byref(n)), "GetNumSignatureInputs/Outputs")
        counts.append(n.value)
    names = []
    for i in range(counts[0]):
        name = C.c_char_p()
        _check(lib.LiteRtGetSignatureInputName(sig, C.c_size_t(i), C.byref(name)),
               "GetSignatureInputName")
        names.append((name.value or b"").decode())
    arrays = [feeds[n] if n in feeds else list(feeds.values())[i] for i, n in enumerate(names)]
    for i, array in enumerate(arrays):
        dims = (C.c_int * array.ndim)(*array.shape)
        _check(lib.LiteRtCompiledModelResizeInputTensor(compiled, C.c_size_t(0), C.c_size_t(i),
                                                        dims, C.c_size_t(array.ndim)),
               "CompiledModelResizeInputTensor")
    sides = ((counts[0], lib.LiteRtGetSignatureInputTensorByIndex,
              lib.LiteRtGetCompiledModelInputBufferRequirements,
              lib.LiteRtGetCompiledModelInputTensorLayout),
             (counts[1], lib.LiteRtGetSignatureOutputTensorByIndex,
              lib.LiteRtGetCompiledModelOutputBufferRequirements, None))
    arrays_out = []
    for n, tensor_fn, requirements_fn, layout_fn in sides:
        handles = []
        for i in range(n):
            tensor, requirements, buffer = _P(), _P(), _P()
            tensor_type = C.create_string_buffer(1024)  # LiteRtRankedTensorType, passed through
            _check(tensor_fn(sig, C.c_size_t(i), C.byref(tensor)), "GetSignatureTensor")
            _check(lib.LiteRtGetRankedTensorType(tensor, tensor_type), "GetRankedTensorType")
            if layout_fn is not None:  # the resized shape, over the file's (-1 where dynamic)
                layout = C.create_string_buffer(1020)
                _check(layout_fn(compiled, C.c_size_t(0), C.c_size_t(i), layout),
                       "GetCompiledModelTensorLayout")
                C.memmove(C.addressof(tensor_type) + 4, layout, len(layout))
            _check(requirements_fn(compiled, C.c_size_t(0), C.c_size_t(i),
                                   C.byref(requirements)), "GetBufferRequirements")
            if layout_fn is None and _sized(tensor_type, output_shapes, i):
                # the requirements still size the file's shape: give the run's bytes
                kind = C.c_int()
                _check(lib.LiteRtGetTensorBufferRequirementsSupportedTensorBufferType(
                    requirements, C.c_int(0), C.byref(kind)), "GetSupportedTensorBufferType")
                _check(lib.LiteRtCreateManagedTensorBuffer(
                    env, kind, tensor_type, C.c_size_t(output_shapes()[i][1]),
                    C.byref(buffer)), "CreateManagedTensorBuffer")
            else:
                _check(lib.LiteRtCreateManagedTensorBufferFromRequirements(
                    env, tensor_type, requirements, C.byref(buffer)),
                    "CreateManagedTensorBuffer")
            created.append(buffer)
            handles.append(buffer)
        arrays_out.append((_P * n)(*handles))
    for buffer, array in zip(arrays_out[0], arrays):
        _fill(lib, _P(buffer), np.ascontiguousarray(array))
    return arrays_out[0], arrays_out[1], created


def _sized(tensor_type: Any, shapes: Callable[[], list[tuple[tuple[int, ...], int]]],
           i: int) -> bool:
    """Write output ``i``'s size into its ``LiteRtRankedTensorType`` where the file has -1
    (int32 element type, int32 rank, int32 dimensions...): a managed buffer needs a size.

    Returns:
        Whether it had a dynamic dimension (and was sized from ``shapes()``).
    """
    rank = C.c_int32.from_buffer(tensor_type, 4).value
    dims = (C.c_int32 * rank).from_buffer(tensor_type, 8)
    if all(d >= 0 for d in dims):
        return False
    shape = shapes()[i][0]
    if len(shape) != rank:
        raise InternalError(f"output {i} has rank {rank} in the file and {len(shape)} when run")
    for axis, size in enumerate(shape):
        dims[axis] = size
    return True


def _output_shapes(path: str, feeds: dict[str, np.ndarray]
                   ) -> list[tuple[tuple[int, ...], int]]:
    """The outputs' shapes and bytes at ``feeds``' sizes, in signature order: one run of the
    model on ``ai_edge_litert``'s interpreter (the C API's output requirements still size the
    file's shapes after the inputs are resized)."""
    from ai_edge_litert.interpreter import Interpreter

    interpreter = Interpreter(model_path=path)
    runner = interpreter.get_signature_runner()
    outputs = runner(**feeds)
    return [(tuple(outputs[name].shape), outputs[name].nbytes)
            for name in runner.get_output_details()]


def _fill(lib: Any, buffer: _P, array: np.ndarray) -> None:
    host, size = _P(), C.c_size_t()
    _check(lib.LiteRtGetTensorBufferSize(buffer, C.byref(size)), "GetTensorBufferSize")
    _check(lib.LiteRtLockTensorBuffer(buffer, C.byref(host), _LOCK_READ_WRITE), "LockTensorBuffer")
    try:
        C.memmove(host, array.ctypes.data, min(size.value, array.nbytes))
    finally:
        lib.LiteRtUnlockTensorBuffer(buffer)


def _events(lib: Any, profiler: _P) -> list[_Event]:
    n = C.c_int()
    _check(lib.LiteRtGetNumProfilerEvents(profiler, C.byref(n)), "GetNumProfilerEvents")
    events = (_Event * max(n.value, 1))()
    if n.value:
        _check(lib.LiteRtGetProfilerEvents(profiler, n, events), "GetProfilerEvents")
    return list(events[:n.value])


def op_times(events: list[_Event], runs: int) -> tuple[OpTime, ...]:
    """Per-op rows from the profiler's events (see the module's docstring), worst first."""
    times = OpTimes(runs)
    run = -1
    subgraphs: list[int] = []  # the subgraph invocations open now (Invoke ... Invoke end)
    open_nodes: list[tuple[int, OpKey]] = []  # (depth, key) of the WHILE / IF nodes open now
    for i, e in enumerate(events):
        tag = (e.tag or b"").decode(errors="replace")
        if tag == "Invoke" and e.event_type == _DEFAULT:
            run += not subgraphs
            subgraphs.append(int(e.metadata2))
            continue
        if tag == "Invoke" and e.event_type == _INSTRUMENTATION:
            if subgraphs:
                subgraphs.pop()
            continue
        depth = len(subgraphs)
        sg = int(e.metadata2) if e.event_type == _OPERATOR else (subgraphs or [0])[-1]
        where = f"@{sg}" if sg else ""
        if e.event_type == _OPERATOR:
            key: OpKey = (f"{tag}#{e.metadata1}{where}", tag, False, "builtin")
        elif e.event_type == _DELEGATE_PROFILED:
            key = (f"xnnpack#{e.metadata1}{where}", tag, True, "XNNPACK")
        else:
            continue
        while open_nodes and open_nodes[-1][0] >= depth:
            open_nodes.pop()
        seconds = e.elapsed_us / 1e6
        if open_nodes:  # inside a WHILE / IF: its own time is what its subgraphs' ops leave
            times.add(open_nodes[-1][1], run, -seconds, calls=0)
        times.add(key, run, seconds)
        nxt = events[i + 1] if i + 1 < len(events) else None
        if e.event_type == _OPERATOR and nxt is not None and nxt.event_type == _DEFAULT:
            open_nodes.append((depth, key))  # it invokes (or allocates) a subgraph next
    return times.rows()


def profile_tflite(path: str, feeds: dict[str, np.ndarray], runs: int,
                   threads: int) -> tuple[OpTime, ...]:
    """Time each op of a TFLite model over ``runs`` runs (after one untimed run).

    Args:
        path: The ``.tflite`` file.
        feeds: Inputs by signature input name, already in the model's dtypes.
        runs: Profiled runs.
        threads: CPU threads for XNNPACK.

    Returns:
        One row per op, worst first.

    Raises:
        InternalError: LiteRT's C API refused a step (named in the message).
    """
    lib = _library()
    with _compiled(lib, path, threads) as (env, model, compiled):
        shapes = functools.cache(lambda: _output_shapes(path, feeds))
        inputs, outputs, created = _buffers(lib, env, model, compiled, feeds, shapes)
        try:
            def run() -> None:
                _check(lib.LiteRtRunCompiledModel(compiled, C.c_size_t(0),
                                                  C.c_size_t(len(inputs)), inputs,
                                                  C.c_size_t(len(outputs)), outputs),
                       "RunCompiledModel")

            profiler = _P()
            _check(lib.LiteRtCompiledModelGetProfiler(compiled, C.byref(profiler)),
                   "CompiledModelGetProfiler")
            run()
            _check(lib.LiteRtResetProfiler(profiler), "ResetProfiler")
            _check(lib.LiteRtStartProfiler(profiler), "StartProfiler")
            for _ in range(runs):
                run()
            _check(lib.LiteRtStopProfiler(profiler), "StopProfiler")
            return op_times(_events(lib, profiler), runs)
        finally:
            for buffer in created:
                lib.LiteRtDestroyTensorBuffer(buffer)
