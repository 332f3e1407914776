"""The generation verdict (``validators.generation.compare``) on made-up generations: equal
tokens and logits pass; a token that parts fails naming the step, unless the source's own two
candidates are a tie within rounding; logits off beyond the policy fail with equal tokens; the
quantized policy (int8 weights): a cosine floor per step and a tie margin, picked by the
artifact's quantization; the int4 one: the artifact fed the source's tokens, judged on the share
of steps whose tokens agree and a cosine floor."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest

from portkit.errors import UsageError
from portkit.formats import Format
from portkit.options.generation import Export, exporting
from portkit.policies import (
    GENERATION,
    GENERATION_INT4,
    GENERATION_QUANTIZED,
    POLICIES,
    Quantize,
    generation_policy,
    policy,
)
from portkit.runtimes.decoding import Decoder, Generated, generate
from portkit.validators.generation import compare, quantization

VOCAB = 50


def _generated(logits: np.ndarray, cache: list | None = None) -> Generated:
    return Generated(prompt=(5, 6, 7), tokens=tuple(int(t) for t in logits.argmax(1)),
                     logits=logits.astype(np.float32), cache=cache or [])


def _logits(steps: int = 6) -> np.ndarray:
    rng = np.random.default_rng(0)
    return rng.normal(0, 3, (steps, VOCAB)).astype(np.float32)


def test_equal_generations_pass_with_every_step_compared() -> None:
    ref = _logits()
    got = ref + np.float32(1e-6)
    check = compare(_generated(ref), _generated(got), runtime="onnxruntime")
    assert check.passed and check.agreed == check.generated == 6
    assert check.first_disagreement is None and len(check.steps) == 6
    assert "6/6 tokens agree" in check.verdict


def test_a_token_that_parts_fails_naming_the_step_and_both_tokens() -> None:
    ref = _logits()
    got = ref.copy()
    src = int(ref[3].argmax())
    other = (src + 1) % VOCAB
    got[3, other] = ref[3, src] + 2.0  # the artifact prefers another token at step 3
    check = compare(_generated(ref), _generated(got), runtime="tflite",
                    detokenize=lambda groups: [f"w{g[0]}" if len(g) == 1 else "text"
                                               for g in groups])
    assert not check.passed
    assert (check.agreed, check.first_disagreement, len(check.steps)) == (3, 3, 4)
    step = check.steps[-1]
    assert (step.source_token, step.artifact_token) == (src, other)
    assert f"step 3: source {src} 'w{src}', artifact {other} 'w{other}'" in check.verdict
    assert check.cache == ()  # the texts parted: the caches are not comparable


def test_a_tie_within_rounding_passes() -> None:
    ref = _logits()
    src = int(ref[2].argmax())
    other = (src + 1) % VOCAB
    ref[2, other] = ref[2, src] - 1e-5  # the source's two best differ by far less than 1e-4 scale
    got = ref.copy()
    got[2, other] = ref[2, src] + 1e-5
    check = compare(_generated(ref), _generated(got), runtime="onnxruntime")
    assert check.passed and check.tie and check.first_disagreement == 2
    assert "a tie within rounding" in check.verdict


def test_logits_off_beyond_the_policy_fail_even_when_every_token_agrees() -> None:
    ref = _logits()
    got = ref.copy()
    got[4] += 0.01 * np.abs(ref[4]).max() * (np.arange(VOCAB) % 2)  # 1% of scale: not fp32
    assert (got.argmax(1) == ref.argmax(1)).all()
    check = compare(_generated(ref), _generated(got), runtime="executorch")
    assert not check.passed and check.agreed == 6
    assert [s.passed for s in check.steps] == [True] * 4 + [False, True]
    assert "step 4's logits are off" in check.verdict


def test_the_cache_drift_is_per_layer_over_the_positions_both_hold() -> None:
    ref = _logits()
    keys = np.ones((2, 9, 4), np.float32)
    cache_src = [(keys, keys), (keys, 2 * keys)]
    cache_art = [(keys[:, -4:], keys[:, -4:]), (keys[:, -4:], 2 * keys[:, -4:] + 0.5)]
    check = compare(_generated(ref, cache_src), _generated(ref, cache_art), runtime="tflite")
    assert [(d.layer, d.positions) for d in check.cache] == [(0, 4), (1, 4)]
    assert check.cache[0].max_abs_err == 0 and check.cache[1].scaled_err == 0.25


def test_where_tokens_part_the_caches_are_compared_over_the_text_both_were_fed() -> None:
    ref = _logits()  # 6 steps after a 3-token prompt: each cache fed 8 positions
    got = ref.copy()
    src = int(ref[2].argmax())
    got[2, (src + 1) % VOCAB] = ref[2, src] + 2.0  # parts at step 2: 5 positions shared
    keys = np.arange(8 * 4, dtype=np.float32).reshape(1, 8, 4)
    parted = keys.copy()
    parted[:, 5:] += 100  # after the texts parted: another text, not compared
    drifted = parted.copy()
    drifted[:, 1] += 1  # layer 1 differs within the shared text
    source = _generated(ref, [(keys, keys), (keys, keys)])
    check = compare(source, _generated(got, [(parted, parted), (drifted, parted)]),
                    runtime="onnxruntime")
    assert [(d.layer, d.positions, d.max_abs_err) for d in check.cache] == [(0, 5, 0.0),
                                                                           (1, 5, 1.0)]
    assert check.drift_from == 1
    assert "the caches drift from layer 1 (the layers before it agree)" in check.verdict
    # every layer agreeing: the difference is after the last layer's keys and values
    same = compare(source, _generated(got, [(parted, parted)] * 2), runtime="onnxruntime")
    assert same.drift_from == 2 and "every layer's cache agrees" in same.verdict
    # a quantized policy can't say: every layer of a quantized artifact drifts
    assert compare(source, _generated(got, [(drifted, parted)] * 2), runtime="tflite",
                   tolerance=GENERATION_QUANTIZED).drift_from is None


def _noisy(ref: np.ndarray, share: float) -> np.ndarray:
    """``ref`` with seeded noise of ``share`` of each step's scale (int8 weights' rounding)."""
    rng = np.random.default_rng(1)
    scale = np.abs(ref).max(1, keepdims=True)
    return (ref + share * scale * rng.uniform(-1, 1, ref.shape)).astype(np.float32)


def test_the_quantized_policy_takes_rounding_a_float_one_refuses() -> None:
    ref = _logits()
    got = _noisy(ref, 0.01)
    got[np.arange(len(ref)), ref.argmax(1)] = ref.max(1) + 1.0  # every token kept
    assert not compare(_generated(ref), _generated(got), runtime="onnxruntime").passed
    check = compare(_generated(ref), _generated(got), runtime="onnxruntime",
                    tolerance=GENERATION_QUANTIZED)
    assert check.passed and check.agreed == 6
    assert all(s.cosine >= GENERATION_QUANTIZED.min_cosine for s in check.steps)
    assert check.policy.startswith("dynamic-generation: every token equal (a tie within")


def test_the_quantized_policy_fails_a_step_below_its_cosine_floor() -> None:
    ref = _logits()
    got = ref.copy()
    got[2] = 0.5 * ref[2] + 0.5 * np.roll(ref[2], 1)  # a scrambled step
    got[2, ref[2].argmax()] = ref[2].max() * 2  # its token kept
    check = compare(_generated(ref), _generated(got), runtime="tflite",
                    tolerance=GENERATION_QUANTIZED)
    assert not check.passed and check.steps[2].cosine < GENERATION_QUANTIZED.min_cosine
    assert [s.passed for s in check.steps] == [True, True, False, True, True, True]


def test_the_quantized_policy_passes_a_tie_within_its_margin_and_no_wider_one() -> None:
    ref = _logits()
    src = int(ref[3].argmax())
    other = (src + 1) % VOCAB
    scale = float(np.abs(ref[3]).max())
    margin = 2 * GENERATION_QUANTIZED.scale_tol * scale
    for gap, tie in ((0.5 * margin, True), (1.5 * margin, False)):
        r = ref.copy()
        r[3, other] = r[3, src] - gap
        got = r.copy()
        got[3, other] = r[3, src] + 1e-3  # the artifact picks the other one
        check = compare(_generated(r), _generated(got), runtime="executorch",
                        tolerance=GENERATION_QUANTIZED)
        assert (check.passed, check.tie, check.first_disagreement) == (tie, tie, 3)


def test_the_generation_policy_follows_the_artifacts_quantization() -> None:
    assert generation_policy(POLICIES["fp32"]) is GENERATION
    for given in (POLICIES["fp32"], POLICIES["dynamic"]):  # validate's, convert's
        assert generation_policy(given, Quantize.DYNAMIC) is GENERATION_QUANTIZED
    # the user's numbers go over the precision's generation policy, not in its place
    tuned = replace(POLICIES["dynamic"], min_cosine=0.9)
    assert generation_policy(tuned, Quantize.DYNAMIC) == replace(GENERATION_QUANTIZED,
                                                                 min_cosine=0.9)
    assert generation_policy(policy(None, min_cosine=0.95, min_top1=0.9), Quantize.INT4) == \
        replace(GENERATION_INT4, min_cosine=0.95, min_top1=0.9)
    assert generation_policy(policy(None, scale_tol=1e-3)) == replace(GENERATION, scale_tol=1e-3)


def test_a_language_model_takes_dynamic_or_int4_only() -> None:
    assert Export(quantize=Quantize.DYNAMIC).quantize is Quantize.DYNAMIC
    assert Export(quantize=Quantize.INT4).quantize is Quantize.INT4
    for mode in ("int8", "int16x8", "fp16"):
        with pytest.raises(UsageError, match=f"--quantize {mode}: a language model takes "
                                             "--quantize dynamic or int4"):
            exporting(quantize=mode)
    assert generation_policy(POLICIES["fp32"], Quantize.INT4) is GENERATION_INT4


class _Echo(Decoder):
    """A decoder whose logits at each step pick the token it was last fed, plus one."""

    def __init__(self) -> None:
        super().__init__(vocab=VOCAB, max_seq=None)
        self.fed: list[int] = []

    def _prefill(self, ids: np.ndarray) -> np.ndarray:
        return np.eye(VOCAB, dtype=np.float32)[(int(ids[-1]) + 1) % VOCAB]

    def _decode(self, token: int) -> np.ndarray:
        self.fed.append(token)
        return np.eye(VOCAB, dtype=np.float32)[(token + 1) % VOCAB]


def test_forced_generation_feeds_the_given_tokens_and_records_its_own() -> None:
    own = _Echo()
    assert generate(own, np.array([3]), 4).tokens == (4, 5, 6, 7) and own.fed == [4, 5, 6]
    forced = _Echo()
    run = generate(forced, np.array([3]), 4, forced=(10, 20, 30, 40))
    assert forced.fed == [10, 20, 30] and run.tokens == (4, 11, 21, 31)
    assert run.fed == (10, 20, 30) and generate(_Echo(), np.array([3]), 4).fed == ()
    short = generate(_Echo(), np.array([3]), 4, forced=np.array([10]))  # as many as it feeds
    assert short.tokens == (4, 11) and short.fed == (10,)


def _int4_case(disagree: list[int], scramble: int | None = None) -> tuple[Generated, Generated]:
    """The source's generation of 20 steps and an artifact's fed its tokens: int4-like noise
    with the source's token kept on top, but at the steps ``disagree`` (its runner-up on top),
    and step ``scramble``'s logits scrambled (its token still on top)."""
    ref = _logits(20)
    got = _noisy(ref, 0.05)
    if scramble is not None:
        got[scramble] = np.random.default_rng(2).permutation(ref[scramble])
    for i in range(len(ref)):
        order = np.argsort(ref[i])
        got[i, order[-2 if i in disagree else -1]] = got[i].max() + 0.1
    source = _generated(ref)
    return source, replace(_generated(got), fed=source.tokens[:-1])


def test_the_int4_policy_counts_agreeing_tokens_over_every_step() -> None:
    share = replace(GENERATION_INT4, min_top1=0.8)  # the count, whatever the policy's share
    source, artifact = _int4_case([3, 11, 15])  # 17 of 20 agree: 85%
    check = compare(source, artifact, runtime="onnxruntime", tolerance=share)
    assert check.forced and len(check.steps) == 20  # every step compared, none stops it
    assert (check.agreed, check.first_disagreement, check.needed) == (17, 3, 16)
    assert check.passed and not check.tie
    assert all(s.passed for s in check.steps)
    assert check.verdict.startswith("17/20 tokens agree fed the source's text (16 needed); "
                                    "first disagreement at step 3")
    assert check.policy.startswith("int4-generation: fed the source's tokens, at least 80%")
    few = compare(*_int4_case([1, 3, 5, 7, 9]), runtime="tflite", tolerance=share)
    assert not few.passed and few.agreed == 15 and all(s.passed for s in few.steps)
    # the policy's own share: half the tokens
    half = compare(*_int4_case(list(range(0, 20, 2))), runtime="tflite",
                   tolerance=GENERATION_INT4)
    assert half.passed and (half.agreed, half.needed) == (10, 10)
    assert not compare(*_int4_case(list(range(11))), runtime="tflite",
                       tolerance=GENERATION_INT4).passed
    # the same logits generated free-running: judged as such, stopping at the first part
    source, artifact = _int4_case([3, 11, 15])
    free = compare(source, replace(artifact, fed=()), runtime="tflite", tolerance=share)
    assert not free.forced and len(free.steps) == 4 and free.agreed == 3
    with pytest.raises(ValueError, match="fed other tokens"):
        compare(source, replace(artifact, fed=(1,) * 19), runtime="tflite", tolerance=share)


def test_the_int4_policy_fails_a_step_below_its_cosine_floor_with_every_token_agreeing() -> None:
    source, artifact = _int4_case([], scramble=6)
    check = compare(source, artifact, runtime="executorch", tolerance=GENERATION_INT4)
    assert check.agreed == 20 and not check.passed
    assert [s.index for s in check.steps if not s.passed] == [6]
    assert "step 6's logits are off by" in check.verdict and "cosine" in check.verdict


def _graph(tmp_path: Path, nodes: list, initializers: list | None = None) -> Path:
    """A file holding ``nodes`` (read for their ops, never run)."""
    import onnx
    from onnx import helper

    graph = helper.make_graph(nodes, "g", [helper.make_tensor_value_info("x", 1, [1])],
                              [helper.make_tensor_value_info("y", 1, [1])], initializers or [])
    path = tmp_path / f"{len(list(tmp_path.iterdir()))}.onnx"
    onnx.save(helper.make_model(graph), path)
    return path


def test_the_onnx_weights_precision_is_read_from_its_ops_and_initializers(tmp_path: Path) -> None:
    import onnx
    from onnx import helper

    def nbits(**bits: int) -> object:
        return helper.make_node("MatMulNBits", ["x", "w", "s"], ["y"], domain="com.microsoft",
                                K=64, N=64, block_size=32, **bits)

    int4 = helper.make_tensor("w", onnx.TensorProto.INT4, [4], [1, -2, 3, -4])
    dequantize = helper.make_node("DequantizeLinear", ["w", "s"], ["y"])
    for want, nodes, initializers in (
            (Quantize.INT4, [nbits()], []),  # MatMulNBits' bits are 4 where left out
            (Quantize.DYNAMIC, [nbits(bits=8)], []),
            (Quantize.INT4, [dequantize], [int4]),  # int4 weights, dequantized
            (None, [helper.make_node("MatMul", ["x", "x"], ["y"])], [])):
        assert quantization(_graph(tmp_path, nodes, initializers), Format.ONNX) is want
