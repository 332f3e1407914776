"""Parity metrics between a reference output and an artifact's, per output tensor."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np

from portkit.options import Tolerance
from portkit.results import OutputParity
from portkit.runtimes.binding import Binding, candidate_perms, channels_last, pair_by_name

Arrays = np.ndarray | Sequence[np.ndarray]


def metrics(name: str, ref: Arrays, got: Arrays, tol: Tolerance,
            artifact_name: str = "", layout: str | None = None) -> OutputParity:
    """Compare same-shaped arrays: one sample, or a sequence of samples.

    Args:
        name: The output's name.
        ref: Reference values (an array, or one array per sample).
        got: Artifact values, in the reference's layout, as many as ``ref``.
        tol: The tolerance to judge by.
        artifact_name: The artifact's name for this output.
        layout: A note on the layout mapping applied to ``got``.

    Returns:
        The parity of this output.
    """
    artifact_name = artifact_name or name
    refs = [ref] if isinstance(ref, np.ndarray) else list(ref)
    gots = [got] if isinstance(got, np.ndarray) else list(got)
    shape = tuple(refs[0].shape)
    bad = next((g.shape for g in gots if g.shape != shape), None)
    if bad is not None or len(refs) != len(gots):
        return OutputParity(name=name, artifact_name=artifact_name, shape=shape,
                            max_abs_err=float("inf"), max_rel_err=float("inf"), cosine=0.0,
                            min_atol_to_pass=float("inf"), passed=False, layout=layout,
                            error=f"shape {tuple(bad or ())} != reference {shape}",
                            samples=len(refs))
    r = np.stack(refs).astype(np.float64)
    g = np.stack(gots).astype(np.float64)
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
    top1, top5 = _top_k(r, g)
    failed = []
    if np.any(~np.isfinite(g) & np.isfinite(r)):
        failed.append("non-finite")  # NaN/inf where the reference has numbers
    if tol.atol is not None and not np.all(diff <= tol.atol + tol.rtol * np.abs(np.nan_to_num(r))):
        failed.append("max abs err")
    if tol.min_cosine is not None and not cosine >= tol.min_cosine:
        failed.append("cosine")
    if tol.min_top1 is not None and top1 is not None and top1 < tol.min_top1:
        failed.append("top-1")
    if tol.min_top5 is not None and top5 is not None and top5 < tol.min_top5:
        failed.append("top-5")
    return OutputParity(name=name, artifact_name=artifact_name, shape=shape, max_abs_err=max_abs,
                        max_rel_err=max_rel, cosine=cosine, min_atol_to_pass=min_atol,
                        passed=not failed, layout=layout, samples=len(refs), top1=top1,
                        top5=top5, failed=tuple(failed))


def _top_k(r: np.ndarray, g: np.ndarray) -> tuple[float | None, float | None]:
    """Top-1 and top-5 agreement over samples, for outputs holding one score vector per sample."""
    shape = r.shape[1:]  # one sample's
    rows = int(np.prod(shape[:-1])) if shape else 0
    if not shape or shape[-1] < 2 or rows != (shape[0] if len(shape) > 1 else 1):
        return None, None  # not classifier-like: a map, a sequence, a scalar
    # One score vector per row: (classes,), (batch, classes), (batch, 1, classes)…
    r2, g2 = r.reshape(-1, shape[-1]), g.reshape(-1, shape[-1])
    want = r2.argmax(axis=1)
    top1 = float(np.mean(g2.argmax(axis=1) == want))
    if r2.shape[1] <= 5:
        return top1, None
    top5 = np.argsort(-g2, axis=1)[:, :5]
    return top1, float(np.mean([w in row for w, row in zip(want, top5)]))


def compare_outputs(reference: Sequence[dict[str, np.ndarray]] | dict[str, np.ndarray],
                    artifact: Sequence[dict[str, np.ndarray]] | dict[str, np.ndarray],
                    tol: Tolerance,
                    per_output: Mapping[str, Tolerance] | None = None) -> list[OutputParity]:
    """Match artifact outputs to reference outputs (name, else order; any axis order) and compare.

    Where both the same and the channels-last axis order fit an output's shape (e.g. a 1x8x8x8
    tensor), the one with the smaller error on the first sample is taken; other axis orders only
    when neither fits.

    Args:
        reference: Reference outputs by name, in order (one dict, or one per sample).
        artifact: Artifact outputs by name, in order (as many as ``reference``).
        tol: The tolerance to judge by.
        per_output: Tolerances for some outputs, by reference output name (else ``tol``).

    Returns:
        One parity row per reference output.
    """
    per_output = per_output or {}
    refs = [reference] if isinstance(reference, dict) else list(reference)
    arts = [artifact] if isinstance(artifact, dict) else list(artifact)
    rows = []
    for ref_name, art_name in pair_by_name(list(refs[0]), list(arts[0])):
        tol_ = per_output.get(ref_name, tol)
        ref = [o[ref_name] for o in refs]
        got = [o[art_name] for o in arts]
        perms = candidate_perms(tuple(ref[0].shape), tuple(got[0].shape))
        likely = [p for p in perms if p is None or p == channels_last(ref[0].ndim)]
        perms = likely or perms
        if not perms:
            rows.append(metrics(ref_name, ref, got, tol_, art_name))
            continue
        best = None
        for perm in perms:
            binding = Binding(ref_name, art_name, perm)
            first = metrics(ref_name, ref[0], binding.to_source(got[0]), tol_)
            if best is None or first.max_abs_err < best[0]:
                best = (first.max_abs_err, binding)
        assert best is not None
        binding = best[1]
        rows.append(metrics(ref_name, ref, [binding.to_source(x) for x in got], tol_, art_name,
                            binding.layout_note))
    return rows
