"""What a worker does with a model: describe it, run it as the reference, run it as an artifact.

These functions run inside ``portkit.runtimes.worker`` processes; they take and return plain,
picklable values.
"""

from __future__ import annotations

import dataclasses
import functools
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from portkit.formats import Format
from portkit.runtimes import registry
from portkit.runtimes.base import ModelInfo, Session
from portkit.specs import LoadOptions, TensorSpec, load_inputs_file, make_inputs, resolve_inputs
from portkit.validators.latency import Budget, Latency, measure, measure_interleaved
from portkit.validators.layout import Binding, bind_inputs
from portkit.validators.mobile import mobile_report


@dataclass(frozen=True)
class Reference:
    """The source model's inputs and outputs for each seeded (or given) input sample."""

    runtime: str
    inputs: tuple[TensorSpec, ...]
    feeds: tuple[dict[str, np.ndarray], ...]
    outputs: tuple[dict[str, np.ndarray], ...]


@dataclass(frozen=True)
class ArtifactRun:
    """An artifact run on one runtime and device, once per sample."""

    outputs: tuple[dict[str, np.ndarray], ...]
    bindings: tuple[Binding, ...]
    seconds: float


def describe(path: str, fmt: Format, options: LoadOptions = LoadOptions()) -> ModelInfo:
    """What a model declares; a ``.tflite`` is read from its flatbuffer (Flex models included)."""
    if fmt is Format.TFLITE:
        mobile = mobile_report(Path(path))
        specs = [tuple(TensorSpec(t.name, tuple(d if d >= 0 else None for d in t.shape), t.dtype)
                       for t in ts) for ts in (mobile.inputs, mobile.outputs)]
        return ModelInfo(fmt, specs[0], specs[1], mobile.op_counts, mobile)
    runtime = registry.for_format(fmt)[0]
    session = runtime.load(Path(path), fmt, options=options)
    return ModelInfo(fmt, tuple(session.inputs), tuple(session.outputs), session.op_counts())


def input_specs(path: str, fmt: Format, given: list[TensorSpec],
                options: LoadOptions = LoadOptions()) -> list[TensorSpec]:
    """The source's inputs as ``reference`` resolves them without an inputs file: the shapes
    it stores, ``--input`` over them, a free batch dimension as 1."""
    session = registry.for_format(fmt)[0].load(Path(path), fmt, options=options)
    return resolve_inputs(Path(path).name, session.inputs, given)


def reference(path: str, fmt: Format, given: list[TensorSpec], inputs_file: str | None,
              seed: int, samples: int = 1, options: LoadOptions = LoadOptions()) -> Reference:
    """Run the source model on seeded inputs (or ``inputs_file``) to get reference outputs.

    Seeded sample ``i`` uses ``seed + i``; an inputs file gives its own samples.
    """
    runtime = registry.for_format(fmt)[0]
    session = runtime.load(Path(path), fmt, options=options)
    specs = resolve_inputs(Path(path).name, session.inputs, given)
    if inputs_file:
        feeds = load_inputs_file(inputs_file, specs)
    else:
        feeds = [make_inputs(specs, seed + i) for i in range(samples)]
    specs = [TensorSpec(s.name, tuple(feeds[0][s.name].shape), feeds[0][s.name].dtype.name)
             for s in specs]
    return Reference(runtime.name, tuple(specs), tuple(feeds),
                     tuple(session.run(f) for f in feeds))


def run_artifact(path: str, fmt: Format, runtime: str, device: str,
                 feeds: tuple[dict[str, np.ndarray], ...], specs: list[TensorSpec],
                 prefer_channels_last: bool = False) -> ArtifactRun:
    """Load an artifact and run it on each sample, mapped to its names and layout."""
    session = registry.get(runtime).load(Path(path), fmt, device)
    bindings = bind_inputs(specs, session.inputs, prefer_channels_last)
    outputs = []
    start = time.perf_counter()
    for sample in feeds:
        outputs.append(session.run(_artifact_feeds(session, bindings, sample)))
    return ArtifactRun(tuple(outputs), tuple(bindings), (time.perf_counter() - start) / len(feeds))


def _artifact_feeds(session: Session, bindings: list[Binding],
                    sample: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """A reference sample in the artifact's input names, layout and dtypes (converters narrow
    dtypes: litert-torch turns int64 into int32)."""
    dtypes = {s.name: s.dtype for s in session.inputs}
    return {b.artifact: _cast(b.to_artifact(sample[b.source]), dtypes[b.artifact])
            for b in bindings}


def run_artifact_everywhere(path: str, fmt: Format, runtime: str,
                            feeds: tuple[dict[str, np.ndarray], ...], specs: list[TensorSpec],
                            prefer_channels_last: bool = False
                            ) -> list[tuple[str, ArtifactRun | str]]:
    """``run_artifact`` on every device the runtime has here; a failed device gives its error."""
    results: list[tuple[str, ArtifactRun | str]] = []
    for device in registry.get(runtime).devices():
        try:
            results.append((device, run_artifact(path, fmt, runtime, device, feeds, specs,
                                                 prefer_channels_last)))
        except Exception as e:  # noqa: BLE001 - one device failing must not hide the others
            results.append((device, f"{type(e).__name__}: {e}"))
    return results


def _cast(array: np.ndarray, dtype: str) -> np.ndarray:
    """Cast to the artifact's dtype, except float to an integer type: a quantized input's
    session quantizes float feeds itself."""
    if not dtype or (array.dtype.kind == "f" and np.dtype(dtype).kind in "iu"):
        return array
    return array.astype(dtype, copy=False)


def bench(path: str, fmt: Format, runtime: str, device: str, given: list[TensorSpec],
          batch: int | None, budget: Budget, options: LoadOptions = LoadOptions()) -> Latency:
    """Time a model on one runtime and device (this worker does nothing else)."""
    rt = registry.get(runtime)
    specs: list[TensorSpec] = []

    def load() -> Callable[[], object]:
        session = rt.load(Path(path), fmt, device, options)
        specs.extend(_batched(resolve_inputs(Path(path).name, session.inputs, given), batch))
        feeds = make_inputs(specs, seed=0)
        return lambda: session.run(feeds)

    first = measure(load, budget, runtime=runtime, device=device, threads=options.threads,
                    batch=1)
    n = int((specs[0].shape or (1,))[0]) if specs else 1
    return dataclasses.replace(first, batch=n, throughput=first.throughput * n)


def bench_candidates(paths: list[str], fmt: Format, runtime: str, device: str,
                     sample: dict[str, np.ndarray], specs: list[TensorSpec], budget: Budget,
                     prefer_channels_last: bool = False,
                     options: LoadOptions = LoadOptions()) -> list[Latency | str]:
    """Time several artifacts of one source against each other in turns, on one runtime and
    device, each fed the same reference ``sample`` in its own names and layout.

    An artifact that fails to load or run here gives its error instead of a latency: XNNPACK
    has been seen refusing a model ("failed to reshape") only after other models were prepared
    in the same process, so the caller can time it again alone.
    """
    rt = registry.get(runtime)
    runs: list[Callable[[], object] | str] = []
    colds: list[float] = []
    for path in paths:
        start = time.perf_counter()
        try:
            session = rt.load(Path(path), fmt, device, options)
            feeds = _artifact_feeds(session, bind_inputs(specs, session.inputs,
                                                         prefer_channels_last), sample)
            run = functools.partial(session.run, feeds)
            run()
        except Exception as e:  # noqa: BLE001 - one artifact failing must not hide the others
            runs.append(f"{type(e).__name__}: {str(e).strip().splitlines()[0] if str(e) else ''}")
            continue
        runs.append(run)
        colds.append(time.perf_counter() - start)
    ready = [r for r in runs if not isinstance(r, str)]
    timed = measure_interleaved([functools.partial(lambda r: r, r) for r in ready], budget,
                                runtime=runtime, device=device, threads=options.threads)
    results = iter(dataclasses.replace(t, cold_start_ms=c * 1000.0)
                   for t, c in zip(timed, colds, strict=True))
    return [r if isinstance(r, str) else next(results) for r in runs]


def _batched(specs: list[TensorSpec], batch: int | None) -> list[TensorSpec]:
    if batch is None:
        return specs
    return [TensorSpec(s.name, (batch, *(s.shape or ())[1:]), s.dtype) for s in specs]
