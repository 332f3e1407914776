"""``portkit debug --overlay``: per-node error as Model Explorer node data.

The pure-logic tests build a ``DebugReport`` by hand; the loader tests read the written file
with Model Explorer's own node-data classes (``ai-edge-model-explorer``, the ``viz`` extra) and
check its keys against the graph Model Explorer's TFLite adapter builds from a real artifact.
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from portkit.debug.overlay import (
    DIVERGED_BG,
    NONFINITE,
    RED,
    overlay_data,
    write_overlay,
)
from portkit.debug.report import DebugNode, DebugReport, Divergence
from portkit.errors import UsageError
from portkit.policies import Tolerance
from portkit.results import FileInfo


def node(tensor: str, err: float, passed: bool | None, *, art: str | None = None,
         art_id: str = "", src_id: str = "") -> DebugNode:
    """A source tensor matched with ``art`` (None: unmatched) at scaled error ``err``."""
    return DebugNode(source_tensor=tensor, source_node=tensor, op_type="Conv",
                     artifact_tensor=art, artifact_node=art, artifact_op_type=art and "CONV_2D",
                     matched_by="value" if art else "", layout="", max_abs_err=err,
                     scaled_err=err, cosine=1.0, passed=passed, source_node_id=src_id,
                     artifact_node_id=art_id)


def report(nodes: list[DebugNode], diverged: str | None = None,
           tolerance: Tolerance = Tolerance()) -> DebugReport:
    div = None
    if diverged:
        d = next(n for n in nodes if n.source_tensor == diverged)
        div = Divergence(d.source_node, d.artifact_node or "", d.source_tensor,
                         d.artifact_tensor or "", d.op_type, d.artifact_op_type or "",
                         d.max_abs_err, d.scaled_err, d.cosine, ())
    return DebugReport(source=FileInfo("m.onnx", "onnx"), artifact=FileInfo("m.tflite", "tflite"),
                       tolerance=tolerance, first_divergence=div,
                       matched=sum(n.artifact_tensor is not None for n in nodes),
                       unmatched_source=sum(n.artifact_tensor is None for n in nodes),
                       unmatched_artifact=0, nodes=tuple(nodes), seconds=0.0, peak_rss_mb=0.0)


def test_keys_values_and_colours() -> None:
    rep = report([node("x", 0.0, True, art="in", art_id=""),
                  node("conv", 1e-7, True, art="t1", art_id="1", src_id="conv_node"),
                  node("relu", 0.3, False, art="t2", art_id="2"),
                  node("pool", 0.01, False, art="t3", art_id="3"),
                  node("lost", math.nan, None)], diverged="relu")
    data = overlay_data(rep, "artifact")
    # Node ids where known, else the output tensor's name; unmatched tensors left out.
    assert set(data["results"]) == {"in", "1", "2", "3"}
    assert data["results"]["1"] == {"value": 1e-7}
    assert data["results"]["2"]["bgColor"] == DIVERGED_BG
    # Failed by the policy at an amber-sized error (e.g. cosine): shown red all the same.
    assert data["results"]["3"]["bgColor"] == RED
    assert [t["value"] for t in data["thresholds"]] == [1e-4, 1e-2, NONFINITE]
    src = overlay_data(rep, "source")
    assert set(src["results"]) == {"x", "conv_node", "relu", "pool"}


def test_fused_op_shows_its_worst_tensor_and_nonfinite_is_valid_json(tmp_path: Path) -> None:
    # conv and its fused ReLU both landed on TFLite op 4; one produced NaN.
    rep = report([node("conv", 0.2, False, art="t", art_id="4"),
                  node("relu", math.inf, False, art="t", art_id="4"),
                  node("fine", 1e-8, True, art="u", art_id="5")], diverged="conv")
    path = write_overlay(rep, "artifact", tmp_path / "o.json")
    text = path.read_text()
    data = json.loads(text)  # strict JSON: no NaN or Infinity
    assert "Infinity" not in text and "NaN" not in text
    assert data["results"]["4"] == {"value": NONFINITE, "bgColor": DIVERGED_BG,
                                    "textColor": "#ffffff"}
    assert data["results"]["5"] == {"value": 1e-8}
    assert not list(tmp_path.glob(".*"))  # the staging folder is gone


def test_quantized_policy_thresholds_and_bad_side() -> None:
    rep = report([node("a", 0.01, True, art="t", art_id="0")],
                 tolerance=Tolerance(atol=None, scale_tol=0.0, min_cosine=0.98, policy="int8"))
    assert overlay_data(rep)["thresholds"][0]["value"] == 0.05
    with pytest.raises(UsageError, match="artifact, source"):
        overlay_data(rep, "both")  # type: ignore[arg-type]


# -- Model Explorer's own node-data loader, on a real TFLite artifact --------------------------

def _load_with_model_explorer(path: Path) -> Any:
    """The file parsed into Model Explorer's ``GraphNodeData`` (strict: unknown keys fail)."""
    dacite = pytest.importorskip("dacite")
    builder = pytest.importorskip("model_explorer.node_data_builder")
    data = json.loads(path.read_text())
    assert "results" in data  # the web app applies a top-level ``results`` to the open graph
    loaded = dacite.from_dict(builder.GraphNodeData, data, config=dacite.Config(strict=True))
    again = json.loads(loaded.to_json_string())
    assert {k: again[k] for k in data} == data  # nothing lost or renamed (defaults added)
    return loaded


def _adapter_graph(tflite: Path) -> tuple[set[str], set[str]]:
    """Node ids and output tensor names in Model Explorer's graph of ``tflite``."""
    adapter = pytest.importorskip("model_explorer.builtin_tflite_flatbuffer_adapter")
    graph = adapter.BuiltinTfliteFlatbufferAdapter().convert(str(tflite), {})
    collection = graph["graphCollections"][0]
    graphs = collection["graphs"] if isinstance(collection, dict) else collection.graphs
    nodes = graphs[0]["nodes"]
    names = {a["value"] for n in nodes for m in n.get("outputsMetadata", [])
             for a in m["attrs"] if a["key"] == "tensor_name"}
    return {n["id"] for n in nodes}, names


def test_overlay_loads_in_model_explorer_and_names_tflite_nodes(
        converted: Callable[[str, str, str], Path], tmp_path: Path) -> None:
    pytest.importorskip("model_explorer", reason="ai-edge-model-explorer (pip install "
                        "'portkit[viz]') is not installed")
    from ai_edge_litert.interpreter import Interpreter

    tflite = converted("cnn", "pt2", "tflite")
    ops = Interpreter(str(tflite))._get_ops_details()
    names = {d["index"]: d["name"] for d in Interpreter(str(tflite)).get_tensor_details()}
    # One node per TFLite op, keyed as the traces key them: the op's index; half of them by
    # output tensor name instead, as an overlay does when a trace knew no node id.
    nodes = [node(f"s{op['index']}", 10.0 ** -op["index"], op["index"] < 3,
                  art=names[op["outputs"][0]], art_id=str(op["index"]) if op["index"] % 2 else "")
             for op in ops]
    path = write_overlay(report(nodes, diverged="s3"), "artifact", tmp_path / "overlay.json")
    loaded = _load_with_model_explorer(path)
    ids, tensor_names = _adapter_graph(tflite)
    assert len(loaded.results) == len(ops)
    for key in loaded.results:
        assert key in ids or key in tensor_names, f"{key!r} is no node of Model Explorer's graph"
    assert loaded.results["3"].bgColor == DIVERGED_BG


def test_real_debug_overlay_opens_in_model_explorer(
        saved_models: Callable[[str, str], Path], converted: Callable[[str, str, str], Path],
        workers: Any, tmp_path: Path) -> None:
    pytest.importorskip("model_explorer", reason="ai-edge-model-explorer (pip install "
                        "'portkit[viz]') is not installed")
    from portkit import api  # portkit.debug is the package, api.debug the function

    tflite = converted("cnn", "pt2", "tflite")
    path = tmp_path / "errors.json"
    rep = api.debug(tflite, saved_models("cnn", "pt2"), overlay=path, workers=workers)
    assert rep.exit_code == 0 and rep.matched > 2
    loaded = _load_with_model_explorer(path)
    ids, tensor_names = _adapter_graph(tflite)
    ops = {k for k in loaded.results if k in ids}
    assert len(ops) >= 2, loaded.results  # TFLite ops keyed by Model Explorer's node ids
    assert all(k in ids or k in tensor_names for k in loaded.results)
    assert all(r.value <= rep.tolerance.scale_tol and r.bgColor is None
               for r in loaded.results.values())  # a faithful artifact: every node green
