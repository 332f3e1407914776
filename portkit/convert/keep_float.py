"""``--keep-float auto``'s search, whatever is kept float (TFLite ops, PyTorch modules): the
fewest names whose float keeps the quantized model within its policy, as Polygraphy's ``debug
precision`` bisects for TensorRT — by block before single names, so that a transformer's
hundreds of ops cost tens of trials, not hundreds.

The names form a tree by their scopes (``encoder/layers.3/mlp/up;2`` is in ``mlp``, in
``layers.3``; a module ``layers.3.up`` in ``layers.3``). At each level the search keeps float
the fewest units (a child scope, or one name) that pass: the shortest passing prefix of them in
execution order, by bisection, then each unit of it put back to integers where the model still
passes. Then it goes down into each unit kept, the others held float. A level with more than
``MAX_UNITS`` units (a flat list of names) is first cut into about ``sqrt(n)`` runs of adjacent
units. Every set the search keeps has passed, so a search stopped by its trial budget still
returns a passing set, only maybe not the fewest.
"""

from __future__ import annotations

import contextlib
import math
import resource
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

MAX_UNITS = 16  # units one level bisects over before it is cut into runs
TRIALS = 64  # the most models a search builds and judges; then it keeps the last that passed
Passes = Callable[[tuple[str, ...]], bool]


def scope_path(name: str) -> tuple[str, ...]:
    """A TFLite tensor's scopes: its name up to the first ``;`` (litert-torch's and
    TFLiteConverter's suffix for the op's index) split at ``/``."""
    return tuple(name.split(";", 1)[0].split("/"))


def module_path(name: str) -> tuple[str, ...]:
    """A PyTorch module's scopes: its qualified name split at ``.``."""
    return tuple(name.split("."))


class _Exhausted(Exception):
    """The trial budget is spent."""


@dataclass(frozen=True)
class Search:
    """What ``search`` found.

    Attributes:
        model: The quantized model with ``kept`` float (every name quantized when none is).
        kept: The names kept float, in execution order.
        trials: Candidate models built and judged.
        note: ``fewest_float``'s note (nothing passes; the budget ran out), or "".
        seconds: How long the search took.
        peak_mb: The process's peak memory while it ran, in MB (``measured``).
    """

    model: Any
    kept: tuple[str, ...]
    trials: int
    note: str
    seconds: float
    peak_mb: float


def search(names: Sequence[str], build: Callable[[tuple[str, ...]], Any],
           fits: Callable[[Any], bool], unit: str = "ops",
           path: Callable[[str], Sequence[str]] = scope_path) -> Search:
    """``--keep-float auto`` for either quantizer: the model with the fewest of ``names`` kept
    float that ``fits`` its policy (``fewest_float``, at most ``TRIALS`` candidates), timed and
    its peak memory measured. One candidate is held at a time, besides the last that passed.

    Args:
        names: What may stay float, in execution order.
        build: The quantized model with these names kept float.
        fits: Whether a model meets the policy.
        unit: What the names are, for the note.
        path: A name's scopes (``scope_path``, ``module_path``).
    """
    last: tuple[tuple[str, ...], Any] | None = None
    trials = 0

    def passes(keep: tuple[str, ...]) -> bool:
        nonlocal trials, last
        trials += 1
        candidate = build(keep)
        if fits(candidate):
            last = (keep, candidate)
            return True
        return False

    with measured() as spent:
        kept, note = fewest_float(names, passes, unit, path, TRIALS)
        # the last set that passed, unless a set judged earlier came back from the verdicts
        model = last[1] if last is not None and last[0] == kept else build(kept)
    return Search(model, kept, trials, note, spent["seconds"], spent["peak_mb"])


def fewest_float(names: Sequence[str], passes: Passes, unit: str = "ops",
                 path: Callable[[str], Sequence[str]] = scope_path,
                 budget: int | None = None) -> tuple[tuple[str, ...], str]:
    """The fewest of ``names`` to keep float for ``passes`` (see the module's docstring).

    Args:
        names: Candidates in execution order.
        passes: Whether the model with these names kept float meets the policy.
        unit: What the names are (``ops``, ``modules``), for the note.
        path: A name's scopes, outermost first.
        budget: The most distinct sets ``passes`` judges (None: no limit).

    Returns:
        The names kept float, in execution order (empty when the full quantization passes),
        and a note when not even all of them pass (then none is kept) or when the budget ran
        out first (then the last passing set is kept).
    """
    every = tuple(names)
    judged: dict[frozenset[str], bool] = {}

    def judge(keep: frozenset[str]) -> bool:
        if keep not in judged:
            if budget is not None and len(judged) >= budget:
                raise _Exhausted
            judged[keep] = passes(tuple(n for n in every if n in keep))
        return judged[keep]

    if judge(frozenset()):
        return (), ""
    if not every or not judge(frozenset(every)):
        return (), (f"even with all {len(every)} {unit} float the model misses the policy; "
                    "nothing kept float")
    paths = {n: tuple(path(n)) for n in every}
    kept = set(every)  # always a set that passed
    note = ""

    def refine(group: tuple[str, ...]) -> None:
        """Keep float the fewest units of ``group`` (all float now) that pass, then refine each
        unit kept."""
        nonlocal kept
        units = _units(group, paths)
        if len(units) < 2:
            return
        others = frozenset(kept - set(group))

        def with_units(chosen: Sequence[tuple[str, ...]]) -> bool:
            nonlocal kept
            candidate = others.union(*chosen)
            if judge(candidate):
                kept = set(candidate)
                return True
            return False

        # The shortest passing prefix: with none of the units the model fails (a level above
        # kept this group because dropping it failed), with all it passes.
        low, high = 0, len(units)
        while high - low > 1:
            middle = (low + high) // 2
            low, high = (low, middle) if with_units(units[:middle]) else (middle, high)
        chosen = list(units[:high])
        for candidate in reversed(units[:high]):
            fewer = [u for u in chosen if u is not candidate]
            if len(chosen) > 1 and with_units(fewer):
                chosen = fewer
        for chosen_unit in chosen:
            refine(chosen_unit)

    try:
        refine(every)
    except _Exhausted:
        note = (f"stopped after {budget} trials: the {len(kept)} {unit} kept float pass, but "
                "fewer might")
    return tuple(n for n in every if n in kept), note


def _units(group: tuple[str, ...], paths: dict[str, tuple[str, ...]]
           ) -> list[tuple[str, ...]]:
    """``group`` split one level below its common scope: a unit per child scope and per name
    at that scope itself, in order of first appearance; cut into runs of adjacent units when
    there are more than ``MAX_UNITS``."""
    if len(group) < 2:
        return [group]
    depth = len(_common([paths[n] for n in group]))
    units: dict[object, list[str]] = {}
    for name in group:
        key = paths[name][depth] if len(paths[name]) > depth else (name,)
        units.setdefault(key, []).append(name)
    found = [tuple(u) for u in units.values()]
    if len(found) <= MAX_UNITS:
        return found
    size = math.ceil(len(found) / math.ceil(math.sqrt(len(found))))
    return [tuple(n for u in found[i:i + size] for n in u) for i in range(0, len(found), size)]


def _common(paths: Sequence[tuple[str, ...]]) -> tuple[str, ...]:
    """The longest scope prefix every path shares."""
    common = paths[0]
    for p in paths[1:]:
        n = 0
        while n < min(len(common), len(p)) and common[n] == p[n]:
            n += 1
        common = common[:n]
    return common


@contextlib.contextmanager
def measured() -> Iterator[dict[str, float]]:
    """Time a search and the process's peak memory while it ran: yields a dict that holds
    ``seconds`` and ``peak_mb`` once the block is done. Linux's high-water mark is reset first
    (``/proc/self/clear_refs``), so a warm worker's earlier peak doesn't count; where it can't
    be reset the peak is the process's over its life."""
    with contextlib.suppress(OSError):
        Path("/proc/self/clear_refs").write_text("5")
    found: dict[str, float] = {}
    started = time.perf_counter()
    try:
        yield found
    finally:
        found["seconds"] = time.perf_counter() - started
        found["peak_mb"] = _peak_mb()


def _peak_mb() -> float:
    """The process's peak resident memory in MB (VmHWM, else ``ru_maxrss``)."""
    with contextlib.suppress(OSError, StopIteration, ValueError):
        line = next(x for x in Path("/proc/self/status").read_text().splitlines()
                    if x.startswith("VmHWM:"))
        return int(line.split()[1]) / 1024
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
