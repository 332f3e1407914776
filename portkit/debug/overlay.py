"""``portkit debug --overlay``: per-node error as Model Explorer node data.

The file is the ``GraphNodeData`` JSON of ``ai-edge-model-explorer``
(``model_explorer/node_data_builder.py``): ``{"name", "results": {KEY: {"value", "bgColor"?,
"textColor"?}}, "thresholds": [{"value", "bgColor"}]}``, where ``KEY`` is a node id of Model
Explorer's graph of the file (a TFLite op's index, an ONNX node's name, an FX node's name) or,
when the trace knew none, one of the node's output tensor names. A file whose top level has
``results`` applies to whichever graph is open, so graph ids (``main``, an ONNX graph's name)
need not be known. ``model-explorer ARTIFACT --node_data_paths FILE`` colours the graph by it.

Each value is the pair's scaled error (max abs err / the source tensor's largest magnitude):
green within the policy's ``scale_tol``, amber up to 100 times it, red beyond; a pair the policy
failed is red whatever its value (the policy also judges cosine), and the first divergence is
dark red with white text. Non-finite errors are written as ``NONFINITE`` (JSON has no NaN).
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from portkit.errors import UsageError
from portkit.io import atomic_write_text

if TYPE_CHECKING:
    from portkit.debug.report import DebugNode, DebugReport

Side = Literal["artifact", "source"]

GREEN, AMBER, RED = "#c8e6c9", "#ffe082", "#ef9a9a"
DIVERGED_BG, DIVERGED_TEXT = "#b71c1c", "#ffffff"
NONFINITE = 1e30  # what a NaN or inf error is written as
# Threshold base for policies that judge no element by scale (quantized: cosine and top-k).
_QUANTIZED_BASE = 0.05


@dataclass(frozen=True)
class _Entry:
    value: float
    failed: bool
    diverged: bool

    def worse(self, other: _Entry) -> _Entry:
        """The entry to show when two source tensors land on one node (a fused op)."""
        return _Entry(max(self.value, other.value), self.failed or other.failed,
                      self.diverged or other.diverged)


def overlay_data(report: DebugReport, side: Side = "artifact") -> dict[str, Any]:
    """The node-data JSON of ``report`` for one side's graph, as plain types.

    Args:
        report: What ``portkit debug`` found.
        side: ``artifact`` to colour the artifact's graph, ``source`` for the source's.

    Returns:
        ``{"name", "results", "thresholds"}``: one result per matched node with a finite error
        (the worst one where several source tensors share a node).

    Raises:
        UsageError: ``side`` is neither ``artifact`` nor ``source``.
    """
    if side not in ("artifact", "source"):
        raise UsageError(f"overlay side {side!r} is not one of artifact, source: pass "
                         "side='artifact' to colour the artifact's graph, 'source' for the "
                         "source's")
    div = report.first_divergence
    entries: dict[str, _Entry] = {}
    for node in report.nodes:
        key = _key(node, side)
        if key is None:
            continue
        value = node.scaled_err if math.isfinite(node.scaled_err) else NONFINITE
        if math.isnan(node.scaled_err) and node.passed is None:
            continue  # matched but never compared
        diverged = div is not None and node.source_tensor == div.source_tensor
        entry = _Entry(value, node.passed is False, diverged)
        entries[key] = entries[key].worse(entry) if key in entries else entry
    base = report.tolerance.scale_tol or _QUANTIZED_BASE
    return {
        "name": f"portkit debug: error / scale ({side})",
        "results": {k: _result(e, base) for k, e in entries.items()},
        "thresholds": [{"value": base, "bgColor": GREEN}, {"value": 100 * base, "bgColor": AMBER},
                       {"value": NONFINITE, "bgColor": RED}],
    }


def write_overlay(report: DebugReport, side: Side, path: str | Path) -> Path:
    """Write ``report``'s per-node errors as Model Explorer node data, atomically.

    Args:
        report: What ``portkit debug`` found.
        side: ``artifact`` (open the file with the artifact) or ``source``.
        path: Where to write the JSON (``--overlay``).

    Returns:
        The path written.

    Raises:
        UsageError: ``side`` is not ``artifact`` or ``source``.
    """
    target = Path(path)
    atomic_write_text(target, json.dumps(overlay_data(report, side), indent=1) + "\n",
                      "--overlay")
    return target


def _key(node: DebugNode, side: Side) -> str | None:
    """Model Explorer's key for the node: its node id, else its output tensor's name."""
    if side == "artifact":
        if node.artifact_tensor is None:
            return None
        return node.artifact_node_id or node.artifact_tensor
    return node.source_node_id or node.source_tensor


def _result(entry: _Entry, base: float) -> dict[str, Any]:
    """One node's result: its value, and a colour where the thresholds would mislead."""
    out: dict[str, Any] = {"value": entry.value}
    if entry.diverged:
        out.update(bgColor=DIVERGED_BG, textColor=DIVERGED_TEXT)
    elif entry.failed and entry.value <= 100 * base:
        out["bgColor"] = RED
    return out
