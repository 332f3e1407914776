"""Parity metrics between a reference output and an artifact's, per output tensor."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from portkit.specs import Tolerance
from portkit.validators.layout import Binding, candidate_perms, channels_last, pair_by_name


@dataclass(frozen=True)
class OutputParity:
    """How one artifact output compares with the reference.

    Attributes:
        name: The reference output's name.
        artifact_name: The artifact output it was matched with.
        shape: The reference shape.
        max_abs_err: max |got - ref|.
        max_rel_err: max |got - ref| / |ref| (|ref| floored at 1e-12).
        cosine: Cosine similarity of the flattened tensors (1.0 when both are zero).
        min_atol_to_pass: The smallest atol that passes at the tolerance's rtol.
        passed: Whether every element is within ``atol + rtol * |ref|``.
        layout: How the artifact's layout was mapped back (e.g. ``NCHW->NHWC``), if it was.
        error: Why nothing could be compared (shape or dtype mismatch), if so.
    """

    name: str
    artifact_name: str
    shape: tuple[int, ...]
    max_abs_err: float
    max_rel_err: float
    cosine: float
    min_atol_to_pass: float
    passed: bool
    layout: str | None = None
    error: str | None = None


def metrics(name: str, ref: np.ndarray, got: np.ndarray, tol: Tolerance,
            artifact_name: str = "", layout: str | None = None) -> OutputParity:
    """Compare two same-shaped arrays.

    Args:
        name: The output's name.
        ref: Reference values.
        got: Artifact values, in the reference's layout.
        tol: The tolerance to judge by.
        artifact_name: The artifact's name for this output.
        layout: A note on the layout mapping applied to ``got``.

    Returns:
        The parity of this output.
    """
    artifact_name = artifact_name or name
    if ref.shape != got.shape:
        return OutputParity(name, artifact_name, tuple(ref.shape), float("inf"), float("inf"),
                            0.0, float("inf"), False, layout,
                            f"shape {tuple(got.shape)} != reference {tuple(ref.shape)}")
    r = ref.astype(np.float64)
    g = got.astype(np.float64)
    both_nan = np.isnan(r) & np.isnan(g)
    diff = np.where(both_nan, 0.0, np.abs(g - r))
    diff = np.where(np.isnan(diff), np.inf, diff)
    max_abs = float(diff.max()) if diff.size else 0.0
    max_rel = float((diff / np.maximum(np.abs(np.nan_to_num(r)), 1e-12)).max()) if diff.size else 0.0
    need = diff - tol.rtol * np.abs(np.nan_to_num(r))
    min_atol = max(float(need.max()), 0.0) if diff.size else 0.0
    rf, gf = np.nan_to_num(r).ravel(), np.nan_to_num(g).ravel()
    norms = float(np.linalg.norm(rf) * np.linalg.norm(gf))
    if norms == 0.0:
        cosine = 1.0 if not rf.any() and not gf.any() else 0.0
    else:
        cosine = float(np.dot(rf, gf) / norms)
    passed = bool(np.all(diff <= tol.atol + tol.rtol * np.abs(np.nan_to_num(r))))
    return OutputParity(name, artifact_name, tuple(ref.shape), max_abs, max_rel, cosine,
                        min_atol, passed, layout)


def compare_outputs(reference: dict[str, np.ndarray], artifact: dict[str, np.ndarray],
                    tol: Tolerance) -> list[OutputParity]:
    """Match artifact outputs to reference outputs (name, else order; any axis order) and compare.

    Where both the same and the channels-last axis order fit an output's shape (e.g. a 1x8x8x8
    tensor), the one with the smaller error is taken; other axis orders only when neither fits.

    Args:
        reference: Reference outputs by name, in order.
        artifact: Artifact outputs by name, in order.
        tol: The tolerance to judge by.

    Returns:
        One parity row per reference output.
    """
    rows = []
    for ref_name, art_name in pair_by_name(list(reference), list(artifact)):
        ref, got = reference[ref_name], artifact[art_name]
        perms = candidate_perms(tuple(ref.shape), tuple(got.shape))
        likely = [p for p in perms if p is None or p == channels_last(ref.ndim)]
        perms = likely or perms
        if not perms:
            rows.append(metrics(ref_name, ref, got, tol, art_name))
            continue
        best = None
        for perm in perms:
            binding = Binding(ref_name, art_name, perm)
            row = metrics(ref_name, ref, binding.to_source(got), tol, art_name,
                          binding.layout_note)
            if best is None or row.max_abs_err < best.max_abs_err:
                best = row
        assert best is not None
        rows.append(best)
    return rows
