"""Per-op times of an ONNX model from ONNX Runtime's session profiling.

A second session over the same file, with the plain session's threads and providers and
``enable_profiling``, runs the model once untimed and then ``runs`` times; ``end_profiling``
writes a Chrome trace whose ``Node`` events named ``<node>_kernel_time`` carry each kernel's
duration (microseconds), ``op_name`` and ``provider``. Nodes are those of the graph ONNX
Runtime runs, after its optimizations (a fused ``Conv`` + ``Relu`` is one ``FusedConv`` node).
"""

from __future__ import annotations

import json
import tempfile
from pathlib import Path
from typing import Any

import numpy as np

from portkit.results import OpTime, worst_first

_KERNEL = "_kernel_time"
_CPU = "CPUExecutionProvider"


def node_times(trace: list[dict[str, Any]], runs: int) -> tuple[OpTime, ...]:
    """Per-node rows from a profiling trace, after its first ``model_run`` (the untimed one)."""
    starts = sorted(e["ts"] + e.get("dur", 0) for e in trace
                    if e.get("cat") == "Session" and e.get("name") == "model_run")
    after = starts[0] if len(starts) > runs else -1
    times: dict[tuple[str, str, bool, str], tuple[float, float]] = {}
    for e in trace:
        name = e.get("name", "")
        if e.get("cat") != "Node" or not name.endswith(_KERNEL) or e.get("ts", 0) <= after:
            continue
        args = e.get("args", {})
        provider = args.get("provider", "")
        key = (name[:-len(_KERNEL)], args.get("op_name", ""), provider not in ("", _CPU),
               provider)
        seconds, calls = times.get(key, (0.0, 0.0))
        times[key] = (seconds + e.get("dur", 0) / 1e6, calls + 1)
    return worst_first(times, runs)


def profile_onnx(path: Path, feeds: dict[str, np.ndarray], runs: int, settings: Any,
                 providers: list[str]) -> tuple[OpTime, ...]:
    """Time each node of an ONNX model over ``runs`` runs (after one untimed run).

    Args:
        path: The ONNX file.
        feeds: One array per graph input, by name.
        runs: Profiled runs.
        settings: The plain session's ``SessionOptions`` (its threads are kept), or None.
        providers: Its execution providers.

    Returns:
        One row per node, worst first.
    """
    import onnxruntime

    options = onnxruntime.SessionOptions()
    options.log_severity_level = 3
    if settings is not None:
        options.intra_op_num_threads = settings.intra_op_num_threads
        options.graph_optimization_level = settings.graph_optimization_level
    with tempfile.TemporaryDirectory(prefix="portkit-profile-") as folder:
        options.enable_profiling = True
        options.profile_file_prefix = str(Path(folder) / "ort")
        session = onnxruntime.InferenceSession(str(path), sess_options=options,
                                               providers=providers)
        for _ in range(runs + 1):
            session.run(None, feeds)
        trace = json.loads(Path(session.end_profiling()).read_text())
    return node_times(trace, runs)
