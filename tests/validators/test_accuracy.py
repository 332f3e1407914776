"""``--eval data.npz``: top-1 of the source and of the artifact on labelled samples, and
``--max-accuracy-drop`` failing an artifact that loses more than that (issue 15)."""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest

import portkit
from portkit import api
from portkit.errors import ExitCode, UsageError
from portkit.formats import Format
from portkit.options import Evaluation, Feed, evaluation
from portkit.results import Accuracy
from portkit.runtimes import tasks
from portkit.runtimes.worker import Pool
from portkit.shapes import Shapes
from portkit.specs import labels_in
from portkit.validators.accuracy import (
    _check_labels,
    _output,
    predictions,
    top1,
    why_failed,
)
from tests.schema import SNAPSHOT, key_paths

Saved = Callable[[str, str], Path]


def _accuracy(**kw: object) -> Accuracy:
    fields: dict = dict(file="/data/eval.npz", samples=200, output="logits", runtime="tflite",
                        device="cpu", source_top1=1.0, artifact_top1=0.96, drop=0.04,
                        max_drop=0.01, passed=False)
    return Accuracy(**{**fields, **kw})


def test_top1_is_the_share_of_rows_whose_argmax_is_the_label_and_nan_predicts_nothing() -> None:
    scores = np.array([[0.1, 0.9, 0.0], [2.0, 1.0, 0.0], [np.nan, 5.0, 0.0], [0, 0, 1.0]])
    assert top1(scores, np.array([1, 0, 1, 1])) == 0.5  # the NaN row is a miss
    assert top1(scores, np.array([1, 0, 1, 2])) == 0.75


def test_predictions_need_one_score_vector_per_sample() -> None:
    ok = [{"logits": np.arange(10.0).reshape(1, 10)}, {"logits": np.ones((1, 10))}]
    assert predictions(ok, "logits", "--eval e.npz").shape == (2, 10)
    for shape in [(1, 4, 8, 8), (1, 1), (), (2, 10)]:
        with pytest.raises(UsageError, match="not one score vector") as e:
            predictions([{"y": np.zeros(shape)}], "y", "--eval e.npz")
        assert "--eval-output NAME" in str(e.value) and "\n" not in str(e.value)


def test_the_output_scored_is_the_only_one_or_the_one_named() -> None:
    assert _output(None, ["logits"], "--eval e.npz") == "logits"
    assert _output("b", ["a", "b"], "--eval e.npz") == "b"
    with pytest.raises(UsageError, match=r"2 outputs \(a, b\).*--eval-output NAME"):
        _output(None, ["a", "b"], "--eval e.npz")
    with pytest.raises(UsageError, match="--eval-output c: no such output.*a, b"):
        _output("c", ["a", "b"], "--eval e.npz")


def test_labels_must_be_one_class_index_per_sample_within_the_classes() -> None:
    scores = np.zeros((4, 10))
    _check_labels(np.array([0, 9, 3, 3]), scores, "logits", "--eval e.npz")
    with pytest.raises(UsageError, match="--eval e.npz: 3 labels for 4 samples"):
        _check_labels(np.array([0, 1, 2]), scores, "logits", "--eval e.npz")
    with pytest.raises(UsageError, match=r"labels go up to 10.*scores 10 classes \(0-9\)"):
        _check_labels(np.array([0, 1, 2, 10]), scores, "logits", "--eval e.npz")


@pytest.mark.parametrize(("labels", "message"), [
    (None, "no 'labels' array"),
    (np.array([0.0, 1.0]), "'labels' is float64, not integers"),
    (np.array([[0], [1]]), r"'labels' has shape \(2, 1\)"),
    (np.array([0, -1]), "1 negative value"),
    (np.array([True, False]), "'labels' is bool, not integers"),
])
def test_labels_that_are_not_class_indices_are_refused(labels: np.ndarray | None,
                                                       message: str) -> None:
    arrays = {"x": np.zeros((2, 3))} | ({} if labels is None else {"labels": labels})
    with pytest.raises(UsageError, match=message) as e:
        labels_in(arrays, "--eval e.npz")
    assert str(e.value).startswith("--eval e.npz: ") and "\n" not in str(e.value)


def test_eval_flags_are_checked_before_any_work(tmp_path: Path) -> None:
    good = tmp_path / "eval.npz"
    np.savez(good, x=np.zeros((4, 1, 3), np.float32), labels=np.arange(4))
    assert evaluation(None) is None
    assert evaluation(good, "logits", 0.01) == Evaluation(good, "logits", 0.01)
    for kwargs, message in [
        (dict(eval_data=None, max_accuracy_drop=0.01), "--max-accuracy-drop is for --eval"),
        (dict(eval_data=None, eval_output="y"), "--eval-output is for --eval"),
        (dict(eval_data=good, validate=False), "drop --no-validate"),
        (dict(eval_data=good, steps=3), "drop --steps 3"),
        (dict(eval_data=tmp_path / "none.npz"), "no such file"),
        (dict(eval_data=good, max_accuracy_drop=1.5), r"must be a finite number in \[0, 1\]"),
    ]:
        with pytest.raises(UsageError, match=message):
            evaluation(**kwargs)  # type: ignore[arg-type]
    nan = tmp_path / "nan.npz"
    np.savez(nan, x=np.full((4, 1, 3), np.nan, np.float32), labels=np.arange(4))
    with pytest.raises(UsageError, match="input 'x' holds 12 NaN"):
        evaluation(nan)
    assert evaluation(nan, allow_nonfinite=True) is not None


def test_the_eval_file_is_an_input_no_output_may_overwrite(saved_models: Saved,
                                                           tmp_path: Path) -> None:
    data = tmp_path / "eval.npz"
    np.savez(data, x=np.zeros((2, 1, 3, 32, 32), np.float32), labels=np.arange(2))
    with pytest.raises(UsageError, match="--report .*eval.npz: that is an input of this run"):
        portkit.convert(saved_models("cnn", "pt2"), "tflite", tmp_path / "cnn.tflite",
                        eval_data=data, report=data)


def test_a_failed_drop_says_why_in_one_line_with_the_limit_that_would_pass() -> None:
    acc = _accuracy(source_top1=0.975, artifact_top1=0.955, drop=0.975 - 0.955)
    line = why_failed(acc)
    assert line == ("tflite/cpu: top-1 on eval.npz 95.5% against the source's 97.5%, 2.0 "
                    "points lower (would pass with --max-accuracy-drop 0.02, not 0.01)")
    assert why_failed(_accuracy(drop=0.0, passed=True)) is None
    assert why_failed(_accuracy(max_drop=None, passed=True)) is None


def _images(n: int, seed: int, shape: tuple[int, ...], channel_axis: int) -> np.ndarray:
    """Normal noise plus a per-sample offset per channel, so a random classifier predicts
    several classes (plain noise gives one)."""
    rng = np.random.default_rng(seed)
    offset = [1] * len(shape)
    offset[channel_axis] = shape[channel_axis]
    return (rng.standard_normal((n, *shape))
            + rng.standard_normal((n, *offset))).astype(np.float32)


def test_a_float_artifact_scores_as_its_source(saved_models: Saved, workers: Pool,
                                              tmp_path: Path) -> None:
    import torch

    src = saved_models("cnn", "pt2")
    x = _images(64, seed=1, shape=(1, 3, 32, 32), channel_axis=1)
    model = torch.export.load(str(src)).module()
    with torch.no_grad():
        says = np.concatenate([model(torch.from_numpy(s)).numpy() for s in x]).argmax(axis=1)
    assert len(set(says)) >= 2, says  # the samples are not all one class
    labels = says.copy()
    labels[:4] = (labels[:4] + 1) % 10  # the source gets 60 of the 64 right
    np.savez(tmp_path / "eval.npz", x=x, labels=labels)
    report = portkit.convert(src, "tflite", tmp_path / "cnn.tflite",
                             eval_data=tmp_path / "eval.npz", max_accuracy_drop=0.0,
                             workers=workers)
    assert report.exit_code == ExitCode.OK, report.routes_tried
    acc = report.accuracy
    assert acc is not None and acc.passed
    assert (acc.samples, acc.runtime, acc.device, acc.max_drop) == (64, "tflite", "cpu", 0.0)
    assert acc.output == report.checks[0].outputs[0].name
    assert acc.source_top1 == acc.artifact_top1 == 60 / 64 and acc.drop == 0.0
    data = json.loads(report.to_json())
    snapshot = json.loads(SNAPSHOT.read_text())
    assert key_paths(data) == set(snapshot["convert_tflite"]) | {
        f"accuracy.{k}" for k in snapshot["accuracy"]}
    assert data["accuracy"] == acc.to_dict() and data["accuracy"]["source_top1"] == 0.9375
    from portkit.cli.render import accuracy_line, convert_tables

    assert accuracy_line(acc).plain == (
        f"Accuracy on eval.npz (64 labelled samples, output {acc.output}): source 93.8%, "
        "artifact 93.8% on tflite/cpu (0.0 points; limit 0.0): pass")
    assert any(t is not None and getattr(t, "plain", "").startswith("Accuracy on")
               for t in convert_tables(report))
    # Without --eval there is no accuracy, and the key says so.
    assert json.loads(portkit.convert(src, "tflite", tmp_path / "plain.tflite",
                                      workers=workers).to_json())["accuracy"] is None


def _tflite_argmax(path: Path, x: np.ndarray) -> np.ndarray:
    """The artifact's predictions, run here by ai_edge_litert itself (not by portkit)."""
    from ai_edge_litert.interpreter import Interpreter

    interpreter = Interpreter(model_path=str(path))
    interpreter.allocate_tensors()
    [given], [out] = interpreter.get_input_details(), interpreter.get_output_details()
    found = []
    for sample in x:
        interpreter.set_tensor(given["index"], sample)
        interpreter.invoke()
        found.append(interpreter.get_tensor(out["index"]).reshape(-1).argmax())
    return np.array(found)


def test_a_quantized_artifact_losing_more_than_the_limit_fails(saved_models: Saved,
                                                               workers: Pool,
                                                               tmp_path: Path) -> None:
    src = saved_models("keras_cnn", "keras")
    calibration = tmp_path / "calib.npz"
    rng = np.random.default_rng(123)
    np.savez(calibration, image=rng.standard_normal((64, 1, 32, 32, 3)).astype(np.float32))
    x = _images(200, seed=7, shape=(1, 32, 32, 3), channel_axis=3)
    np.savez(tmp_path / "inputs.npz", image=x)
    ref = workers.call("reference-keras", tasks.reference, path=str(src), fmt=Format.KERAS,
                       feed=Feed(file=tmp_path / "inputs.npz",
                                 shapes=Shapes(static=True)))  # the 200 samples, no other batch
    labels = np.concatenate([o["logits"] for o in ref.outputs]).argmax(axis=1)
    np.savez(tmp_path / "eval.npz", image=x, labels=labels)  # the source is always right
    out = tmp_path / "q.tflite"
    report = portkit.convert(src, "tflite", out, quantize="int8", calibration=calibration,
                             eval_data=tmp_path / "eval.npz", max_accuracy_drop=0.01,
                             workers=workers)
    kept = tmp_path / "q.failed.tflite"
    assert report.exit_code == ExitCode.PARITY_FAILED, report.routes_tried
    assert all(c.passed for c in report.checks)  # parity passed: the drop alone failed it
    acc = report.accuracy
    assert acc is not None and not acc.passed and acc.source_top1 == 1.0
    # The artifact's own predictions, run outside portkit, give the same accuracy.
    assert acc.artifact_top1 == np.mean(_tflite_argmax(kept, x) == labels) < 0.99
    assert acc.drop == pytest.approx(1.0 - acc.artifact_top1) and acc.max_drop == 0.01
    assert kept.exists() and not out.exists() and report.artifact_failed
    [attempt] = report.routes_tried
    assert not attempt.passed and attempt.error == why_failed(acc)
    from portkit.cli.render import convert_tables

    assert convert_tables(report)[0].plain.startswith("ACCURACY FAILED")
    # The limit the message names passes the same artifact, which validate scores alike (its
    # parity is judged by validate's fp32 policy, which an int8 artifact fails).
    would = float(attempt.error.rsplit("--max-accuracy-drop ", 1)[1].split(",")[0])
    again = api.validate(kept, src, eval_data=tmp_path / "eval.npz", max_accuracy_drop=would,
                         workers=workers).accuracy
    assert again is not None and again.passed and again.max_drop == would
    assert again.artifact_top1 == acc.artifact_top1 and again.source_top1 == 1.0


def test_refusals_that_need_the_model_are_one_line_usage_errors(converted, saved_models: Saved,
                                                               workers: Pool,
                                                               tmp_path: Path) -> None:
    cnn = converted("cnn", "pt2", "tflite")
    x = _images(8, seed=2, shape=(1, 3, 32, 32), channel_axis=1)
    cases = [
        (dict(x=x, labels=np.arange(7)), {}, "7 labels for 8 samples"),
        (dict(x=x, labels=np.arange(8) + 3), {}, "labels go up to 10, but output"),
        (dict(x=x, labels=np.arange(8)), {"eval_output": "nope"}, "--eval-output nope: no such"),
        (dict(x=x, y=x, labels=np.arange(8)), {}, "--eval holds y, but the model's inputs are x"),
    ]
    for i, (arrays, kwargs, message) in enumerate(cases):
        np.savez(tmp_path / f"bad{i}.npz", **arrays)
        with pytest.raises(UsageError, match=message) as e:
            api.validate(cnn, saved_models("cnn", "pt2"), eval_data=tmp_path / f"bad{i}.npz",
                             workers=workers, **kwargs)
        assert "\n" not in str(e.value)
    two = converted("two_io", "pt2", "onnx")
    np.savez(tmp_path / "two.npz", image=np.zeros((2, 1, 3, 16, 16), np.float32),
             vec=np.zeros((2, 1, 8), np.float32), labels=np.arange(2))
    source = saved_models("two_io", "pt2")
    with pytest.raises(UsageError, match=r"the source has 2 outputs \((\S+), (\S+)\)") as e:
        api.validate(two, source, eval_data=tmp_path / "two.npz", workers=workers)
    found = re.search(r"\((\S+), (\S+)\)", str(e.value))
    assert found is not None
    fmap, vector = found.groups()
    with pytest.raises(UsageError, match=r"is 1x4x16x16 per sample, not one score vector"):
        api.validate(two, source, eval_data=tmp_path / "two.npz", eval_output=fmap,
                         workers=workers)
    scored = api.validate(two, source, eval_data=tmp_path / "two.npz", eval_output=vector,
                              workers=workers).accuracy
    assert scored is not None and (scored.output, scored.samples) == (vector, 2)
    assert scored.runtime == "onnxruntime" and scored.drop == 0.0
