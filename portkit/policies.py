"""Parity policies: how an artifact's outputs are judged against its source (``Tolerance``),
the default policy of each precision (``POLICIES``, by ``Quantize`` mode), the user's numbers
over it (``Numbers``, ``policy``, ``tuned``) and what each output holds (``OutputKind``,
``output_kinds``)."""

from __future__ import annotations

import dataclasses
import enum
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Annotated, Any, TypedDict, get_type_hints

from portkit import bounds
from portkit.errors import UsageError


class Quantize(str, enum.Enum):
    """Quantization (``--quantize``)."""

    FP16 = "fp16"
    DYNAMIC = "dynamic"
    INT8 = "int8"
    INT16X8 = "int16x8"
    INT4 = "int4"  # a language model's weights in int4 (blocks of 32), activations float

    @property
    def calibrated(self) -> bool:
        """Whether it quantizes activations, from calibration data."""
        return self in (Quantize.INT8, Quantize.INT16X8)

    @property
    def integer(self) -> bool:
        """Whether it quantizes to integers (ai-edge-quantizer's modes, which can keep ops
        float, and a language model's int4); fp16 is float16 weights."""
        return self is not Quantize.FP16

    @classmethod
    def parse(cls, value: str | Quantize | None) -> Quantize | None:
        """``--quantize VALUE`` (None: float32).

        Raises:
            UsageError: Not a quantization mode.
        """
        if value is None:
            return None
        try:
            return cls(value)
        except ValueError:
            raise UsageError(f"--quantize {value}: one of "
                             f"{', '.join(m.value for m in cls)}") from None


class OutputKind(str, enum.Enum):
    """What an output holds, which decides the metrics it is judged by (``--output-kind``)."""

    CLASSIFIER = "classifier"  # class scores: top-1/top-5 agreement where the policy asks
    EMBEDDING = "embedding"  # a vector whose direction matters: cosine, scaled error
    REGRESSION = "regression"  # values (maps, boxes, sequences): scaled error, cosine

    @classmethod
    def parse(cls, value: str | OutputKind) -> OutputKind:
        """An output kind by name.

        Raises:
            UsageError: Not a kind.
        """
        try:
            return cls(value)
        except ValueError:
            raise UsageError(f"--output-kind {value}: one of "
                             f"{', '.join(k.value for k in cls)}") from None


@dataclass(frozen=True)
class KindHints:
    """What the source says about its outputs' kinds beyond their values
    (``validators.parity.guess_kind``).

    Attributes:
        tokens: It takes token ids (an int32 or int64 input of rank 2, ``[batch, seq]``).
        hidden: Its hidden width, for a model of tokens: the size its weight matrices share
            most (``hidden_width``); None when unknown.
    """

    tokens: bool = False
    hidden: int | None = None


def hidden_width(shapes: Sequence[Sequence[int]]) -> int | None:
    """The size the weight matrices (``shapes`` of rank 2 or more) share most: a transformer's
    hidden width (every projection has it; the vocabulary and a classifier's labels appear in
    one or two); the larger on a tie; None without matrices."""
    counts: dict[int, int] = {}
    for shape in shapes:
        if len(shape) >= 2:
            for size in shape:
                if size > 1:
                    counts[int(size)] = counts.get(int(size), 0) + 1
    return max(counts, key=lambda size: (counts[size], size)) if counts else None


@dataclass(frozen=True)
class Tolerance:
    """How an artifact's outputs are judged against the reference: a parity policy.

    An element passes when ``|got - ref| <= atol + rtol * |ref| + scale_tol * scale``, where
    ``scale`` is the output's largest reference magnitude (over every sample): float rounding
    grows with the magnitudes a model computes, so the error a faithful artifact shows follows
    the output's scale, not each element's (a logit near zero in a map of logits in the hundreds
    carries the map's rounding). With ``atol`` None elements are not judged one by one
    (quantized models), only by cosine similarity and, for classifier outputs, by how often the
    artifact's top-1 class is the reference's (``min_top1``) and how often the reference's top-1
    class is in the artifact's top 5 (``min_top5``), over ``samples`` inputs.

    Attributes:
        atol: Absolute tolerance per element, or None.
        rtol: Relative tolerance per element.
        scale_tol: Tolerance per element as a fraction of the output's scale.
        min_cosine: Lowest cosine similarity that passes, or None.
        min_top1: Lowest top-1 agreement (0-1) that passes, or None; a ``forced`` generation
            policy's: the share of steps whose greedy token is the source's.
        min_top5: Lowest top-5 agreement (0-1) that passes, or None.
        samples: How many inputs the source and artifact are compared on.
        policy: The policy's name (the precision it fits: fp32, fp16, dynamic, int8, int16x8).
        kind: What the output holds (None: guessed, see ``validators.parity.guess_kind``).
        allow_nonfinite: NaN and inf are compared rather than refused (``--allow-nonfinite``):
            inputs may hold them, and an output's must match the reference's exactly (same
            places, same values, NaN equal to NaN) while the finite rest is judged as usual.
            Without it an output holding any NaN or inf fails.
        forced: A generation policy's: the artifact is fed the source's tokens (teacher
            forcing), every step is compared on the same text, and ``min_top1`` is the share
            of steps whose greedy token must be the source's (``validators.generation``).
    """

    atol: float | None = 1e-9
    rtol: float = 0.0
    scale_tol: float = 1e-4
    min_cosine: float | None = None
    min_top1: float | None = None
    min_top5: float | None = None
    samples: int = 1
    policy: str = "fp32"
    kind: OutputKind | None = None
    allow_nonfinite: bool = False
    forced: bool = False

    @classmethod
    def from_plain(cls, data: Mapping[str, Any]) -> Tolerance:
        """A tolerance from its JSON form (a bundle's manifest)."""
        kind = data.get("kind")
        return cls(**{**data, "kind": OutputKind(kind) if kind else None})


# Default policies by precision: float32 and float16 by error against the output's scale;
# quantized by cosine and top-k over a batch of inputs. The float numbers come from the labelled
# corpus of faithful and broken artifacts in tests/validators/corpus.py (docs/parity.md; the
# margins in benchmarks/results/tolerance.json); the quantized ones sit below what the fixtures
# measured.
POLICIES = {
    "fp32": Tolerance(),
    Quantize.FP16.value: Tolerance(atol=1e-6, rtol=0.0, scale_tol=1e-2, min_cosine=0.9999,
                                   policy="fp16"),
    Quantize.DYNAMIC.value: Tolerance(atol=None, rtol=0.0, scale_tol=0.0, min_cosine=0.99,
                                      min_top1=0.9, samples=32, policy="dynamic"),
    Quantize.INT8.value: Tolerance(atol=None, rtol=0.0, scale_tol=0.0, min_cosine=0.98,
                                   min_top1=0.8, min_top5=0.95, samples=32, policy="int8"),
    Quantize.INT16X8.value: Tolerance(atol=None, rtol=0.0, scale_tol=0.0, min_cosine=0.995,
                                      min_top1=0.9, samples=32, policy="int16x8"),
}

# A language model's artifact judged by generating (``validators.generation``): every greedy
# token equal, and each step's logits within 1e-4 of their scale, as one forward's. The labelled
# corpus of faithful and broken decoders (six families, three formats, three prompts, 32 steps:
# benchmarks/results/generation_policy.json, docs/language-models.md) put every faithful step
# within 4e-6 and every broken artifact's first step beyond 9.6e-4; looser candidates passed
# broken ones (3e-3: 24 of 240).
GENERATION = Tolerance(scale_tol=1e-4, policy="fp32-generation")


# A language model with int8 weights (``--quantize dynamic``) judged by generating: its logits
# move by the weights' rounding, so no element is judged alone; each step compared needs a
# logit cosine of at least ``min_cosine`` against the float source's, every greedy token must be
# equal, and a first disagreement is a tie, and passes, where the source's own two candidates
# are within twice ``scale_tol`` of the step's scale. From the quantized corpus (three families,
# three formats, three prompts, 32 steps: benchmarks/results/generation_policy_quantized.json,
# docs/language-models.md): the highest floor, with the smallest margin, that fails none of 27
# faithful int8 artifacts (lowest cosine 0.9968, widest tie 0.037 of scale) and passes none of
# 96 broken ones (a layer scaled by 1.25 or scrambled; the closest at 0.9947); 0.99 passed 12.
GENERATION_QUANTIZED = Tolerance(atol=None, scale_tol=0.02, min_cosine=0.995,
                                 policy="dynamic-generation")
# A language model with int4 weights (``--quantize int4``) judged by generating: int4 rounding
# parts a tiny decoder's free-running text from its source's within a few steps, so the
# artifact is fed the source's tokens (teacher forcing, as llama.cpp's KL-divergence check
# does) and judged on a logit cosine floor at every step and the share of steps whose greedy
# token is the source's (``min_top1``). From the int4 corpus (trained tiny decoders of three
# families, three formats, three prompts, 32 steps: benchmarks/results/generation_policy_int4.json,
# docs/language-models.md): every faithful step at 0.954 or above, every broken case (a layer
# scrambled) at 0.674 or below somewhere; the floor is the middle one of those that fail no
# faithful case and pass no broken one. Every case agreed on every token, broken ones too, so
# the share is the lowest candidate: real models' int4 parts from float on 10-30% of tokens.
GENERATION_INT4 = Tolerance(atol=None, scale_tol=0.0, min_cosine=0.9, min_top1=0.5,
                            forced=True, policy="int4-generation")
# The generation policy of each precision a language model converts to, by ``--quantize``.
GENERATION_POLICIES = {None: GENERATION, Quantize.DYNAMIC: GENERATION_QUANTIZED,
                       Quantize.INT4: GENERATION_INT4}


def generation_policy(given: Tolerance, quantize: Quantize | None = None) -> Tolerance:
    """The generation policy of ``quantize``'s precision (``GENERATION_POLICIES``) with the
    numbers the user set over it: those where ``given`` differs from the default it was made
    from (fp32's or the precision's, whichever it differs from less).

    Args:
        given: The job's policy (a ``POLICIES`` entry with the user's numbers; ``validate``
            has fp32's, whatever the artifact holds).
        quantize: The artifact's quantization (None: float32).
    """
    defaults = [POLICIES["fp32"]]
    if quantize is not None and quantize.value in POLICIES:
        defaults.append(POLICIES[quantize.value])
    users = (*NUMBERS, "allow_nonfinite")  # what a user sets
    changes = min(({f: getattr(given, f) for f in users if getattr(given, f) != getattr(d, f)}
                   for d in defaults), key=len)
    base = GENERATION_POLICIES.get(quantize, GENERATION)
    return dataclasses.replace(base, **changes) if changes else base


@dataclass(frozen=True)
class Number:
    """A number of the parity policy a user may set, as ``Numbers`` declares it.

    Attributes:
        bound: The values it takes (its flag: ``bound.flag``).
        help: The flag's help.
        aliases: Other spellings of the flag.
    """

    bound: bounds.Bound
    help: str
    aliases: tuple[str, ...] = ()


class Numbers(TypedDict, total=False):
    """The parity policy's numbers a user may set over a precision's default, declared once:
    each is a keyword of ``portkit.convert``/``validate``/``debug`` (``**numbers``), a flag of the
    CLI (``--scale-tol``: ``NUMBERS[key].bound.flag``) and a ``portkit.toml`` key."""

    scale_tol: Annotated[float, Number(
        bounds.SCALE_TOL, "Error allowed per element as a fraction of the output's largest "
        "reference magnitude [default: 1e-4 fp32, 1e-2 fp16; not used when quantized].")]
    atol: Annotated[float, Number(
        bounds.ATOL, "Absolute tolerance per element [default: 1e-9 fp32, 1e-6 fp16]. With "
        "--atol or --rtol alone the rule is numpy.allclose (no scale term).")]
    rtol: Annotated[float, Number(bounds.RTOL, "Relative tolerance per element [default: 0].")]
    samples: Annotated[int, Number(
        bounds.SAMPLES, "Inputs to compare on, 1-10000 [default: 1; 32 when quantized, judged "
        "by cosine and top-1/top-5 agreement].")]
    min_cosine: Annotated[float, Number(
        bounds.MIN_COSINE, "Lowest cosine similarity (-1 to 1) that passes.")]
    min_top1: Annotated[float, Number(
        bounds.MIN_TOP1, "Lowest top-1 agreement (0-1) for classifier outputs.",
        ("--top-k-agreement",))]
    min_top5: Annotated[float, Number(
        bounds.MIN_TOP5, "Lowest top-5 agreement (0-1) for classifier outputs.")]


# Each number's bound and help, by keyword, in the order ``Numbers`` declares them.
NUMBERS: dict[str, Number] = {
    key: hint.__metadata__[0]
    for key, hint in get_type_hints(Numbers, include_extras=True).items()}


def tuned(base: Tolerance, numbers: Mapping[str, Any], where: str | None = None) -> Tolerance:
    """``base`` with the numbers set in ``numbers`` (None: not set), each checked against its
    bound. An explicit ``atol`` or ``rtol`` is an explicit ``numpy.allclose`` rule: the scale
    term is dropped unless ``scale_tol`` is given too.

    Args:
        base: The policy the numbers go over.
        numbers: ``Numbers`` keys and values.
        where: Where they were written, for messages (a ``portkit.toml`` entry; None: the
            flags).

    Raises:
        UsageError: A number is out of its range, infinite or not a number.
        TypeError: A key that is no number of the policy (a misspelled keyword).
    """
    unknown = sorted(set(numbers) - NUMBERS.keys())
    if unknown:
        raise TypeError(f"unexpected keyword argument {unknown[0]!r}; the policy's numbers are "
                        f"{', '.join(NUMBERS)}")
    given = {key: value for key, value in numbers.items() if value is not None}
    changes: dict[str, Any] = {
        key: NUMBERS[key].bound.check(value, f"{where}: {key} =" if where else None)
        for key, value in given.items()}
    if ("atol" in given or "rtol" in given) and "scale_tol" not in given:
        changes["scale_tol"] = 0.0
    return dataclasses.replace(base, **changes)


def policy(quantize: Quantize | None = None, *, allow_nonfinite: bool = False,
           **numbers: Any) -> Tolerance:
    """The precision's default policy (``POLICIES``) with the ``Numbers`` the user set (see
    ``tuned``) and ``--allow-nonfinite``.

    Raises:
        UsageError: A number is out of its flag's range, infinite or not a number.
        TypeError: A keyword that is no number of the policy.
    """
    base = POLICIES[quantize.value if quantize else "fp32"]
    if allow_nonfinite:
        base = dataclasses.replace(base, allow_nonfinite=True)
    return tuned(base, numbers)


def output_kinds(base: Tolerance, kinds: Mapping[str, str | OutputKind] | Sequence[str],
                 per_output: Mapping[str, Tolerance] | None = None) -> dict[str, Tolerance]:
    """``--output-kind NAME=KIND`` values (or a mapping) as per-output policies: each named
    output keeps its own policy (``per_output``, else ``base``) with the kind set.

    Raises:
        UsageError: A value is not ``NAME=KIND`` or names an unknown kind.
    """
    if not isinstance(kinds, Mapping):
        pairs = {}
        for text in kinds:
            name, sep, kind = text.partition("=")
            if not sep or not name.strip():
                raise UsageError(f"--output-kind {text!r}: expected NAME=KIND, e.g. "
                                 "--output-kind embedding=embedding")
            pairs[name.strip()] = kind.strip()
        kinds = pairs
    merged = dict(per_output or {})
    for name, kind in kinds.items():
        merged[name] = dataclasses.replace(merged.get(name, base), kind=OutputKind.parse(kind))
    return merged
