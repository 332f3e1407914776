"""Pairing a source's traced tensors with an artifact's.

In order of trust: graph inputs and model outputs (by name, else order), names the converters
kept (the artifact tensor's ``origin``, or its own name, is the source tensor's or node's), then
shape and value: a source tensor left over is paired with the artifact tensor closest to it in
value among those whose shape fits (same shape, NCHW<->NHWC, any axis order; a reshape of the same
element count only when nothing fits better), searched between the artifact positions of its
matched ancestors and descendants so matches stay in topological order. A fused op (conv + bias +
relu in one TFLite op) yields one tensor: it pairs with the last source tensor it stands for,
because a source tensor gives way to a consumer of the same shape that is closer to it.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass

import numpy as np

from portkit.errors import PortkitError
from portkit.runtimes.binding import (
    candidate_perms,
    channels_last,
    clean_name,
    pair_by_name,
)
from portkit.traces import Trace, TracedTensor

# A value match must be at least this similar (cosine): a conv's output and its ReLU's are
# ~0.7 apart, a 1% weight change keeps ~0.9999.
MIN_COSINE = 0.9
# Candidates looked at per source tensor (nearest the position matched neighbours imply first).
WINDOW = 256
# Of those, how many are compared value by value: the nearest by summary statistics that no
# layout changes (mean, standard deviation, largest magnitude).
SHORTLIST = 8
_FLOAT = ("float", "bfloat")

Load = Callable[[TracedTensor], np.ndarray]
# (perm with artifact == source.transpose(perm), reshape)
Layout = tuple[tuple[int, ...] | None, bool]


@dataclass(frozen=True)
class Pair:
    """A source tensor paired with an artifact tensor.

    Attributes:
        source: The source tensor's name.
        artifact: The artifact tensor's name.
        by: How: ``input`` (a graph input), ``output`` (a model output), ``name`` (a name the
            converter kept) or ``value`` (shape, layout and value).
        perm: Axes with ``artifact == source.transpose(perm)``; None when the same.
        reshape: The artifact's tensor is the source's reshaped (same element count).
        misfit: The shapes fit no layout (a model output the artifact computes with a wrong
            shape): the pair can only fail.
    """

    source: str
    artifact: str
    by: str
    perm: tuple[int, ...] | None = None
    reshape: bool = False
    misfit: bool = False

    def to_source(self, array: np.ndarray, shape: tuple[int, ...]) -> np.ndarray:
        """The artifact's array in the source tensor's layout and shape."""
        if self.reshape:
            return array.reshape(shape)
        return array if self.perm is None else array.transpose(np.argsort(self.perm))

    @property
    def layout(self) -> str:
        """``""`` when the shapes agree, ``reshape``, or the axes applied to the artifact's
        tensor (``0,3,1,2`` for NHWC -> NCHW)."""
        if self.reshape or self.misfit:
            return "reshape" if self.reshape else "misfit"
        return "" if self.perm is None else ",".join(str(int(i)) for i in np.argsort(self.perm))


def load_npy(tensor: TracedTensor) -> np.ndarray:
    """A traced tensor's value, memory-mapped from its ``.npy`` file.

    Raises:
        PortkitError: The file is missing or not an ``.npy`` array.
    """
    try:
        return np.load(tensor.file, mmap_mode="r", allow_pickle=False)
    except (OSError, ValueError) as e:
        raise PortkitError(f"{tensor.file}: the traced value of {tensor.name} can't be read "
                           f"({e}); rerun portkit debug") from None


def layouts(source: tuple[int, ...], artifact: tuple[int, ...]) -> list[Layout]:
    """How an artifact tensor of shape ``artifact`` can hold a source tensor of shape
    ``source``, likeliest first: the same shape or channels-last, else any axis order, else a
    reshape of the same element count; empty when none."""
    perms = candidate_perms(tuple(source), tuple(artifact))
    likely = [p for p in perms if p is None or p == channels_last(len(source))]
    if likely or perms:
        return [(p, False) for p in (likely or perms)]
    if math.prod(source) == math.prod(artifact):
        return [(None, True)]
    return []


def _finite64(array: np.ndarray) -> np.ndarray:
    """The array flattened as float64, non-finite values as zero."""
    flat = np.asarray(array, dtype=np.float64).ravel()
    return np.nan_to_num(flat, nan=0.0, posinf=0.0, neginf=0.0)


def _dot(a: np.ndarray, b: np.ndarray) -> float:
    """``a @ b`` without BLAS threads (which crawl on a loaded machine)."""
    return float(np.einsum("i,i->", a, b))


def summary(flat: np.ndarray) -> tuple[float, float, float]:
    """(mean, standard deviation, largest magnitude) of a flattened array: the same under any
    axis order or reshape, so they rank candidates before any layout is tried."""
    if not flat.size:
        return 0.0, 0.0, 0.0
    return float(flat.mean()), float(flat.std()), float(np.abs(flat).max())


class Reference:
    """A source tensor prepared once for comparing with many candidates."""

    def __init__(self, array: np.ndarray) -> None:
        self.shape = tuple(array.shape)
        self.flat = _finite64(array)
        self.scale = float(np.abs(self.flat).max()) if self.flat.size else 0.0
        self.norm = math.sqrt(_dot(self.flat, self.flat))
        self.summary = summary(self.flat)

    def distance(self, other: tuple[float, float, float]) -> float:
        """How far another tensor's ``summary`` is from this one's, in this tensor's scale."""
        return sum(abs(a - b) for a, b in zip(self.summary, other)) / (self.scale or 1.0)

    def closeness(self, got: np.ndarray) -> tuple[float, float]:
        """``(max abs err / the reference's largest magnitude, cosine)`` against ``got``
        (same shape; non-finite values count as zero)."""
        if not self.flat.size:
            return 0.0, 1.0
        g = _finite64(got)
        err = float(np.abs(self.flat - g).max())
        scaled = err / self.scale if self.scale > 0 else (0.0 if err == 0 else math.inf)
        norms = self.norm * math.sqrt(_dot(g, g))
        if norms:
            return scaled, _dot(self.flat, g) / norms
        return scaled, 1.0 if not self.flat.any() and not g.any() else 0.0


def closeness(ref: np.ndarray, got: np.ndarray) -> tuple[float, float]:
    """``(max abs err / the reference's largest magnitude, cosine)`` of two same-shaped arrays
    (non-finite values count as zero)."""
    return Reference(ref).closeness(got)


def best_layout(ref: np.ndarray | Reference, got: np.ndarray, options: Iterable[Layout]
                ) -> tuple[Layout, float, float] | None:
    """The layout under which ``got`` is closest to ``ref``: (layout, scaled err, cosine)."""
    target = ref if isinstance(ref, Reference) else Reference(ref)
    best = None
    for perm, reshape in options:
        pair = Pair("", "", "", perm, reshape)
        scaled, cosine = target.closeness(pair.to_source(got, target.shape))
        if best is None or (scaled, -cosine) < (best[1], -best[2]):
            best = ((perm, reshape), scaled, cosine)
    return best


class _Graph:
    """A trace's tensors by name and position, with ancestor and descendant sets (bit masks
    over positions)."""

    def __init__(self, trace: Trace) -> None:
        self.tensors = trace.tensors
        self.index = {t.name: i for i, t in enumerate(trace.tensors)}
        self.ancestors: list[int] = []
        for t in trace.tensors:
            mask = 0
            for name in t.inputs:
                j = self.index.get(name)
                if j is not None:
                    mask |= self.ancestors[j] | (1 << j)
            self.ancestors.append(mask)
        self.consumers: dict[str, list[str]] = {t.name: [] for t in trace.tensors}
        for t in trace.tensors:
            for name in t.inputs:
                if name in self.consumers:
                    self.consumers[name].append(t.name)

    def related(self, i: int) -> tuple[int, int]:
        """(ancestors, descendants) of position ``i`` as bit masks."""
        down = 0
        for j in range(i + 1, len(self.tensors)):
            if self.ancestors[j] >> i & 1:
                down |= 1 << j
        return self.ancestors[i], down


def match(source: Trace, artifact: Trace, load: Load = load_npy) -> dict[str, Pair]:
    """Pair the source's tensors with the artifact's.

    Args:
        source: The source model's trace.
        artifact: The artifact's trace.
        load: Reads a traced tensor's value (default: memory-mapped ``.npy``).

    Returns:
        The pairs found, by source tensor name (an artifact tensor in at most one pair).
    """
    src, art = _Graph(source), _Graph(artifact)
    pairs: dict[str, Pair] = {}
    taken: set[str] = set()

    def add(s: TracedTensor, a: TracedTensor, by: str, options: list[Layout]) -> None:
        if not options:
            pairs[s.name] = Pair(s.name, a.name, by, misfit=True)
            taken.add(a.name)
            return
        layout = options[0]
        if len(options) > 1:
            found = best_layout(load(s), load(a), options)
            layout = found[0] if found else layout
        pairs[s.name] = Pair(s.name, a.name, by, *layout)
        taken.add(a.name)

    _by_position(source, artifact, src, art, add)
    _by_name(source, artifact, pairs, taken, add)
    _by_value(src, art, pairs, taken, load)
    return pairs


def _by_position(source: Trace, artifact: Trace, src: _Graph, art: _Graph,
                 add: Callable[[TracedTensor, TracedTensor, str, list[Layout]], None]) -> None:
    """Graph inputs and model outputs, by name else order (skipped when the counts differ)."""
    groups = (
        ("input", [t.name for t in source.tensors if t.op_type == "input"],
         [t.name for t in artifact.tensors if t.op_type == "input"]),
        ("output", list(source.outputs), list(artifact.outputs)),
    )
    for by, s_names, a_names in groups:
        try:
            found = pair_by_name(s_names, a_names)
        except PortkitError:
            continue
        for s_name, a_name in found:
            s, a = src.tensors[src.index[s_name]], art.tensors[art.index[a_name]]
            options = layouts(s.shape, a.shape)
            if options:
                add(s, a, by, options)
            elif by == "output":  # an output of the wrong shape: a divergence, not unmatched
                add(s, a, by, [])


def _by_name(source: Trace, artifact: Trace, pairs: Mapping[str, Pair], taken: set[str],
             add: Callable[[TracedTensor, TracedTensor, str, list[Layout]], None]) -> None:
    """Names the converters kept: an artifact tensor whose origin (or own name, cleaned) is a
    source tensor's name, node or origin; the last such tensor whose shape fits (a source op
    the converter split, or fused, ends in it)."""
    keyed: dict[str, list[TracedTensor]] = {}
    for a in artifact.tensors:
        for key in {a.origin, clean_name(a.name)} - {""}:
            keyed.setdefault(key, []).append(a)
    for s in source.tensors:
        if s.name in pairs or s.op_type == "input":
            continue
        keys = [s.name, s.origin] + ([s.node] if s.node else [])
        for key in filter(None, keys):
            fits = [(a, layouts(s.shape, a.shape)) for a in keyed.get(key, ())
                    if a.name not in taken and a.op_type != "input"]
            fits = [(a, options) for a, options in fits if options]
            if fits:
                last, options = fits[-1]
                add(s, last, "name", options)
                break


def _by_value(src: _Graph, art: _Graph, pairs: dict[str, Pair], taken: set[str],
              load: Load) -> None:
    """Each float source tensor still unpaired, with the closest artifact tensor (cosine >=
    ``MIN_COSINE``) between its matched neighbours' positions, unless a consumer of the same
    shape is closer to that tensor (a fused op's one output stands for its last tensor)."""
    summaries: dict[str, tuple[float, float, float]] = {}

    def summarized(a: TracedTensor) -> tuple[float, float, float]:
        if a.name not in summaries:
            summaries[a.name] = summary(_finite64(load(a)))
        return summaries[a.name]

    for i, s in enumerate(src.tensors):
        if s.name in pairs or not s.dtype.startswith(_FLOAT) or not s.shape:
            continue
        up, down = src.related(i)
        low, high = _bounds(src, art, pairs, up, down)
        found = _closest(Reference(load(s)), s, art, low, high, taken, load, summarized)
        if found is None:
            continue
        a, layout, scaled = found
        if _consumer_closer(s, a, layout, scaled, src, pairs, load):
            continue
        pairs[s.name] = Pair(s.name, a.name, "value", *layout)
        taken.add(a.name)


def _bounds(src: _Graph, art: _Graph, pairs: Mapping[str, Pair], up: int, down: int
            ) -> tuple[int, int]:
    """The artifact positions a match may take: after every matched ancestor's twin, before
    every matched descendant's."""
    low, high = 0, len(art.tensors)
    for name, pair in pairs.items():
        j, k = src.index[name], art.index[pair.artifact]
        if up >> j & 1:
            low = max(low, k + 1)
        elif down >> j & 1:
            high = min(high, k)
    return low, high


def _closest(ref: Reference, s: TracedTensor, art: _Graph, low: int, high: int,
             taken: set[str], load: Load,
             summarized: Callable[[TracedTensor], tuple[float, float, float]]
             ) -> tuple[TracedTensor, Layout, float] | None:
    """The free artifact tensor in ``[low, high)`` closest to ``ref`` with cosine >=
    ``MIN_COSINE``: of at most ``WINDOW`` whose shape fits, the ``SHORTLIST`` nearest by
    ``summary`` are compared value by value."""
    fitting: list[tuple[TracedTensor, list[Layout]]] = []
    for a in art.tensors[low:high]:
        if a.name in taken or a.op_type == "input" or not a.dtype.startswith(_FLOAT):
            continue
        options = layouts(s.shape, a.shape)
        if options:
            fitting.append((a, options))
        if len(fitting) == WINDOW:
            break
    if len(fitting) > SHORTLIST:
        fitting = sorted(fitting, key=lambda c: ref.distance(summarized(c[0])))[:SHORTLIST]
    best: tuple[TracedTensor, Layout, float] | None = None
    for a, options in fitting:
        found = best_layout(ref, load(a), options)
        if found is None or found[2] < MIN_COSINE:
            continue
        if best is None or found[1] < best[2]:
            best = (a, found[0], found[1])
    return best


def _consumer_closer(s: TracedTensor, a: TracedTensor, layout: Layout, scaled: float,
                     src: _Graph, pairs: Mapping[str, Pair], load: Load) -> bool:
    """Whether a consumer of ``s`` with its shape, not yet paired, is closer to ``a`` (``a``
    is a fused op's output, which stands for the consumer)."""
    pair = Pair(s.name, a.name, "value", *layout)
    got = None
    for name in src.consumers[s.name]:
        c = src.tensors[src.index[name]]
        if name in pairs or tuple(c.shape) != tuple(s.shape):
            continue
        got = pair.to_source(load(a), tuple(s.shape)) if got is None else got
        if closeness(load(c), got)[0] < scaled:
            return True
    return False
