"""How an artifact is judged against its source (``Judgement``): the parity policy, the
policies of some outputs (their kinds), and task accuracy on labelled data (``--eval``).
``convert``, ``validate``, ``debug`` and ``portkit check`` build it with ``judgement``."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from portkit import policies
from portkit.options.measuring import Evaluation, evaluation
from portkit.policies import POLICIES, OutputKind, Quantize, Tolerance


@dataclass(frozen=True)
class Judgement:
    """What an artifact is held to.

    Attributes:
        tolerance: The parity policy of every output.
        per_output: Policies of some outputs, by reference output name (``--output-kind``,
            ``portkit.toml``'s ``[model.outputs.NAME]``).
        evaluation: ``--eval``: the artifact's task accuracy against the source's, and the
            largest drop that passes.
    """

    tolerance: Tolerance = POLICIES["fp32"]
    per_output: Mapping[str, Tolerance] = field(default_factory=dict)
    evaluation: Evaluation | None = None


def judgement(quantize: Quantize | None = None, *,
              output_kinds: Mapping[str, str | OutputKind] | Sequence[str] = (),
              per_output: Mapping[str, Tolerance] | None = None,
              eval_data: str | Path | None = None, eval_output: str | None = None,
              max_accuracy_drop: float | None = None, validate: bool = True, steps: int = 1,
              allow_nonfinite: bool = False, **numbers: Any) -> Judgement:
    """A ``Judgement`` from the flags' values (the CLI's, the API's keywords, ``portkit.toml``'s):
    the precision's policy with the user's ``policies.Numbers`` over it, the outputs' kinds, and
    ``--eval`` checked before any work (``measuring.evaluation``).

    Raises:
        UsageError: A number out of range, a malformed ``--output-kind``, or bad ``--eval``
            flags or data.
        TypeError: A keyword that is no number of the policy.
    """
    tolerance = policies.policy(quantize, allow_nonfinite=allow_nonfinite, **numbers)
    return Judgement(
        tolerance, policies.output_kinds(tolerance, output_kinds, per_output),
        evaluation(eval_data, eval_output, max_accuracy_drop, validate=validate, steps=steps,
                   allow_nonfinite=allow_nonfinite))
