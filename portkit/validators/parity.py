"""Parity metrics between a reference output and an artifact's, per output tensor."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np

from portkit.policies import KindHints, OutputKind, Tolerance
from portkit.results import OutputParity
from portkit.runtimes.binding import (
    Binding,
    candidate_perms,
    channels_last,
    pair_by_name,
)
from portkit.specs import nonfinite_counts

Arrays = np.ndarray | Sequence[np.ndarray]


def metrics(name: str, ref: Arrays, got: Arrays, tol: Tolerance,
            artifact_name: str = "", layout: str | None = None,
            hints: KindHints = KindHints()) -> OutputParity:
    """Compare same-shaped arrays: one sample, or a sequence of samples.

    Args:
        name: The output's name.
        ref: Reference values (an array, or one array per sample).
        got: Artifact values, in the reference's layout, as many as ``ref``.
        tol: The tolerance to judge by.
        artifact_name: The artifact's name for this output.
        layout: A note on the layout mapping applied to ``got``.
        hints: What the source says about its outputs (``guess_kind``).

    Returns:
        The parity of this output.
    """
    artifact_name = artifact_name or name
    refs = [ref] if isinstance(ref, np.ndarray) else list(ref)
    gots = [got] if isinstance(got, np.ndarray) else list(got)
    shape = tuple(refs[0].shape)
    r = np.stack(refs).astype(np.float64)
    kind, why = (tol.kind, "set by the user") if tol.kind else guess_kind(name, r, hints)
    bad = next((g.shape for g in gots if g.shape != shape), None)
    if bad is not None or len(refs) != len(gots):
        inf = float("inf")
        return OutputParity(name=name, artifact_name=artifact_name, shape=shape,
                            max_abs_err=inf, max_rel_err=inf, cosine=0.0, min_atol_to_pass=inf,
                            passed=False, scaled_err=inf, min_scale_tol_to_pass=inf,
                            kind=kind.value, kind_why=why, layout=layout,
                            error=f"shape {tuple(bad or ())} != reference {shape}",
                            samples=len(refs))
    g = np.stack(gots).astype(np.float64)
    finite = np.isfinite(r) & np.isfinite(g)
    nonfinite = _nonfinite(r, g, finite, tol.allow_nonfinite)
    # Non-finite values that match count as no error, those that don't as an infinite one.
    same = (r == g) | (np.isnan(r) & np.isnan(g))
    diff = np.where(finite, np.abs(np.where(finite, g, 0.0) - np.where(finite, r, 0.0)),
                    np.where(same, 0.0, np.inf))
    magnitude = np.abs(np.where(finite, r, 0.0))
    scale = float(magnitude.max()) if diff.size else 0.0
    max_abs = float(diff.max()) if diff.size else 0.0
    max_rel = float((diff / np.maximum(magnitude, 1e-12)).max()) if diff.size else 0.0
    atol = tol.atol or 0.0
    min_atol = _smallest(diff - tol.rtol * magnitude - tol.scale_tol * scale)
    min_scale_tol = _smallest(diff - atol - tol.rtol * magnitude, scale)
    rf, gf = np.where(finite, r, 0.0).ravel(), np.where(finite, g, 0.0).ravel()
    norms = float(np.linalg.norm(rf) * np.linalg.norm(gf))
    if norms == 0.0:
        cosine = 1.0 if not rf.any() and not gf.any() else 0.0
    else:
        cosine = float(np.dot(rf, gf) / norms)
    top1, top5 = _top_k(r, g, per_position=hints.tokens and r.ndim == 4) \
        if kind is OutputKind.CLASSIFIER else (None, None)
    failed = []
    if nonfinite:
        failed.append("non-finite")
    if tol.atol is not None and not np.all(
            diff <= tol.atol + tol.rtol * magnitude + tol.scale_tol * scale):
        failed.append("max abs err")
    if tol.min_cosine is not None and not cosine >= tol.min_cosine:
        failed.append("cosine")
    if tol.min_top1 is not None and top1 is not None and top1 < tol.min_top1:
        failed.append("top-1")
    if tol.min_top5 is not None and top5 is not None and top5 < tol.min_top5:
        failed.append("top-5")
    scaled = max_abs / scale if scale > 0 else (0.0 if max_abs == 0 else float("inf"))
    return OutputParity(name=name, artifact_name=artifact_name, shape=shape, max_abs_err=max_abs,
                        max_rel_err=max_rel, cosine=cosine, min_atol_to_pass=min_atol,
                        passed=not failed, scale=scale, scaled_err=scaled,
                        min_scale_tol_to_pass=min_scale_tol, kind=kind.value, kind_why=why,
                        layout=layout, samples=len(refs), top1=top1, top5=top5,
                        failed=tuple(failed), nonfinite=nonfinite)


def _nonfinite(r: np.ndarray, g: np.ndarray, finite: np.ndarray, allow: bool) -> str | None:
    """Why an output's NaN/inf fail it, or None: without ``allow`` any NaN or inf on either
    side fails (both sides giving NaN proves nothing); with it, the non-finite values must
    match exactly (same places, same values, NaN equal to NaN)."""
    if finite.all():
        return None
    counts = f"{_count(r)} in the reference, {_count(g)} in the artifact"
    if not allow:
        return counts
    same = (r == g) | (np.isnan(r) & np.isnan(g))
    differ = int(np.count_nonzero(~finite & ~same))
    return f"{differ} non-finite values differ ({counts})" if differ else None


def _count(a: np.ndarray) -> str:
    """``12 NaN``, ``3 inf``, ``12 NaN and 3 inf`` or ``0 NaN/inf``."""
    nan, inf = nonfinite_counts(a)
    found = [f"{n} {what}" for n, what in ((nan, "NaN"), (inf, "inf")) if n]
    return " and ".join(found) or "0 NaN/inf"


def _smallest(excess: np.ndarray, per: float = 1.0) -> float:
    """The smallest tolerance that covers ``excess`` (the error left after the other terms),
    in units of ``per``."""
    worst = max(float(excess.max()), 0.0) if excess.size else 0.0
    if worst == 0.0:
        return 0.0
    return worst / per if per > 0 else float("inf")


# Names that say what an output holds (lower case, matched as substrings).
_EMBEDDING_NAMES = ("embed", "hidden", "feature", "pooler", "vector", "encoding")
_CLASSIFIER_NAMES = ("logit", "prob", "score", "class", "label")


def guess_kind(name: str, ref: np.ndarray, hints: KindHints = KindHints()
               ) -> tuple[OutputKind, str]:
    """What an output holds when the user didn't say (``--output-kind``), and why.

    The rule, in order: for a model of token ids (``hints``), a ``[batch, seq, width]`` float
    output is a classifier per position (logits over a vocabulary) unless its width is the
    model's hidden width or its name says embedding (hidden states: regression), and a
    ``[batch, width]`` float output of the hidden width is an embedding (a pooled sentence
    vector); then: not one score vector per sample -> regression; a name that says embedding
    (``embed``, ``hidden``, ``feature``, ``pooler``, ``vector``, ``encoding``) -> embedding;
    rows that are probabilities (>= 0, summing to 1) or a name that says classifier
    (``logit``, ``prob``, ``score``, ``class``, ``label``) -> classifier; rows of unit L2 norm
    -> embedding; else classifier (one score vector per sample).

    Args:
        name: The output's name.
        ref: The reference values, samples on the first axis.
        hints: What the source's inputs and weights say (``policies.KindHints``).

    Returns:
        The kind and the rule that chose it.
    """
    lowered = name.lower()
    named_embedding = any(word in lowered for word in _EMBEDDING_NAMES)
    if hints.tokens and hints.hidden is not None and ref.ndim == 4 and ref.shape[-1] >= 2 \
            and not named_embedding and ref.shape[-1] != hints.hidden:
        return OutputKind.CLASSIFIER, (f"scores per position over {ref.shape[-1]} classes "
                                       "(a vocabulary) of a model of token ids")
    rows = _score_rows(ref)
    if rows is None:
        return OutputKind.REGRESSION, "not one score vector per sample"
    if hints.tokens and ref.shape[-1] == hints.hidden \
            and not any(word in lowered for word in _CLASSIFIER_NAMES):
        return OutputKind.EMBEDDING, (f"a vector of the model's hidden width ({hints.hidden}) "
                                      "from token ids")
    if named_embedding:
        return OutputKind.EMBEDDING, f"its name says so ({name})"
    finite = rows[np.isfinite(rows).all(axis=1)]
    if len(finite) and (finite >= 0).all() and np.allclose(finite.sum(axis=1), 1.0, atol=1e-3):
        return OutputKind.CLASSIFIER, "its rows are probabilities"
    if any(word in lowered for word in _CLASSIFIER_NAMES):
        return OutputKind.CLASSIFIER, f"its name says so ({name})"
    if len(finite) and np.allclose(np.linalg.norm(finite, axis=1), 1.0, atol=1e-3):
        return OutputKind.EMBEDDING, "its rows have unit L2 norm"
    return OutputKind.CLASSIFIER, "one score vector per sample"


def _score_rows(r: np.ndarray) -> np.ndarray | None:
    """The score vectors of an output (samples on the first axis), one per row, or None when
    the output does not hold one vector per sample and batch row (a map, a sequence, a
    scalar)."""
    shape = r.shape[1:]  # one sample's
    rows = int(np.prod(shape[:-1])) if shape else 0
    if not shape or shape[-1] < 2 or rows != (shape[0] if len(shape) > 1 else 1):
        return None
    # One score vector per row: (classes,), (batch, classes), (batch, 1, classes)...
    return r.reshape(-1, shape[-1])


def _top_k(r: np.ndarray, g: np.ndarray, per_position: bool = False
           ) -> tuple[float | None, float | None]:
    """Top-1 and top-5 agreement over the score vectors (one per sample and batch row, or,
    ``per_position``, one per position of a sequence of a model of token ids)."""
    r2 = r.reshape(-1, r.shape[-1]) if per_position and r.shape[-1] >= 2 else _score_rows(r)
    if r2 is None:
        return None, None
    g2 = g.reshape(r2.shape)
    want = r2.argmax(axis=1)
    top1 = float(np.mean(g2.argmax(axis=1) == want))
    if r2.shape[1] <= 5:
        return top1, None
    top5 = np.argsort(-g2, axis=1)[:, :5]
    return top1, float(np.mean([w in row for w, row in zip(want, top5)]))


def compare_outputs(reference: Sequence[dict[str, np.ndarray]] | dict[str, np.ndarray],
                    artifact: Sequence[dict[str, np.ndarray]] | dict[str, np.ndarray],
                    tol: Tolerance,
                    per_output: Mapping[str, Tolerance] | None = None,
                    hints: KindHints = KindHints()) -> list[OutputParity]:
    """Match artifact outputs to reference outputs (name, else order; any axis order) and compare.

    Where both the same and the channels-last axis order fit an output's shape (e.g. a 1x8x8x8
    tensor), the one with the smaller error on the first sample is taken; other axis orders only
    when neither fits.

    Args:
        reference: Reference outputs by name, in order (one dict, or one per sample).
        artifact: Artifact outputs by name, in order (as many as ``reference``).
        tol: The tolerance to judge by.
        per_output: Tolerances for some outputs, by reference output name (else ``tol``).
        hints: What the source says about its outputs (``guess_kind``).

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
            rows.append(metrics(ref_name, ref, got, tol_, art_name, hints=hints))
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
                            binding.layout_note, hints))
    return rows
