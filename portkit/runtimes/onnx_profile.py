"""Per-op times of an ONNX model from ONNX Runtime's session profiling.

A second session over the same file, with the plain session's threads and providers and
``enable_profiling``, runs the model once untimed and then ``runs`` times; ``end_profiling``
writes a Chrome trace whose ``Node`` events named ``<node>_kernel_time`` carry each kernel's
duration (microseconds), ``op_name`` and ``provider``. Nodes are those of the graph ONNX
Runtime runs, after its optimizations (a fused ``Conv`` + ``Relu`` is one ``FusedConv`` node).
Each node's time is its median over the runs.
"""

from __future__ import annotations

import bisect
import json
import tempfile
from pathlib import Path
from typing import Any

import numpy as np

from portkit.profiles import OpTime, OpTimes

_KERNEL = "_kernel_time"
_CPU = "CPUExecutionProvider"


def node_times(trace: list[dict[str, Any]], runs: int) -> tuple[OpTime, ...]:
    """Per-node rows from a profiling trace: its last ``runs`` ``model_run`` events (the first
    one is the untimed run)."""
    starts = sorted(e["ts"] for e in trace
                    if e.get("cat") == "Session" and e.get("name") == "model_run")[-runs:]
    times = OpTimes(runs)
    for e in trace:
        name = e.get("name", "")
        if e.get("cat") != "Node" or not name.endswith(_KERNEL) or not starts:
            continue
        args = e.get("args", {})
        provider = args.get("provider", "")
        key = (name[:-len(_KERNEL)], args.get("op_name", ""), provider not in ("", _CPU),
               provider)
        times.add(key, bisect.bisect_right(starts, e.get("ts", 0)) - 1, e.get("dur", 0) / 1e6)
    return times.rows()


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
