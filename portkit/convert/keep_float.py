"""``--keep-float auto``'s search, whatever is kept float (TFLite ops, PyTorch modules): the
fewest names whose float keeps the quantized model within its policy, as Polygraphy's ``debug
precision`` bisects for TensorRT."""

from __future__ import annotations

from collections.abc import Callable, Sequence


def fewest_float(names: Sequence[str], passes: Callable[[tuple[str, ...]], bool],
                 unit: str = "ops") -> tuple[tuple[str, ...], str]:
    """The fewest of ``names`` to keep float for ``passes``: the shortest passing prefix, by
    bisection, then each of its names dropped where ``passes`` still holds.

    Args:
        names: Candidates in execution order.
        passes: Whether the model with these names kept float meets the policy.
        unit: What the names are (``ops``, ``modules``), for the note.

    Returns:
        The names kept float (empty when the full quantization passes), and a note when not
        even all of them pass (then none is kept).
    """
    if passes(()):
        return (), ""
    every = tuple(names)
    if not every or not passes(every):
        return (), (f"even with all {len(every)} {unit} float the model misses the policy; "
                    "nothing kept float")
    low, high = 0, len(every)  # passes(every[:high]); not passes(every[:low])
    while high - low > 1:
        middle = (low + high) // 2
        low, high = (low, middle) if passes(every[:middle]) else (middle, high)
    kept = every[:high]
    for name in reversed(every[:high]):
        fewer = tuple(k for k in kept if k != name)
        if passes(fewer):
            kept = fewer
    return kept, ""
