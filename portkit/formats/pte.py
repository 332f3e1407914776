"""What an ExecuTorch program (``.pte``) holds, read from its flatbuffer: each method's inputs and
outputs (sizes, dtype, whether a size may shrink below its bound), the portable kernels it calls
and the delegate calls, with the XNNPACK nodes inside each delegate.

Read as JSON by the ``flatc`` the ExecuTorch wheel ships, with the schemas it ships (the program's,
and the XNNPACK delegate's for the graph inside each delegate call): no framework import.
"""

from __future__ import annotations

import re
import subprocess
import tempfile
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

# ExecuTorch's ScalarType names -> numpy dtype names.
DTYPES = {"BYTE": "uint8", "CHAR": "int8", "SHORT": "int16", "INT": "int32", "LONG": "int64",
          "HALF": "float16", "FLOAT": "float32", "DOUBLE": "float64", "BOOL": "bool",
          "BFLOAT16": "bfloat16"}
XNNPACK = "XnnpackBackend"


@dataclass(frozen=True)
class PteTensor:
    """A method's input or output.

    Attributes:
        sizes: Its sizes; for a bounded one, the largest each may take.
        dtype: Its numpy dtype name (or the value's kind: ``int``, ``bool``... for a scalar).
        bounded: Whether its sizes may change up to ``sizes`` (dynamic, bounded).
        unbounded: Whether they may grow past them.
    """

    sizes: tuple[int, ...]
    dtype: str
    bounded: bool = False
    unbounded: bool = False


@dataclass(frozen=True)
class Delegate:
    """One delegate call: its backend and, for XNNPACK, the nodes it runs (``XNNConv2d``...)
    and its values' datatypes, each once (``xnn_datatype_qbint4``: int4 weights in blocks)."""

    backend: str
    nodes: tuple[str, ...] = ()
    datatypes: tuple[str, ...] = ()


@dataclass(frozen=True)
class PteMethod:
    """One method of the program.

    Attributes:
        name: ``forward``...
        inputs, outputs: Its tensors (and scalars), in order.
        kernels: The portable kernel of each kernel call, in execution order (``aten::mean.out``).
        delegates: Each delegate call, in execution order.
    """

    name: str
    inputs: tuple[PteTensor, ...]
    outputs: tuple[PteTensor, ...]
    kernels: tuple[str, ...]
    delegates: tuple[Delegate, ...]

    @property
    def delegated_nodes(self) -> int:
        """The nodes delegates run (an opaque delegate counts as one)."""
        return sum(max(1, len(d.nodes)) for d in self.delegates)

    @property
    def delegated_share(self) -> float:
        """The part of the method's ops its delegates run (0 when it has none)."""
        total = self.delegated_nodes + len(self.kernels)
        return self.delegated_nodes / total if total else 0.0

    def outside(self) -> dict[str, int]:
        """The ops left to portable kernels, by name, most frequent first."""
        return dict(Counter(self.kernels).most_common())

    def inside(self) -> dict[str, int]:
        """The nodes inside delegates, by kind (``XNNConv2d``), most frequent first."""
        return dict(Counter(n for d in self.delegates for n in d.nodes).most_common())


def read_program(path: Path) -> list[PteMethod]:
    """The methods of the ``.pte`` at ``path``, read by the ``flatc`` ExecuTorch ships with its
    program schema (importing ExecuTorch's own deserializer costs ten seconds).

    Raises:
        ValueError: The file is no program ``flatc`` can read.
    """
    data = Path(path).read_bytes()
    program = _flatc_json(data, _root() / "schema" / "program.fbs")
    if program is None:
        raise ValueError("not an ExecuTorch program its schema reads (truncated or damaged?)")
    segments = _segments(data, program)
    methods = []
    for plan in program.get("execution_plan", []):
        operators = [f"{o['name']}.{o['overload']}" if o.get("overload") else o["name"]
                     for o in plan.get("operators", [])]
        kernels, delegates = [], []
        for chain in plan.get("chains", []):
            for instruction in chain.get("instructions", []):
                kind, args = instruction.get("instr_args_type"), instruction.get("instr_args", {})
                if kind == "KernelCall":
                    kernels.append(operators[args["op_index"]])
                elif kind == "DelegateCall":
                    delegate = plan["delegates"][args["delegate_index"]]
                    where = delegate.get("processed", {})
                    blob = segments.get((where.get("location"), where.get("index")), b"")
                    graph = xnnpack_graph(blob) if delegate.get("id") == XNNPACK else ((), ())
                    delegates.append(Delegate(delegate.get("id", "?"), *graph))
        values = plan.get("values", [])
        methods.append(PteMethod(
            plan.get("name", "?"), tuple(_value(values[i]) for i in plan.get("inputs", [])),
            tuple(_value(values[i]) for i in plan.get("outputs", [])), tuple(kernels),
            tuple(delegates)))
    return methods


def _root() -> Path:
    import importlib.util

    spec = importlib.util.find_spec("executorch")
    if spec is None or not spec.submodule_search_locations:
        raise ValueError("executorch is not installed (pip install 'portkit[executorch]')")
    return Path(list(spec.submodule_search_locations)[0])


def _flatc_json(data: bytes, schema: Path) -> dict | None:  # type: ignore[type-arg]
    """``data`` as JSON through ``flatc`` and ``schema``; None when flatc can't read it."""
    import json

    flatc = _root() / "data" / "bin" / "flatc"
    with tempfile.TemporaryDirectory() as tmp:
        binary = Path(tmp) / "model.bin"
        binary.write_bytes(data)
        done = subprocess.run([str(flatc), "--json", "--raw-binary", "--strict-json",
                               "--defaults-json", "-o", tmp, str(schema), "--", str(binary)],
                              capture_output=True, timeout=120)
        out = Path(tmp) / "model.json"
        if done.returncode or not out.exists():
            return None
        text = out.read_text(errors="replace")
    # flatc writes non-finite floats bare (an XNNPACK clamp's inf)
    return json.loads(re.sub(r"(?<=[:\[,\s])-?(?:inf|nan)\b", "0", text))


def _segments(data: bytes, program: dict) -> dict[tuple[str, int], bytes]:  # type: ignore[type-arg]
    """The delegates' data by (location, index): inline in the program, or in a segment after
    it (the extended header ``eh00`` gives where segments start)."""
    found = {("INLINE", i): bytes(b.get("data", []))
             for i, b in enumerate(program.get("backend_delegate_data", []))}
    if data[8:12] == b"eh00":
        base = int.from_bytes(data[24:32], "little")
        for i, seg in enumerate(program.get("segments", [])):
            start = base + int(seg.get("offset", 0))
            found["SEGMENT", i] = data[start:start + int(seg.get("size", 0))]
    return found


def _value(value: dict) -> PteTensor:  # type: ignore[type-arg]
    """A plan value as a ``PteTensor`` (a scalar: empty sizes, its kind)."""
    if value.get("val_type") != "Tensor":
        return PteTensor((), str(value.get("val_type", "?")).lower())
    t = value["val"]
    dynamism = t.get("shape_dynamism", "STATIC")
    return PteTensor(tuple(int(s) for s in t.get("sizes", [])),
                     DTYPES.get(t.get("scalar_type", ""), "?"), dynamism == "DYNAMIC_BOUND",
                     dynamism == "DYNAMIC_UNBOUND")


def xnnpack_graph(blob: bytes) -> tuple[tuple[str, ...], tuple[str, ...]]:
    """The node kinds of an XNNPACK delegate's graph (``XNNConv2d``...), in order, and its
    values' datatypes, each once; empty when the blob can't be read (its header: magic
    ``XH00``, then the flatbuffer's offset and size)."""
    if blob[4:6] != b"XH":
        return (), ()
    offset, size = int.from_bytes(blob[10:14], "little"), int.from_bytes(blob[14:18], "little")
    graph = _flatc_json(blob[offset:offset + size],
                        _root() / "backends" / "xnnpack" / "serialization" / "schema.fbs")
    if graph is None:
        return (), ()
    values = [v.get("xvalue_union", {}) for v in graph.get("xvalues", [])]
    types = (str(v.get("tensor_value", v).get("datatype", "?")) for v in values)
    return (tuple(str(n.get("xnode_union_type", "?")) for n in graph.get("xnodes", [])),
            tuple(dict.fromkeys(types)))


@dataclass(frozen=True)
class ProgramReport:
    """What ``portkit inspect`` shows of a ``.pte`` beyond its inputs and outputs.

    Attributes:
        methods: The program's methods.
        backends: The delegates' backends, each once (``XnnpackBackend``).
        delegate_calls: Delegate calls in ``forward``.
        delegated_nodes: Nodes those delegates run (an opaque delegate counts as one).
        delegated_share: ``delegated_nodes`` over all of ``forward``'s ops (0..1).
        inside: The delegated nodes by kind (``XNNConv2d``), most frequent first.
        outside: The ops left to portable kernels, by name (``aten::mean.out``).
        bounded: Whether some input takes sizes up to a bound (a dynamic dimension).
    """

    methods: tuple[str, ...]
    backends: tuple[str, ...]
    delegate_calls: int
    delegated_nodes: int
    delegated_share: float
    inside: dict[str, int]
    outside: dict[str, int]
    bounded: bool


def program_report(path: Path, method: str = "forward") -> ProgramReport:
    """The ``ProgramReport`` of the ``.pte`` at ``path`` (its method ``method``, else its
    first)."""
    methods = read_program(path)
    m = next((x for x in methods if x.name == method), methods[0])
    return ProgramReport(
        methods=tuple(x.name for x in methods),
        backends=tuple(dict.fromkeys(d.backend for d in m.delegates)),
        delegate_calls=len(m.delegates), delegated_nodes=m.delegated_nodes,
        delegated_share=round(m.delegated_share, 4), inside=m.inside(), outside=m.outside(),
        bounded=any(t.bounded or t.unbounded for t in m.inputs))
