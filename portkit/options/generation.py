"""Language models (``--generate``, ``--max-seq``, ``--prefill``, ``--prompt``): how a decoder is
exported (its cache length and prefill lengths) and how it is judged by generating (the prompt
and how many tokens).

``Export`` is what every decoder converter reads (``convert/hf_to_*.py``); ``Generation`` is
what the generation check runs (``validators/generation.py``).
"""

from __future__ import annotations

from dataclasses import dataclass

from portkit.errors import UsageError

DEFAULT_STEPS = 16
DEFAULT_MAX_SEQ = 256
DEFAULT_PREFILL = (32,)


@dataclass(frozen=True)
class Export:
    """How a decoder artifact is shaped.

    Attributes:
        max_seq: Positions the cache holds (prompt and generated tokens together): the static
            cache's length where the artifact has one, the dynamic past's upper bound where not.
        prefill: Prompt lengths the artifact is exported for: one ``prefill_<len>`` signature
            each in TFLite; ONNX and ``.pte`` take any length up to ``max_seq``.
        trust_model: The directory's own modelling code may run (``trust_remote_code``).
    """

    max_seq: int = DEFAULT_MAX_SEQ
    prefill: tuple[int, ...] = DEFAULT_PREFILL
    trust_model: bool = False

    def __post_init__(self) -> None:
        if self.max_seq < 2:
            raise UsageError(f"--max-seq {self.max_seq}: must be at least 2")
        if not self.prefill or min(self.prefill) < 1 or max(self.prefill) >= self.max_seq:
            lengths = ",".join(map(str, self.prefill))
            raise UsageError(f"--prefill {lengths}: each length must be at least 1 and below "
                             f"--max-seq {self.max_seq}")


@dataclass(frozen=True)
class Generation:
    """What the generation check runs.

    Attributes:
        steps: Greedy tokens generated after the prompt (``--generate N``).
        prompt: The prompt's token ids (from ``--prompt`` through the tokenizer, ``--inputs``,
            or seeded).
    """

    steps: int = DEFAULT_STEPS
    prompt: tuple[int, ...] = ()

    def __post_init__(self) -> None:
        if self.steps < 1:
            raise UsageError(f"--generate {self.steps}: must be at least 1")
