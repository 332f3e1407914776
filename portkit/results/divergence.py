"""Where an artifact first goes wrong (``Divergence``, ``portkit debug``'s answer), and what
``convert`` and ``validate`` found of it themselves after a parity failure (``Located``)."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Divergence:
    """Where the artifact first goes wrong: the first matched pair, in the source's topological
    order, outside the policy while every matched tensor it was computed from agrees.

    Attributes:
        last_agreeing: The source tensors feeding it that agree (its matched inputs).
    """

    source_node: str
    artifact_node: str
    source_tensor: str
    artifact_tensor: str
    op_type: str
    artifact_op_type: str
    max_abs_err: float
    scaled_err: float
    cosine: float
    last_agreeing: tuple[str, ...]


@dataclass(frozen=True)
class Located:
    """After a parity failure: where the artifact first goes wrong on the first input, looked
    for by ``convert`` and ``validate`` themselves when it is cheap (both models small, float,
    one call per sample; ``portkit.debug.locate``).

    Attributes:
        command: The ``portkit debug`` command that shows more (or looks, when not looked for).
        searched: Whether it was looked for here.
        divergence: The first divergence (None: not looked for, not found, or every matched
            intermediate tensor agrees).
        error: Why looking failed (e.g. a runtime that exposes no intermediates), or "".
    """

    command: str
    searched: bool = False
    divergence: Divergence | None = None
    error: str = ""
