"""Language models (``--generate``, ``--max-seq``, ``--prefill``, ``--prompt``): how a decoder is
exported (its cache length and prefill lengths) and how it is judged by generating (the prompt
and how many tokens).

``Export`` is what every decoder converter reads (``convert/hf_to_*.py``); ``Generation`` is
what the generation check runs (``validators/generation.py``).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from portkit.errors import UsageError
from portkit.policies import Quantize

DEFAULT_STEPS = 16
DEFAULT_MAX_SEQ = 256
DEFAULT_PREFILL = (32,)
# The --quantize modes a language model takes, and what each makes of its weights: weights only
# (int8 per channel, or int4 in blocks of 32 inputs), activations float or quantized on the fly
# by the runtime's kernel; never calibrated activations.
LANGUAGE_MODEL_MODES = {Quantize.DYNAMIC: "int8 weights", Quantize.INT4: "int4 weights"}


@dataclass(frozen=True)
class Export:
    """How a decoder artifact is shaped.

    Attributes:
        max_seq: Positions the cache holds (prompt and generated tokens together): the static
            cache's length where the artifact has one, the dynamic past's upper bound where not.
        prefill: Prompt lengths the artifact is exported for: one ``prefill_<len>`` signature
            each in TFLite; ONNX and ``.pte`` take any length up to ``max_seq``.
        trust_model: The directory's own modelling code may run (``trust_remote_code``).
        quantize: ``--quantize dynamic``: the weights of every linear layer in int8 (per
            output channel, symmetric); ``int4``: in int4 (symmetric, a scale per output
            channel and block of 32 inputs); activations float32 either way; None: float32.
    """

    max_seq: int = DEFAULT_MAX_SEQ
    prefill: tuple[int, ...] = DEFAULT_PREFILL
    trust_model: bool = False
    quantize: Quantize | None = None

    def __post_init__(self) -> None:
        if self.quantize is not None and self.quantize not in LANGUAGE_MODEL_MODES:
            raise UsageError(
                f"--quantize {self.quantize.value}: a language model takes --quantize "
                f"{' or '.join(m.value for m in LANGUAGE_MODEL_MODES)} (int8 or int4 weights, "
                "float activations), judged by generating")
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
        prompt: The prompt's token ids, when the caller has them (else from ``text``, the
            inputs file's ``input_ids``, or seeded).
        text: ``--prompt``: the prompt as text, for the directory's tokenizer.
        task: ``--task text-generation``: the directory is a causal LM whatever its config's
            architectures say.
    """

    steps: int = DEFAULT_STEPS
    prompt: tuple[int, ...] = ()
    text: str | None = None
    task: str | None = None

    def __post_init__(self) -> None:
        if self.steps < 1:
            raise UsageError(f"--generate {self.steps}: must be at least 1")


def generating(steps: int | None = None, text: str | None = None,
               task: str | None = None) -> Generation:
    """``--generate``, ``--prompt`` and ``--task`` as a ``Generation``."""
    return Generation(steps=DEFAULT_STEPS if steps is None else steps, text=text or None,
                      task=task)


def exporting(max_seq: int | None = None, prefill: str | Sequence[int] | None = None,
              trust_model: bool = False, quantize: str | Quantize | None = None) -> Export:
    """``--max-seq``, ``--prefill`` (``32,128``), ``--trust-model`` and ``--quantize`` as an
    ``Export``.

    Raises:
        UsageError: A prefill length is not a whole number, a length does not fit, or a
            quantization a language model does not take.
    """
    lengths = DEFAULT_PREFILL
    if isinstance(prefill, str):
        try:
            lengths = tuple(int(x) for x in prefill.split(",") if x.strip())
        except ValueError:
            raise UsageError(f"--prefill {prefill}: give whole numbers, e.g. 32,128") from None
    elif prefill is not None:
        lengths = tuple(int(x) for x in prefill)
    max_seq = DEFAULT_MAX_SEQ if max_seq is None else max_seq
    if prefill is None:  # the default lengths that fit the cache
        lengths = tuple(n for n in lengths if n < max_seq) or (max(1, max_seq // 2),)
    return Export(max_seq=max_seq, prefill=tuple(sorted(set(lengths))), trust_model=trust_model,
                  quantize=Quantize.parse(quantize))
