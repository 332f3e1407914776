"""A language model's artifact judged by generating: source and artifact each run the prompt's
prefill and N greedy steps, the artifact fed **its own** cache, and every step is compared while
both have generated the same text.

The fp32 verdict: all N tokens equal and every step's logits within the generation policy (the
error against the step's scale, ``policies.GENERATION``, calibrated on a labelled corpus of
faithful and broken decoders). One exception keeps a faithful artifact
from failing on rounding: where the tokens first part, if that step's logits are within the
policy and the source's own two candidates are closer than the error the policy allows, the
choice is a tie and passes (nothing after it is compared: the two texts now differ).

A quantized artifact (``--quantize dynamic``, or found to hold int8 weights: ``quantization``)
is judged by ``policies.GENERATION_QUANTIZED`` instead: every token equal and each step's
logit cosine above a floor, a first disagreement a tie where the source's two candidates are
within the rounding the policy's ``scale_tol`` allows. An int4 one (``--quantize int4``) by
``policies.GENERATION_INT4``, a policy with a share of agreeing tokens (``min_top1``): the
artifact is fed the source's tokens (teacher forcing), so every step is compared on the same
text; each step's cosine must meet the floor and enough of the artifact's tokens must be the
source's.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import replace
from pathlib import Path

import numpy as np

from portkit.errors import PortkitError, UsageError
from portkit.formats import Format
from portkit.formats.hf import HfModel
from portkit.options import Feed
from portkit.options.generation import Export, Generation
from portkit.policies import GENERATION, Quantize, Tolerance
from portkit.results.generation import GenerationCheck, LayerDrift, Step
from portkit.runtimes import tokenizer
from portkit.runtimes.context import RunContext
from portkit.runtimes.decoding import Generated, generate_task

# Groups of token ids -> one decoded text per group (the directory's tokenizer, in a worker).
Detokenize = Callable[[list[list[int]]], list[str]]


def _allowed(tol: Tolerance, ref: np.ndarray, scale: float) -> np.ndarray:
    atol = 0.0 if tol.atol is None else tol.atol
    return atol + tol.rtol * np.abs(ref) + tol.scale_tol * scale


def _step(i: int, ref: np.ndarray, got: np.ndarray, tol: Tolerance) -> tuple[Step, bool]:
    """Step ``i`` compared, and whether its logits alone meet the policy."""
    src_tok, art_tok = int(np.argmax(ref)), int(np.argmax(got))
    err = np.abs(got.astype(np.float64) - ref)
    scale = float(np.max(np.abs(ref))) or 1.0
    denom = float(np.linalg.norm(ref) * np.linalg.norm(got))
    cosine = float(np.dot(ref.astype(np.float64), got) / denom) if denom else 1.0
    within = bool(np.all(err <= _allowed(tol, ref, scale))) if tol.atol is not None else True
    if tol.min_cosine is not None:
        within = within and cosine >= tol.min_cosine
    within = within and bool(np.all(np.isfinite(got)))
    return Step(index=i, source_token=src_tok, artifact_token=art_tok,
                max_abs_err=float(err.max()), scale=scale, scaled_err=float(err.max()) / scale,
                cosine=cosine, passed=within and src_tok == art_tok), within


def _tie(step: Step, ref: np.ndarray, tol: Tolerance) -> bool:
    """Whether the source's logits for both tokens lie within twice the step's allowed error:
    either side's rounding could pick either (a policy that judges no element alone allows its
    ``scale_tol`` of the scale: a quantized one's rounding; none without it)."""
    allowed = _allowed(tol, ref, step.scale)
    gap = ref[step.source_token] - ref[step.artifact_token]
    return bool(gap <= allowed[step.source_token] + allowed[step.artifact_token])


def _drift(source: Generated, artifact: Generated, shared: int | None = None
           ) -> tuple[LayerDrift, ...]:
    """Each layer's cache, artifact against source, over the positions both hold (each side
    fed the same number of tokens, so both end at the same position), or only those of the
    first ``shared`` positions, the text both sides were fed before their tokens parted."""
    total = len(source.prompt) + len(source.tokens) - 1  # the positions each side was fed
    end = total if shared is None else min(shared, total)
    rows = []
    for i, (ref, got) in enumerate(zip(source.cache, artifact.cache, strict=False)):
        start = total - min(ref[0].shape[1], got[0].shape[1])  # a sliding window keeps the last
        pairs = [(r[:, start - total + r.shape[1]:end - total + r.shape[1]],
                  g[:, start - total + g.shape[1]:end - total + g.shape[1]])
                 for r, g in zip(ref, got, strict=True)]
        if end <= start or start < 0 or any(r.shape != g.shape for r, g in pairs):
            return ()  # laid out differently, or no position both were fed: nothing comparable
        err = max(float(np.max(np.abs(g - r))) for r, g in pairs)
        scale = max(float(np.max(np.abs(r))) for r, _ in pairs) or 1.0
        rows.append(LayerDrift(layer=i, positions=end - start, max_abs_err=err,
                               scaled_err=err / scale))
    return tuple(rows)


def _drift_from(cache: tuple[LayerDrift, ...], tol: Tolerance) -> int | None:
    """The first layer whose cache drifts beyond the policy's ``scale_tol`` of its scale
    (``len(cache)`` when none does); None where it can't say: no cache, or a policy that judges
    no element alone (a quantized artifact's every layer drifts)."""
    if not cache or tol.atol is None:
        return None
    return next((d.layer for d in cache if d.scaled_err > tol.scale_tol), len(cache))


def compare(source: Generated, artifact: Generated, *, runtime: str, device: str = "cpu",
            tolerance: Tolerance | None = None, detokenize: Detokenize | None = None
            ) -> GenerationCheck:
    """Judge ``artifact``'s generation against ``source``'s (same prompt, same step count).

    Args:
        source: The source's greedy generation.
        artifact: The artifact's, fed its own cache.
        runtime: Where the artifact ran.
        device: Its device.
        tolerance: The per-step logit policy (default ``policies.GENERATION``).
        detokenize: Groups of token ids -> one text per group, when a tokenizer is there.

    Returns:
        The check: every step up to the first disagreement (every step where ``artifact``
        was fed the source's tokens: ``Generated.fed``), the verdict, the texts.

    Raises:
        ValueError: ``artifact`` was fed tokens that are not the source's.
    """
    tol = tolerance or GENERATION
    n = min(len(source.tokens), len(artifact.tokens))
    # fed the source's own tokens: every step continues the same text on both sides
    forced = bool(artifact.fed)
    if forced and artifact.fed != source.tokens[:len(artifact.fed)]:
        raise ValueError("the artifact was fed other tokens than the source generated")
    steps: list[Step] = []
    first, tie = None, False
    for i in range(n):
        ref, got = source.logits[i], artifact.logits[i]
        step, within = _step(i, ref, got, tol)
        if forced:  # the same text on both sides: every step, its token counted, not judged
            first = i if first is None and step.source_token != step.artifact_token else first
            steps.append(replace(step, passed=within))
            continue
        if step.source_token != step.artifact_token:
            first = i
            tie = within and _tie(step, ref, tol)
            steps.append(replace(step, passed=tie))
            break
        steps.append(step)
    agreed = sum(s.source_token == s.artifact_token for s in steps) if forced else (
        first if first is not None else n)
    share = 1.0 if tol.min_top1 is None else tol.min_top1
    needed = math.ceil(round(share * n, 9)) if forced else 0
    texts = [""] * (2 * len(steps) + 3)
    if detokenize is not None:
        texts = _texts(detokenize, steps, source, artifact)
    steps = [replace(s, source_text=texts[2 * i], artifact_text=texts[2 * i + 1])
             for i, s in enumerate(steps)]
    decode = sorted(artifact.decode_seconds)
    # the caches over the text both sides were fed: all of it, or up to where the tokens parted
    cache = _drift(source, artifact, None if first is None or forced else
                   len(source.prompt) + first)
    return GenerationCheck(
        runtime=runtime, device=device,
        passed=all(s.passed for s in steps) and n > 0 and agreed >= needed,
        steps=tuple(steps), generated=n, agreed=agreed, first_disagreement=first,
        forced=forced, needed=needed, tie=tie, policy=describe(tol), prompt=source.prompt,
        prompt_text=texts[-3], source_text=texts[-2], artifact_text=texts[-1],
        cache=cache, drift_from=_drift_from(cache, tol),
        prefill_seconds=artifact.prefill_seconds,
        decode_ms=1000 * decode[len(decode) // 2] if decode else 0.0)


def _texts(detokenize: Detokenize, steps: Sequence[Step], source: Generated,
           artifact: Generated) -> list[str]:
    """Each step's two tokens, then the prompt and both continuations, decoded in one call."""
    groups = [[t] for s in steps for t in (s.source_token, s.artifact_token)]
    return detokenize([*groups, list(source.prompt), list(source.tokens),
                       list(artifact.tokens)])


def describe(tol: Tolerance) -> str:
    """The generation policy in words."""
    if tol.atol is not None:
        return (f"{tol.policy}: every token equal (a tie within rounding passes), each step's "
                f"logits within {tol.scale_tol:g} of their scale")
    if tol.forced:
        return (f"{tol.policy}: fed the source's tokens, at least {tol.min_top1 or 1:.0%} of the "
                f"artifact's tokens equal the source's, each step's logit cosine >= "
                f"{tol.min_cosine}")
    tie = (f"a tie within {2 * tol.scale_tol:g} of the scale passes" if tol.scale_tol else
           "no tie")
    return (f"{tol.policy}: every token equal ({tie}), each step's logit cosine >= "
            f"{tol.min_cosine}")


# Where each artifact generates (a runtime's name, for the report).
RUNTIMES = {Format.ONNX: "onnxruntime", Format.TFLITE: "tflite", Format.EXECUTORCH: "executorch",
            Format.HUGGINGFACE: "transformers"}
PROMPT_LENGTH = 8  # seeded prompt's tokens when neither --prompt nor --inputs gives one


def prompt_ids(src: Path, model: HfModel, generation: Generation, feed: Feed,
               ctx: RunContext) -> list[int]:
    """The prompt's ids: ``--prompt`` through the directory's tokenizer, ``--inputs``'s
    ``input_ids``, or ``PROMPT_LENGTH`` ids seeded by ``--seed``.

    Raises:
        UsageError: ``--prompt`` without a tokenizer, or an inputs file without ``input_ids``.
    """
    if generation.prompt:
        return list(generation.prompt)
    if generation.text is not None:
        if not model.has_tokenizer:
            raise UsageError(f"{src}: --prompt needs a tokenizer (tokenizer.json) in the "
                             "directory; pass the prompt's ids with --inputs ids.npz")
        ids: list[int] = ctx.pool.call("tokenizer", tokenizer.encode, timeout=ctx.timeout,
                                       what=str(src), path=str(src), text=generation.text)
        return ids
    if feed.file is not None:
        with np.load(feed.file) as data:
            if "input_ids" not in data:
                raise UsageError(f"{feed.file}: no input_ids array (it holds "
                                 f"{', '.join(data.files)}); save the prompt's ids as input_ids")
            return [int(i) for i in np.asarray(data["input_ids"]).reshape(-1)]
    rng = np.random.default_rng(feed.seed)
    return [int(i) for i in rng.integers(3, model.vocab_size, PROMPT_LENGTH)]


def generated(path: Path, fmt: Format, prompt: list[int], steps: int, export: Export,
              ctx: RunContext, forced: Sequence[int] = ()) -> Generated:
    """``path`` generating ``steps`` tokens after ``prompt`` (fed ``forced``'s, where given),
    in its format's worker."""
    result: Generated = ctx.pool.call(
        f"generate-{fmt.value}", generate_task, timeout=ctx.timeout, what=str(path),
        path=str(path), fmt=fmt, prompt=prompt, steps=steps, export=export,
        forced=list(forced))
    return result


def generation_check(src: Path, model: HfModel, artifact: Path, fmt: Format,
                     generation: Generation, export: Export, policy: Tolerance, feed: Feed,
                     ctx: RunContext) -> GenerationCheck:
    """The source directory and ``artifact`` each generating from the same prompt, compared
    step by step under ``policy`` (the generation policy of the artifact's precision,
    ``policies.generation_policy``; an artifact that can't generate is a failed check with its
    error).

    Raises:
        UsageError: A bad prompt, or the artifact is not a decoder with a cache.
    """
    prompt = prompt_ids(src, model, generation, feed, ctx)
    runtime = RUNTIMES[fmt]
    with ctx.progress(f"Generating {generation.steps} tokens with {src.name} (transformers) "
                      f"and with {artifact.name} ({runtime}), each on its own cache"):
        source = generated(src, Format.HUGGINGFACE, prompt, generation.steps, export, ctx)
        forced = source.tokens if policy.forced else ()  # fed the source's text
        try:
            got = generated(artifact, fmt, prompt, generation.steps, export, ctx, forced)
        except PortkitError as e:
            ctx.pool.discard(f"generate-{fmt.value}")
            if isinstance(e, UsageError):
                raise
            return GenerationCheck(runtime=runtime, device="cpu", passed=False,
                                   error=f"{runtime} could not generate with it: {e}")
    words = tokenizer.words(src, ctx) if model.has_tokenizer else None
    return compare(source, got, runtime=runtime, tolerance=policy, detokenize=words)


# Ops that only a quantized graph holds: ONNX node types; XNNPACK's (in a .pte's delegate)
# ``XNNConvert`` quantizes activations on the fly (int8 linear layers) or casts (fp16).
_QUANTIZED_ONNX = {"MatMulNBits", "MatMulInteger", "DynamicQuantizeLinear", "DequantizeLinear",
                   "QLinearMatMul", "GatherBlockQuantized"}
# ONNX Runtime's weight-only ops, whose ``bits`` attribute is 4 where it is left out.
_NBITS_ONNX = {"MatMulNBits", "GatherBlockQuantized"}
# XNNPACK's int4 weight datatypes: a scale per output channel, or per block of inputs.
_INT4_XNNPACK = {"xnn_datatype_qcint4", "xnn_datatype_qbint4"}


def quantization(path: Path, fmt: Format) -> Quantize | None:
    """How ``path``'s weights are quantized, read from the file (``validate`` has no
    ``--quantize``): ``Quantize.INT4`` where it holds int4 weights, ``Quantize.DYNAMIC`` where
    it holds int8 ones, else None."""
    int4 = False
    if fmt is Format.ONNX:
        import onnx

        graph = onnx.load(str(path), load_external_data=False).graph
        found = any(n.op_type in _QUANTIZED_ONNX for n in graph.node)
        bits = [next((a.i for a in n.attribute if a.name == "bits"), 4)
                for n in graph.node if n.op_type in _NBITS_ONNX]
        int4 = 4 in bits or any(t.data_type in (onnx.TensorProto.INT4, onnx.TensorProto.UINT4)
                                for t in graph.initializer)
    elif fmt is Format.TFLITE:
        from portkit.formats.tflite import mobile_report

        precision = mobile_report(path).precision
        int4 = precision == Quantize.INT4.value
        found = int4 or precision == Quantize.DYNAMIC.value
    elif fmt is Format.EXECUTORCH:
        from portkit.formats.pte import read_program

        delegates = [d for m in read_program(path) if m.name == "forward" for d in m.delegates]
        found = any("XNNConvert" in d.nodes for d in delegates)
        int4 = any(_INT4_XNNPACK & set(d.datatypes) for d in delegates)
    else:
        found = False
    return Quantize.INT4 if int4 else Quantize.DYNAMIC if found else None
