"""The walk: each source tensor in topological order, compared with its artifact twin under the
parity policy, and the first divergence: the first pair outside the policy whose error (against
its own scale) is at least ``GROWTH`` times its nearest matched ancestors' — an op that breaks,
not float error a deep network accumulates op by op (ResNet-50's TFLite drifts to 1.2e-4 of a
tensor's scale deep inside while every output passes). When only drift is found and yet a model
output fails, the first failing pair whose ancestors all agree is named instead.

Memory stays bounded: each pair is read (memory-mapped), compared and dropped; what the walk keeps
is numbers, and for each tensor still to be consumed the names of its nearest matched ancestors.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Mapping

from portkit.debug.match import Load, Pair, load_npy
from portkit.debug.report import DebugNode, Divergence
from portkit.policies import Tolerance
from portkit.traces import Trace, TracedTensor
from portkit.validators.parity import metrics

# How many times its inputs' error (each against its own scale) a failing pair's must be to be a
# divergence rather than accumulated drift: a broken op or a 1% weight change jumps by 1e3-1e7.
GROWTH = 10.0


def walk(source: Trace, artifact: Trace, pairs: Mapping[str, Pair], tol: Tolerance,
         load: Load = load_npy) -> tuple[list[DebugNode], Divergence | None]:
    """Compare every matched pair in the source's topological order.

    Args:
        source: The source's trace.
        artifact: The artifact's trace.
        pairs: The pairs ``match.match`` found, by source tensor name.
        tol: The parity policy (NaN and inf are compared exactly: masks hold ``-inf``).
        load: Reads a traced tensor's value.

    Returns:
        One node per source tensor (unmatched ones with NaN errors), and the first divergence
        (None when every matched pair agrees, or only drifts while every output passes).
    """
    tol = dataclasses.replace(tol, allow_nonfinite=True, samples=1)
    arts = {t.name: t for t in artifact.tensors}
    left = _uses(source)
    nearest: dict[str, frozenset[str]] = {}  # tensor -> its nearest matched ancestors
    errors: dict[str, float] = {}  # matched tensor -> its scaled error
    passed: dict[str, bool] = {}
    nodes: list[DebugNode] = []
    first: Divergence | None = None
    agreeing: Divergence | None = None  # the first failing pair whose ancestors all pass
    for s in source.tensors:
        feeding = frozenset().union(*(_through(n, pairs, nearest) for n in s.inputs))
        for name in s.inputs:  # forget what no later tensor reads
            left[name] = left.get(name, 1) - 1
            if left[name] <= 0:
                nearest.pop(name, None)
        nearest[s.name] = feeding
        pair = pairs.get(s.name)
        if pair is None:
            nodes.append(_unmatched(s))
            continue
        node = _compare(s, arts[pair.artifact], pair, tol, load)
        nodes.append(node)
        passed[s.name], errors[s.name] = bool(node.passed), node.scaled_err
        if node.passed:
            continue
        inherited = max((errors[n] for n in feeding), default=0.0)
        if first is None and not node.scaled_err <= GROWTH * inherited:  # NaN diverges too
            first = _divergence(s, node, feeding, passed)
        if agreeing is None and all(passed[n] for n in feeding):
            agreeing = _divergence(s, node, feeding, passed)
    if first is None and any(passed.get(name) is False for name in source.outputs):
        first = agreeing  # no jump, but an output fails: name where it first left the policy
    return nodes, first


def _divergence(s: TracedTensor, node: DebugNode, feeding: frozenset[str],
                passed: Mapping[str, bool]) -> Divergence:
    return Divergence(
        source_node=s.node or s.name, artifact_node=node.artifact_node or "",
        source_tensor=s.name, artifact_tensor=node.artifact_tensor or "", op_type=s.op_type,
        artifact_op_type=node.artifact_op_type or "", max_abs_err=node.max_abs_err,
        scaled_err=node.scaled_err, cosine=node.cosine,
        last_agreeing=tuple(sorted(n for n in feeding if passed[n])))


def _uses(trace: Trace) -> dict[str, int]:
    """How many tensors read each tensor."""
    uses: dict[str, int] = {}
    for t in trace.tensors:
        for name in t.inputs:
            uses[name] = uses.get(name, 0) + 1
    return uses


def _through(name: str, pairs: Mapping[str, Pair],
             nearest: Mapping[str, frozenset[str]]) -> frozenset[str]:
    """The matched tensors a consumer of ``name`` depends on nearest: itself when matched."""
    return frozenset((name,)) if name in pairs else nearest.get(name, frozenset())


def _compare(s: TracedTensor, a: TracedTensor, pair: Pair, tol: Tolerance,
             load: Load) -> DebugNode:
    """One pair under the policy (a misfit pair fails with an infinite error)."""
    if pair.misfit:
        inf = math.inf
        return DebugNode(
            source_tensor=s.name, source_node=s.node or s.name, op_type=s.op_type,
            artifact_tensor=a.name, artifact_node=a.node or a.name, artifact_op_type=a.op_type,
            matched_by=pair.by, layout="misfit", max_abs_err=inf, scaled_err=inf, cosine=0.0,
            passed=False, source_node_id=s.node_id, artifact_node_id=a.node_id)
    ref = load(s)
    got = pair.to_source(load(a), tuple(ref.shape))
    row = metrics(s.name, ref, got, tol, a.name)
    return DebugNode(
        source_tensor=s.name, source_node=s.node or s.name, op_type=s.op_type,
        artifact_tensor=a.name, artifact_node=a.node or a.name, artifact_op_type=a.op_type,
        matched_by=pair.by, layout=pair.layout, max_abs_err=row.max_abs_err,
        scaled_err=row.scaled_err, cosine=row.cosine, passed=row.passed,
        source_node_id=s.node_id, artifact_node_id=a.node_id)


def _unmatched(s: TracedTensor) -> DebugNode:
    nan = math.nan
    return DebugNode(source_tensor=s.name, source_node=s.node or s.name, op_type=s.op_type,
                     artifact_tensor=None, artifact_node=None, artifact_op_type=None,
                     matched_by="", layout="", max_abs_err=nan, scaled_err=nan, cosine=nan,
                     passed=None, source_node_id=s.node_id)
