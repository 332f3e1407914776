"""The fallback when no route ships the source's dynamic dimensions (``dynamic.fallback``):
which failures are the dimensions' fault, which dimensions get fixed, and what the report says.
Pure logic, on hand-made attempts."""

from __future__ import annotations

from portkit.convert.dynamic import fallback, fixed_dims, static_only
from portkit.results import Attempt, Check, OutputParity
from portkit.shapes import Shapes
from portkit.specs import Dim, TensorSpec, parse_input_flag

IDS = TensorSpec("ids", (1, 16), "int64", (Dim("batch", 1, 8), Dim("seq", 2, 128)))


def _row(error: str | None = None, failed: tuple[str, ...] = ()) -> OutputParity:
    return OutputParity(name="y", artifact_name="y", shape=(1, 4), max_abs_err=1.0,
                        max_rel_err=1.0, cosine=0.5, min_atol_to_pass=1.0,
                        passed=not (error or failed), error=error, failed=failed)


def _tried(*checks: Check, lost: bool = False) -> Attempt:
    return Attempt(route="r", converted=not lost, passed=False, checks=checks, lost_dynamic=lost,
                   error="failed")


def test_a_route_that_lost_the_dimensions_fixes_those_nobody_asked_for() -> None:
    shapes = fallback(Shapes(), [], [IDS], [_tried(lost=True)])
    assert shapes == Shapes(fixed=("batch", "seq"))
    # A dimension asked for (--dim, a name in --input) stays a requirement.
    assert fallback(Shapes((Dim("seq", 2, 64),)), [], [IDS], [_tried(lost=True)]) == \
        Shapes((Dim("seq", 2, 64),), fixed=("batch",))
    assert fallback(Shapes(), [parse_input_flag("ids:batchxseq")], [IDS],
                    [_tried(lost=True)]) is None


def test_failures_at_other_sizes_or_of_shape_are_the_dimensions_and_numbers_are_not() -> None:
    at_example = Check(runtime="tflite", device="cpu", passed=False, size="ids 1x16",
                       outputs=(_row(failed=("max abs err",)),))
    at_other = Check(runtime="tflite", device="cpu", passed=False, size="ids 3x33",
                     outputs=(_row(failed=("max abs err",)),))
    passing = Check(runtime="tflite", device="cpu", passed=True, size="ids 1x16")
    shape = Check(runtime="tflite", device="cpu", passed=False,
                  outputs=(_row(error="shape (128, 1) != reference (1, 1)"),))
    crashed = Check(runtime="tflite", device="cpu", passed=False, error="ValueError: resize")
    assert fallback(Shapes(), [], [IDS], [_tried(at_example)]) is None  # a numeric mismatch
    for trouble in ((passing, at_other), (shape,), (crashed,)):
        assert fallback(Shapes(), [], [IDS], [_tried(*trouble)]) == \
            Shapes(fixed=("batch", "seq")), trouble


def test_nothing_is_retried_once_a_route_shipped_or_when_nothing_is_dynamic() -> None:
    shipped = Attempt(route="r2", converted=True, passed=True)
    assert fallback(Shapes(), [], [IDS], [_tried(lost=True), shipped]) is None
    unvalidated = Attempt(route="r2", converted=True, passed=False, error="not validated")
    assert fallback(Shapes(), [], [IDS], [unvalidated], validated=False) is None
    assert fallback(Shapes(), [], [TensorSpec("x", (1, 4))], [_tried(lost=True)]) is None


def test_the_report_names_sizes_each_refusal_and_the_flags_that_require_them() -> None:
    lost = static_only("TFLiteConverter", [IDS], "tf.TensorListReserve needs a static shape")
    attempt = Attempt(route="tflite-converter", converted=False, passed=False,
                      error=f"tflite-converter: {lost}", lost_dynamic=True)
    fixed = fixed_dims([IDS], ("batch", "seq"), [attempt])
    assert fixed.sizes == (("batch", 1), ("seq", 16))
    assert fixed.refusals == ("tflite-converter: tf.TensorListReserve needs a static shape",)
    assert fixed.require == "--dim batch=1..8 --dim seq=2..128"
    assert fixed.describe() == "batch at 1, seq at 16"
