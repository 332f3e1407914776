"""What a worker does with a model: describe it, run it as the reference, run it as an artifact.

These functions run inside ``portkit.runtimes.worker`` processes; they take and return plain,
picklable values.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from portkit.formats import Format
from portkit.formats.tflite import mobile_report
from portkit.options import LoadOptions
from portkit.results import ModelInfo
from portkit.runtimes import registry
from portkit.runtimes.binding import Binding, artifact_feeds, bind_inputs
from portkit.runtimes.worker import task
from portkit.specs import TensorSpec, load_inputs_file, make_inputs, resolve_inputs


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


@task
def describe(path: str, fmt: Format, options: LoadOptions = LoadOptions()) -> ModelInfo:
    """What a model declares; a ``.tflite`` is read from its flatbuffer (Flex models included)."""
    if fmt is Format.TFLITE:
        mobile = mobile_report(Path(path))
        specs = [tuple(TensorSpec(t.name, tuple(d if d >= 0 else None for d in t.shape), t.dtype)
                       for t in ts) for ts in (mobile.inputs, mobile.outputs)]
        return ModelInfo(fmt, specs[0], specs[1], mobile.op_counts, mobile)
    _runtime, session = registry.load_source(Path(path), fmt, options)
    return ModelInfo(fmt, tuple(session.inputs), tuple(session.outputs), session.op_counts())


def input_specs(path: str, fmt: Format, given: list[TensorSpec],
                options: LoadOptions = LoadOptions()) -> list[TensorSpec]:
    """The source's inputs as ``reference`` resolves them without an inputs file: the shapes
    it stores, ``--input`` over them, a free batch dimension as 1."""
    _runtime, session = registry.load_source(Path(path), fmt, options)
    return resolve_inputs(Path(path).name, session.inputs, given)


@task
def reference(path: str, fmt: Format, given: list[TensorSpec], inputs_file: str | None,
              seed: int, samples: int = 1, options: LoadOptions = LoadOptions()) -> Reference:
    """Run the source model on seeded inputs (or ``inputs_file``) to get reference outputs.

    Seeded sample ``i`` uses ``seed + i``; an inputs file gives its own samples. It runs on the
    first runtime that loads the file (``registry.load_source``), named in the result.
    """
    runtime, session = registry.load_source(Path(path), fmt, options)
    specs = resolve_inputs(Path(path).name, session.inputs, given)
    if inputs_file:
        feeds = load_inputs_file(inputs_file, specs)
    else:
        feeds = [make_inputs(specs, seed + i) for i in range(samples)]
    specs = [TensorSpec(s.name, tuple(feeds[0][s.name].shape), feeds[0][s.name].dtype.name)
             for s in specs]
    return Reference(runtime.name, tuple(specs), tuple(feeds),
                     tuple(session.run(f) for f in feeds))


@task
def run_artifact(path: str, fmt: Format, runtime: str, device: str,
                 feeds: tuple[dict[str, np.ndarray], ...], specs: list[TensorSpec],
                 prefer_channels_last: bool = False) -> ArtifactRun:
    """Load an artifact and run it on each sample, mapped to its names and layout."""
    session = registry.get(runtime).load(Path(path), fmt, device)
    bindings = bind_inputs(specs, session.inputs, prefer_channels_last)
    outputs = []
    start = time.perf_counter()
    for sample in feeds:
        outputs.append(session.run(artifact_feeds(session, bindings, sample)))
    return ArtifactRun(tuple(outputs), tuple(bindings), (time.perf_counter() - start) / len(feeds))


@task
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
