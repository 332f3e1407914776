"""``why_failed``: the one wording of a failed check, for routes, tables, Markdown and JUnit."""

from __future__ import annotations

from portkit.results import Check, OutputParity
from portkit.validators.checks import ranking_only, why_failed


def row(name: str, err: float, *, failed: tuple[str, ...] = ("max abs err",),
        **kwargs: object) -> OutputParity:
    fields: dict = dict(name=name, artifact_name=name, shape=(1, 10), max_abs_err=err,
                        max_rel_err=err, cosine=0.99, min_atol_to_pass=err / 2,
                        passed=not failed, failed=failed)
    return OutputParity(**{**fields, **kwargs})


def test_the_worst_output_by_default_every_output_when_asked() -> None:
    check = Check(runtime="tflite", device="cpu", passed=False,
                  outputs=(row("a", 0.01), row("b", 0.5), row("c", 0.0, failed=())))
    assert why_failed(check) == [
        "tflite/cpu: output b max abs err 0.5 (would pass with --atol 0.25)"]
    assert why_failed(check, every_output=True, quote="`") == [
        "tflite/cpu: output `b` max abs err 0.5 (would pass with --atol 0.25)",
        "tflite/cpu: output `a` max abs err 0.01 (would pass with --atol 0.005)"]


def test_it_names_the_criteria_that_failed() -> None:
    check = Check(runtime="onnxruntime", device="cpu", passed=False, outputs=(
        row("logits", 2.0, failed=("cosine", "top-1", "top-5"), cosine=0.5, top1=0.25,
            top5=0.5, kind="classifier", kind_why="its name says so (logits)"),))
    # The max abs err was not among them (a quantized policy): no tolerance flag is offered.
    assert why_failed(check) == [(
        "onnxruntime/cpu: output logits max abs err 2, cosine 0.5000, "
        "top-1 agreement 25%, top-5 agreement 50% (judged as a classifier: its name says so "
        "(logits); if it holds no class scores, --output-kind logits=embedding)")]


def test_a_ranking_only_failure_of_a_guessed_kind_says_the_cosine_passes() -> None:
    guessed = Check(runtime="tflite", device="cpu", passed=False, outputs=(
        row("output_0", 0.1, failed=("top-1",), cosine=0.9967, top1=0.84,
            kind="classifier", kind_why="one score vector per sample"),))
    assert why_failed(guessed) == [(
        "tflite/cpu: output output_0 max abs err 0.1, top-1 agreement 84% (judged as a "
        "classifier: one score vector per sample, though its cosine 0.9967 passes; if it holds "
        "no class scores, --output-kind output_0=embedding)")]
    assert ranking_only([guessed])
    said = Check(runtime="tflite", device="cpu", passed=False, outputs=(
        row("output_0", 0.1, failed=("top-1",), kind_why="set by the user"),))
    assert not ranking_only([said])  # the user said classifier: another route may rank better
    numbers = Check(runtime="tflite", device="cpu", passed=False, outputs=(
        row("output_0", 0.1, failed=("cosine", "top-1")),))
    assert not ranking_only([numbers]) and not ranking_only([])


def test_an_error_is_said_as_it_is_and_a_skip_says_nothing() -> None:
    broken = Check(runtime="tflite", device="cpu", passed=False, error="does not load")
    assert why_failed(broken) == ["tflite/cpu: does not load"]
    shape = Check(runtime="tflite", device="cpu", passed=False,
                  outputs=(row("y", float("inf"), error="shape (1, 3) != reference (1, 4)"),))
    assert why_failed(shape) == ["tflite/cpu: output y: shape (1, 3) != reference (1, 4)"]
    skipped = Check(runtime="torch", device="cuda", passed=False, skipped="no CUDA device")
    assert why_failed(skipped) == []
