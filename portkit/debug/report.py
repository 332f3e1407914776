"""``portkit debug``'s report: each source tensor and its artifact twin (``DebugNode``), the
first divergence (``Divergence``), and the whole (``DebugReport``)."""

from __future__ import annotations

from dataclasses import dataclass

from portkit.errors import ExitCode
from portkit.policies import Tolerance
from portkit.results import FileInfo, JsonReport
from portkit.results.divergence import Divergence


@dataclass(frozen=True)
class DebugNode:
    """One source tensor in ``portkit debug``: its artifact twin (if matched) and their error.

    Attributes:
        source_tensor, source_node, op_type: The source's tensor, its node and op.
        artifact_tensor, artifact_node, artifact_op_type: Its match in the artifact (None when
            unmatched).
        matched_by: How: ``input`` (a graph input), ``name`` (a name the converter kept),
            ``output`` (a model output), ``value`` (shape, layout and values), or ``""``
            (unmatched).
        layout: ``""`` when shapes are equal, else the permutation applied to the artifact's
            tensor (e.g. ``0,3,1,2`` for NHWC -> NCHW), ``reshape`` (same element count), or
            ``misfit`` (an output whose shape fits no layout: it fails, errors infinite).
        max_abs_err, scaled_err, cosine: The pair's error (NaN when unmatched); ``scaled_err``
            is max abs err / the source tensor's largest magnitude.
        passed: Whether the pair is within the policy (None when unmatched).
        source_node_id, artifact_node_id: Model Explorer node ids (for overlays).
    """

    source_tensor: str
    source_node: str
    op_type: str
    artifact_tensor: str | None
    artifact_node: str | None
    artifact_op_type: str | None
    matched_by: str
    layout: str
    max_abs_err: float
    scaled_err: float
    cosine: float
    passed: bool | None
    source_node_id: str = ""
    artifact_node_id: str = ""


@dataclass(frozen=True)
class DebugReport(JsonReport):
    """``portkit debug``: every source tensor matched (or not) with the artifact's, and the
    first divergence (None when the artifact agrees everywhere it was matched).

    Attributes:
        hops: With ``--hops``: one report per hop of the route that made the artifact.
    """

    source: FileInfo
    artifact: FileInfo
    tolerance: Tolerance
    first_divergence: Divergence | None
    matched: int
    unmatched_source: int
    unmatched_artifact: int
    nodes: tuple[DebugNode, ...]
    seconds: float
    peak_rss_mb: float
    hops: tuple[DebugReport, ...] = ()

    @property
    def exit_code(self) -> ExitCode:
        diverged = self.first_divergence is not None or any(
            h.first_divergence is not None for h in self.hops)
        return ExitCode.PARITY_FAILED if diverged else ExitCode.OK
