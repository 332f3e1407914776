"""What generating with a language model's artifact found, step by step (``--generate N``): each
step's logits against the source's and both greedy tokens (``Step``), the first step where the
tokens part, the cache's drift per layer, and the continuations side by side
(``GenerationCheck``)."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, kw_only=True)
class Step:
    """One generation step, both sides having generated the same tokens before it.

    Attributes:
        index: 0 for the prefill's next token, then one per decode step.
        source_token: The source's greedy token.
        artifact_token: The artifact's greedy token.
        max_abs_err: max |artifact - source| over the step's logits.
        scale: The step's largest source logit magnitude.
        scaled_err: ``max_abs_err / scale``.
        cosine: Cosine similarity of the two logit vectors.
        passed: Whether the step meets the policy (its logits, and its token unless a tie;
            where the artifact was fed the source's tokens, its logits only: the tokens are
            counted over the steps).
        source_text: The source's token decoded, when a tokenizer is there.
        artifact_text: The artifact's token decoded.
    """

    index: int
    source_token: int
    artifact_token: int
    max_abs_err: float
    scale: float
    scaled_err: float
    cosine: float
    passed: bool
    source_text: str = ""
    artifact_text: str = ""


@dataclass(frozen=True, kw_only=True)
class LayerDrift:
    """One layer's cache at the end of generation, artifact against source.

    Attributes:
        layer: The layer's index.
        positions: Positions compared (the last ones both caches hold).
        max_abs_err: max |artifact - source| over its keys and values.
        scaled_err: ``max_abs_err`` over the source cache's largest magnitude.
    """

    layer: int
    positions: int
    max_abs_err: float
    scaled_err: float


@dataclass(frozen=True, kw_only=True)
class GenerationCheck:
    """The artifact generating on one runtime, fed its own cache, against the source doing the
    same.

    Attributes:
        runtime, device: Where the artifact ran.
        passed: Whether every step met the policy (and, where ``forced``, at least
            ``needed`` tokens agree).
        steps: The steps compared: each one up to and including the first where the tokens
            differ (after it the two continue from different text, so nothing is compared);
            every step where the artifact was fed the source's tokens (``forced``).
        generated: Tokens each side generated (``--generate N``).
        agreed: Leading steps whose tokens are equal (``generated`` when all are); where
            ``forced``, every step whose tokens are equal.
        first_disagreement: The first step whose tokens differ, if one does.
        forced: The artifact was fed the source's tokens, not its own (teacher forcing, for a
            policy that judges the share of steps whose tokens agree: ``min_top1``), so every
            step continues the same text on both sides.
        needed: Where ``forced``, the steps whose tokens must agree.
        tie: The first disagreement is a tie within the policy's rounding: the source's two
            candidates differ by less than the error the step is allowed, so the artifact's
            choice is as faithful as the source's.
        policy: The policy's name and what it requires, in words.
        prompt: The prompt's ids.
        prompt_text: The prompt decoded (empty without a tokenizer).
        source_text: The source's continuation, decoded.
        artifact_text: The artifact's continuation, decoded.
        cache: Each layer's cache drift at the end, over the text both sides were fed (up to
            the first disagreement where the tokens parted); empty where the artifact hides its
            cache.
        drift_from: The first layer whose cache drifts beyond the policy (``len(cache)`` when
            none does): the difference arises after the previous layer's keys and values and
            before this one's, or, past the last layer, in its attention output, its MLP, the
            final norm or the head; None where that can't be said (no cache, or a quantized
            artifact, whose every layer drifts).
        prefill_seconds: The artifact's prefill wall time.
        decode_ms: The artifact's median decode step, milliseconds.
        error: Why it could not run or be compared, if so.
    """

    runtime: str
    device: str
    passed: bool
    steps: tuple[Step, ...] = ()
    generated: int = 0
    agreed: int = 0
    first_disagreement: int | None = None
    forced: bool = False
    needed: int = 0
    tie: bool = False
    policy: str = ""
    prompt: tuple[int, ...] = ()
    prompt_text: str = ""
    source_text: str = ""
    artifact_text: str = ""
    cache: tuple[LayerDrift, ...] = ()
    drift_from: int | None = None
    prefill_seconds: float = 0.0
    decode_ms: float = 0.0
    error: str | None = None

    @property
    def verdict(self) -> str:
        """One line: ``16/16 tokens agree`` or where they part."""
        if self.error:
            return self.error
        line = f"{self.agreed}/{self.generated} tokens agree"
        if self.forced:
            line += f" fed the source's text ({self.needed} needed)"
        if self.first_disagreement is not None:
            s = self.steps[self.first_disagreement]
            what = (f"step {s.index}: source {s.source_token}"
                    + (f" {s.source_text!r}" if s.source_text else "")
                    + f", artifact {s.artifact_token}"
                    + (f" {s.artifact_text!r}" if s.artifact_text else ""))
            line += f"; first disagreement at {what}" + (" (a tie within rounding)"
                                                          if self.tie else "")
        failed = [s for s in self.steps
                  if not s.passed and (self.forced or s.source_token == s.artifact_token)]
        if failed:
            s = failed[0]
            line += (f"; step {s.index}'s logits are off by {s.max_abs_err:.3g} "
                     f"({s.scaled_err:.2g} of their scale {s.scale:.3g}, cosine "
                     f"{s.cosine:.4f})")
        if not self.passed and self.drift_from is not None:
            line += ("; every layer's cache agrees: the difference arises after the last "
                     "layer's keys and values (its attention output, its MLP, the final norm or "
                     "the head)" if self.drift_from == len(self.cache) else
                     f"; the caches drift from layer {self.drift_from}"
                     + (" (the layers before it agree)" if self.drift_from else "")
                     + f", {self.cache[self.drift_from].scaled_err:.2g} of its scale")
        return line


@dataclass(frozen=True, kw_only=True)
class GenerationTiming:
    """One language model generating on one runtime (``portkit bench --generate N``): medians
    over the turns it took with the other models.

    Attributes:
        path: The model (a directory for the source).
        format: Its format.
        runtime: Where it ran.
        prefill: ``(prompt tokens, tokens per second)`` per prompt length.
        ttft_ms: Time to the first token at the shortest prompt: its prefill.
        decode_tokens_per_s: Generated tokens per second after the first.
        steps: Tokens generated per turn.
        turns: Turns taken.
        peak_rss_mb: The worker's peak resident memory.
        size_bytes: The model's size on disk.
    """

    path: str
    format: str
    runtime: str
    prefill: tuple[tuple[int, float], ...]
    ttft_ms: float
    decode_tokens_per_s: float
    steps: int
    turns: int
    peak_rss_mb: float
    size_bytes: int
