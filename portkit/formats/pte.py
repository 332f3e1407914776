"""What an ExecuTorch program (``.pte``) holds, read from its flatbuffer: each method's inputs and
outputs (sizes, dtype, whether a size may shrink below its bound), the portable kernels it calls
and the delegate calls, with the XNNPACK nodes inside each delegate.

Read with ExecuTorch's own deserializer (``executorch.exir._serialize``); an XNNPACK delegate's
graph is turned into JSON by the ``flatc`` the wheel ships, with the schema it ships. Runs in a
worker: the deserializer imports torch.
"""

from __future__ import annotations

import re
import subprocess
import tempfile
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

# ExecuTorch's ScalarType codes (c10) -> numpy dtype names.
DTYPES = {0: "uint8", 1: "int8", 2: "int16", 3: "int32", 4: "int64", 5: "float16",
          6: "float32", 7: "float64", 11: "bool", 15: "bfloat16"}
_DYNAMIC_BOUND = 1  # TensorShapeDynamism: 0 static, 1 bounded, 2 unbounded
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
    """One delegate call: its backend and, for XNNPACK, the nodes it runs (``XNNConv2d``...)."""

    backend: str
    nodes: tuple[str, ...] = ()


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
    """The methods of the ``.pte`` at ``path``.

    Raises:
        Exception: Whatever the deserializer raises on a damaged file (the caller names it).
    """
    from executorch.exir._serialize._program import deserialize_pte_binary

    program = deserialize_pte_binary(Path(path).read_bytes()).program
    blobs = [bytes(b.data) for b in program.backend_delegate_data]
    methods = []
    for plan in program.execution_plan:
        operators = [f"{o.name}.{o.overload}" if o.overload else o.name for o in plan.operators]
        kernels, delegates = [], []
        for chain in plan.chains:
            for instruction in chain.instructions:
                args = instruction.instr_args
                kind = type(args).__name__
                if kind == "KernelCall":
                    kernels.append(operators[args.op_index])
                elif kind == "DelegateCall":
                    delegate = plan.delegates[args.delegate_index]
                    processed = delegate.processed
                    data = (blobs[processed.index] if processed.location.name == "INLINE"
                            and processed.index < len(blobs) else b"")
                    nodes = xnnpack_nodes(data) if delegate.id == XNNPACK else ()
                    delegates.append(Delegate(delegate.id, nodes))
        methods.append(PteMethod(plan.name, tuple(_value(plan, i) for i in plan.inputs),
                                 tuple(_value(plan, i) for i in plan.outputs), tuple(kernels),
                                 tuple(delegates)))
    return methods


def _value(plan: object, index: int) -> PteTensor:
    """The plan's value ``index`` as a ``PteTensor`` (a scalar: empty sizes, its kind)."""
    val = plan.values[index].val  # type: ignore[attr-defined]
    if type(val).__name__ != "Tensor":
        return PteTensor((), type(val).__name__.lower())
    return PteTensor(tuple(int(s) for s in val.sizes), DTYPES.get(int(val.scalar_type), "?"),
                     int(val.shape_dynamism) == _DYNAMIC_BOUND, int(val.shape_dynamism) > 1)


def xnnpack_nodes(blob: bytes) -> tuple[str, ...]:
    """The node kinds of an XNNPACK delegate's graph (``XNNConv2d``...), in order; empty when
    the blob can't be read."""
    import executorch
    from executorch.backends.xnnpack.serialization.xnnpack_graph_serialize import XNNHeader

    root = Path(list(executorch.__path__)[0])
    flatc = root / "data" / "bin" / "flatc"
    schema = root / "backends" / "xnnpack" / "serialization" / "schema.fbs"
    try:
        header = XNNHeader.from_bytes(blob[:XNNHeader.EXPECTED_LENGTH])
        graph = blob[header.flatbuffer_offset:header.flatbuffer_offset + header.flatbuffer_size]
    except Exception:  # noqa: BLE001 - an older header layout: the delegate stays opaque
        return ()
    if not graph or not flatc.exists() or not schema.exists():
        return ()
    with tempfile.TemporaryDirectory() as tmp:
        binary = Path(tmp) / "graph.bin"
        binary.write_bytes(graph)
        done = subprocess.run([str(flatc), "--json", "--raw-binary", "-o", tmp, str(schema),
                               "--", str(binary)], capture_output=True, timeout=60)
        out = Path(tmp) / "graph.json"
        if done.returncode or not out.exists():
            return ()
        text = out.read_text(errors="replace")
    return tuple(re.findall(r'xnode_union_type"?\s*:\s*"(\w+)"', text))
