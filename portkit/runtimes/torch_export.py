"""Exporting a PyTorch module with ``torch.export``, its dynamic dimensions kept: example
arguments, ``dynamic_shapes`` from ``TensorSpec.dims``. Used by the converters and the fixtures,
and by ``portkit.convert(module)``, whose export of the caller's module is bounded in time
(``save_module_program``)."""

from __future__ import annotations

import contextlib
import dataclasses
import functools
import importlib
import multiprocessing
import multiprocessing.connection
import pickle
import re
import threading
import traceback
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

from portkit.errors import (
    ConversionError,
    WorkerCrashedError,
    WorkerTimeoutError,
    rebuild,
)
from portkit.specs import Dim, TensorSpec, make_inputs


def example_args(inputs: list[TensorSpec]) -> tuple[Any, ...]:
    """Seeded example tensors for tracing/export, one per input in order."""
    import torch

    return tuple(torch.from_numpy(a) for a in make_inputs(inputs, seed=0).values())


def export_args(inputs: list[TensorSpec]) -> tuple[Any, ...]:
    """Example tensors for ``torch.export``: as ``example_args``, but each dynamic dimension at
    least 2 inside its range (torch.export fixes a dimension whose example is 0 or 1)."""
    return example_args([dataclasses.replace(s, shape=tuple(
        n if d is None or not _free(d) else max(n, 2, d.lo) if d.hi is None else
        min(max(n, 2, d.lo), d.hi)
        for n, d in zip(s.shape or (), s.dims or (None,) * len(s.shape or ())))) for s in inputs])


def dynamic_shapes(inputs: list[TensorSpec]) -> tuple[dict[int, Any] | None, ...] | None:
    """``torch.export``'s ``dynamic_shapes`` for the inputs' dynamic dimensions: one
    ``torch.export.Dim`` per name (inputs sharing it change together), with its range; None
    when every dimension is fixed."""
    import torch

    made: dict[str, Any] = {}
    shapes: list[dict[int, Any] | None] = []
    for s in inputs:
        axes = {}
        for axis, d in enumerate(s.dims):
            if d is not None and _free(d):
                if d.name not in made:
                    made[d.name] = torch.export.Dim(re.sub(r"\W", "_", d.name), min=d.lo,
                                                    max=d.hi)
                axes[axis] = made[d.name]
        shapes.append(axes or None)
    return tuple(shapes) if made else None


def _free(d: Dim) -> bool:
    """Whether ``d`` takes more than one size (a range of one size is a fixed dimension)."""
    return d.hi is None or d.hi > max(d.lo, 1)


def dynamic_axes(inputs: list[TensorSpec]) -> list[tuple[str, int, Dim]]:
    """Each dynamic dimension of the inputs: (input, axis, its ``Dim``)."""
    return [(s.name, axis, d) for s in inputs for axis, d in enumerate(s.dims)
            if d is not None and _free(d)]


def described(axes: list[tuple[str, int, Dim]]) -> str:
    """``ids axis 1 (seq 2..128)``, for messages."""
    return ", ".join(f"{name} axis {axis} ({d.describe()})" for name, axis, d in axes)


def export_program(module: Any, inputs: list[TensorSpec], what: str) -> Any:
    """``torch.export`` of ``module`` with the inputs' dynamic dimensions, its example inputs
    those of ``inputs``.

    Raises:
        ConversionError: The export failed (a dimension the code fixes, a range it narrows).
    """
    import torch

    try:
        program = torch.export.export(module, export_args(inputs),
                                      dynamic_shapes=dynamic_shapes(inputs))
    except Exception as e:  # noqa: BLE001 - torch.export raises many kinds (guards, tracing)
        axes = dynamic_axes(inputs)
        if not axes:
            raise
        why = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise ConversionError(
            f"{what}: torch.export can't keep {described(axes)} dynamic: {why}; pass --static "
            "for a fixed-shape artifact, or a narrower --dim range") from None
    program.example_inputs = (example_args(inputs), {})
    return program


def save_module_program(module: Any, inputs: list[TensorSpec], dst: Path, timeout: float
                        ) -> None:
    """``torch.export`` the caller's ``nn.Module`` and save the program as ``dst`` (``.pt2``),
    within ``timeout`` seconds: a forward that never returns must not hang the caller.

    The export runs in a forked child, which inherits the module (nothing is pickled) and is
    killed past the timeout. Where a child could not use what the module may need (CUDA is
    initialized in this process, and a forked child can't use it) it runs in a thread instead:
    the call still returns at the timeout, and the thread is left running.

    Raises:
        WorkerTimeoutError: The export ran past ``timeout``.
        WorkerCrashedError: The child died without answering (a segfault).
        ConversionError: torch.export can't keep a dynamic dimension dynamic.
    """
    with contextlib.suppress(ImportError):  # imported here once, not again in each child
        importlib.import_module("torch.export._trace")
    what = f"convert({type(module).__name__}, ...): torch.export of the module"
    run = functools.partial(_export_and_save, module, inputs, str(dst))
    (_in_child if _forkable() else _in_thread)(run, timeout, what)


def _export_and_save(module: Any, inputs: list[TensorSpec], dst: str) -> None:
    import torch

    torch.export.save(export_program(module.eval(), inputs, type(module).__name__), dst)


def _forkable() -> bool:
    """Whether a forked child can export here: fork exists, and CUDA is not initialized."""
    import torch

    return "fork" in multiprocessing.get_all_start_methods() and not torch.cuda.is_initialized()


def _timed_out(what: str, timeout: float, left: str) -> WorkerTimeoutError:
    return WorkerTimeoutError(f"{what} ran past its {timeout:g} s limit and {left} (does its "
                              "forward return on the example inputs?); raise it with timeout=")


def _in_child(run: Callable[[], None], timeout: float, what: str) -> None:
    """``run()`` in a forked child, killed past ``timeout``; its error raised here."""
    context = multiprocessing.get_context("fork")
    receive, send = context.Pipe(duplex=False)
    child = context.Process(target=_child, args=(run, send), name="portkit-export", daemon=True)
    with warnings.catch_warnings():  # Python 3.12+ warns on forking a threaded process
        warnings.simplefilter("ignore", DeprecationWarning)
        child.start()
    send.close()
    try:
        if not multiprocessing.connection.wait([receive, child.sentinel], timeout):
            raise _timed_out(what, timeout, "was stopped")
        try:
            answer = receive.recv() if receive.poll() else None
        except EOFError:
            answer = None
        if answer is None:
            child.join()
            raise WorkerCrashedError(f"{what} crashed the process it ran in (exit code "
                                     f"{child.exitcode}) without an error")
    finally:
        if child.is_alive():
            child.kill()
        child.join()
        receive.close()
    if answer != "ok":
        _reraise(*answer)


def _child(run: Callable[[], None], send: Any) -> None:
    """The forked child: the caller's signal handlers are not its own, and the caller's OpenMP
    threads are not in it (a parallel region would wait for them forever: one thread)."""
    import signal

    import torch

    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, signal.SIG_DFL)
    torch.set_num_threads(1)
    try:
        run()
    except BaseException as e:  # noqa: BLE001 - every error goes back to the caller
        send.send(_described(e))
    else:
        send.send("ok")


def _described(error: BaseException) -> tuple[bytes | None, str, str, str]:
    """An error as it crosses back: pickled when it unpickles, its class name, message and
    traceback."""
    try:
        pickled: bytes | None = pickle.dumps(error)
        pickle.loads(pickled)  # an exception whose __init__ takes other arguments doesn't
    except Exception:  # noqa: BLE001 - whatever pickling raises, the description remains
        pickled = None
    return pickled, type(error).__name__, str(error), traceback.format_exc()


class _ChildTraceback(Exception):
    """Where the child raised (the cause of the error raised again in the caller)."""


def _reraise(pickled: bytes | None, name: str, message: str, trace: str) -> None:
    error = pickle.loads(pickled) if pickled is not None else rebuild(name, message, trace)
    if hasattr(error, "traceback") and not error.traceback:
        error.traceback = trace
    raise error from _ChildTraceback(trace)


def _in_thread(run: Callable[[], None], timeout: float, what: str) -> None:
    """``run()`` in a daemon thread, given up on past ``timeout``; its error raised here."""
    failed: list[BaseException] = []
    done = threading.Event()

    def target() -> None:
        try:
            run()
        except BaseException as e:  # noqa: BLE001 - raised again in the caller
            failed.append(e)
        finally:
            done.set()

    threading.Thread(target=target, name="portkit-export", daemon=True).start()
    if not done.wait(timeout):
        raise _timed_out(what, timeout, "was given up on (it runs on in a thread: CUDA is "
                                        "initialized, so it could not run in a process of its own)")
    if failed:
        raise failed[0]
