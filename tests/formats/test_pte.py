"""An ExecuTorch program's XNNPACK delegate read without ExecuTorch (``formats/pte.py``): its
nodes and its values' datatypes (what ``validate`` reads int4 weights from) from a delegate
blob built here with the ``flatc`` ExecuTorch ships and its XNNPACK schema."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

from portkit.formats.pte import _root, xnnpack_graph

SCHEMA = ("backends", "xnnpack", "serialization", "schema.fbs")


def _delegate(tmp_path: Path, graph: dict) -> bytes:
    """``graph`` (the XNNGraph's JSON form) as a delegate blob: the ``XH00`` header, then the
    flatbuffer at the offset the header gives."""
    (tmp_path / "g.json").write_text(json.dumps(graph))
    subprocess.run([str(_root() / "data" / "bin" / "flatc"), "-b", "-o", str(tmp_path),
                    str(_root().joinpath(*SCHEMA)), str(tmp_path / "g.json")], check=True)
    flatbuffer = (tmp_path / "g.bin").read_bytes()
    header = (b"\0" * 4 + b"XH00" + (32).to_bytes(2, "little") + (32).to_bytes(4, "little")
              + len(flatbuffer).to_bytes(4, "little"))
    return header.ljust(32, b"\0") + flatbuffer


def _value(datatype: str, quantized: bool = False) -> dict:
    tensor = {"datatype": datatype, "num_dims": 1, "dims": [4]}
    return ({"xvalue_union_type": "XNNQuantizedTensorValue",
             "xvalue_union": {"tensor_value": tensor}} if quantized else
            {"xvalue_union_type": "XNNTensorValue", "xvalue_union": tensor})


def test_an_xnnpack_delegate_gives_its_nodes_and_its_values_datatypes(tmp_path: Path) -> None:
    node = {"xnode_union_type": "XNNFullyConnected",
            "xnode_union": {"input1_id": 0, "filter_id": 1, "bias_id": 4294967295,
                            "output_id": 2}}
    blob = _delegate(tmp_path, {"version": "0", "xnodes": [node], "xvalues": [
        _value("xnn_datatype_fp32"), _value("xnn_datatype_qbint4", quantized=True),
        _value("xnn_datatype_fp32")]})
    assert xnnpack_graph(blob) == (("XNNFullyConnected",),
                                   ("xnn_datatype_fp32", "xnn_datatype_qbint4"))
    assert xnnpack_graph(b"not a delegate") == ((), ())
