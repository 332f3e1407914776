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
from portkit.runtimes import registry
from portkit.runtimes.base import ModelInfo
from portkit.specs import TensorSpec, load_inputs_file, make_inputs, resolve_inputs
from portkit.validators.layout import Binding, bind_inputs


@dataclass(frozen=True)
class Reference:
    """The source model's inputs and outputs for one seeded (or given) input set."""

    runtime: str
    inputs: tuple[TensorSpec, ...]
    feeds: dict[str, np.ndarray]
    outputs: dict[str, np.ndarray]


@dataclass(frozen=True)
class ArtifactRun:
    """One run of an artifact on one runtime and device."""

    outputs: dict[str, np.ndarray]
    bindings: tuple[Binding, ...]
    seconds: float


def describe(path: str, fmt: Format) -> ModelInfo:
    """Load a model with the first runtime for its format and report what it declares."""
    runtime = registry.for_format(fmt)[0]
    session = runtime.load(Path(path), fmt)
    return ModelInfo(fmt, tuple(session.inputs), tuple(session.outputs), session.op_counts())


def reference(path: str, fmt: Format, given: list[TensorSpec], inputs_file: str | None,
              seed: int) -> Reference:
    """Run the source model on seeded inputs (or ``inputs_file``) to get reference outputs."""
    runtime = registry.for_format(fmt)[0]
    session = runtime.load(Path(path), fmt)
    specs = resolve_inputs(Path(path).name, session.inputs, given)
    feeds = load_inputs_file(inputs_file, specs) if inputs_file else make_inputs(specs, seed)
    specs = [TensorSpec(s.name, tuple(feeds[s.name].shape), feeds[s.name].dtype.name)
             for s in specs]
    return Reference(runtime.name, tuple(specs), feeds, session.run(feeds))


def run_artifact(path: str, fmt: Format, runtime: str, device: str,
                 feeds: dict[str, np.ndarray], specs: list[TensorSpec],
                 prefer_channels_last: bool = False) -> ArtifactRun:
    """Load an artifact and run it on the reference's inputs, mapped to its names and layout."""
    session = registry.get(runtime).load(Path(path), fmt, device)
    bindings = bind_inputs(specs, session.inputs, prefer_channels_last)
    dtypes = {s.name: s.dtype for s in session.inputs}
    # Converters narrow dtypes (litert-torch: int64 -> int32); feed what the artifact declares.
    art_feeds = {b.artifact: _cast(b.to_artifact(feeds[b.source]), dtypes[b.artifact])
                 for b in bindings}
    start = time.perf_counter()
    outputs = session.run(art_feeds)
    return ArtifactRun(outputs, tuple(bindings), time.perf_counter() - start)


def run_artifact_everywhere(path: str, fmt: Format, runtime: str, feeds: dict[str, np.ndarray],
                            specs: list[TensorSpec], prefer_channels_last: bool = False
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
    return array.astype(dtype, copy=False) if dtype else array
