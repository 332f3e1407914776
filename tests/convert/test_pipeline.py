"""``convert --optimize latency``: every route runs, the matching artifacts are timed against
each other in one worker, the fastest ships; and the report splits converter time from
portkit's own."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

import portkit
from portkit.convert import registry
from portkit.convert.planner import choose
from portkit.errors import ExitCode, UsageError
from portkit.formats import Format
from portkit.options import Feed
from portkit.results import Attempt
from tests.schema import assert_schema

pytest.importorskip("torch")


def _attempt(route: str, *, converted: bool = True, passed: bool = True,
             p50: float | None = None) -> Attempt:
    from portkit.results import Latency

    latency = None if p50 is None else Latency(
        runtime="tflite", device="cpu", threads=None, batch=1, cold_start_ms=1.0, runs=30,
        p50_ms=p50, p90_ms=p50, p99_ms=p50, mean_ms=p50, cv=0.0, throughput=1.0, peak_rss_mb=1.0)
    return Attempt(route=route, converted=converted, passed=passed, latency=latency)


def test_choose_ships_the_fastest_match_else_the_first_match_else_the_first_converted() -> None:
    assert choose([_attempt("a", p50=3.0), _attempt("b", passed=False),
                   _attempt("c", p50=1.0)]) == 2
    assert choose([_attempt("a", passed=False), _attempt("b"), _attempt("c")]) == 1
    assert choose([_attempt("a", converted=False, passed=False),
                   _attempt("b", passed=False)]) == 1  # kept, its report says why it failed
    assert choose([_attempt("a", converted=False, passed=False)]) is None
    assert choose([]) is None


def test_optimize_tries_every_route_and_ships_the_fastest_that_matched(saved_models, workers,
                                                                       tmp_path: Path) -> None:
    out = tmp_path / "cnn.tflite"
    report = portkit.convert(saved_models("cnn", "pt2"), "tflite", out, optimize="latency",
                             workers=workers)
    planned = [r.name for r in registry.plan(Format.EXPORTED_PROGRAM, Format.TFLITE,
                                             variants=True)]
    assert [a.route for a in report.routes_tried] == planned
    assert "litert-torch[nhwc-io]" in planned
    matched = [a for a in report.routes_tried if a.passed]
    assert len(matched) >= 2, [a.error for a in report.routes_tried]
    assert all(a.latency is not None and a.latency.runs >= 30 for a in matched)
    fastest = min(matched, key=lambda a: a.latency.p50_ms)
    assert report.route == fastest.hops and report.exit_code == ExitCode.OK
    assert report.route_name == fastest.route
    # Routes sharing a first hop ran it once: the same torch.onnx hop in each.
    onnx_hops = {a.hops[0] for a in report.routes_tried if a.route.startswith("torch.onnx+")}
    assert len(onnx_hops) == 1
    ran = {h for a in report.routes_tried for h in a.hops}
    assert report.converter_seconds == pytest.approx(sum(h.seconds for h in ran))
    data = json.loads(report.to_json())
    assert_schema("convert_optimize", data)
    assert data["optimize"] == "latency"
    assert data["overhead_seconds"] == pytest.approx(report.seconds - report.converter_seconds)
    assert all(a["latency"]["p50_ms"] > 0 for a in data["routes_tried"] if a["ok"])
    # It also times the shipped artifact against ONNX Runtime on the torch.onnx hop's ONNX.
    assert report.speed is not None and report.speed.error is None, report.speed
    assert report.speed.baseline == "onnxruntime on the source's ONNX"
    assert report.speed.ratio == pytest.approx(report.speed.p50_ms / report.speed.baseline_p50_ms)


def test_plain_convert_reports_overhead_and_runs_one_route(saved_models, workers,
                                                          tmp_path: Path) -> None:
    report = portkit.convert(saved_models("cnn", "pt2"), "tflite", tmp_path / "cnn.tflite",
                             workers=workers)
    assert [a.route for a in report.routes_tried] == ["litert-torch"]
    assert report.routes_tried[0].latency is None
    assert 0 < report.converter_seconds < report.seconds
    assert report.overhead_seconds == pytest.approx(report.seconds - report.converter_seconds)
    assert_schema("convert_tflite", json.loads(report.to_json()))


def test_a_variant_can_be_forced_by_name_and_makes_the_input_nhwc(saved_models, workers,
                                                                  tmp_path: Path) -> None:
    report = portkit.convert(saved_models("cnn", "pt2"), "tflite", tmp_path / "cnn.tflite",
                             route="litert-torch[nhwc-io]", workers=workers)
    assert report.exit_code == ExitCode.OK, report.routes_tried[0].error
    assert "to_channel_last_io" in report.route[0].detail
    assert report.mobile is not None
    assert [(t.shape, t.layout) for t in report.mobile.inputs] == [((1, 32, 32, 3), "NHWC")]
    assert report.checks[0].input_layouts  # the NCHW reference inputs were mapped to NHWC
    from rich.console import Console

    from portkit.cli.render import convert_tables

    console = Console(record=True, width=200)
    for table in convert_tables(report):
        console.print(table)
    assert "litert-torch[nhwc-io]" in console.export_text()  # not eaten as rich markup


@pytest.mark.parametrize(("kwargs", "message"), [
    ({"optimize": "size"}, "latency"),
    ({"optimize": "latency", "route": "litert-torch"}, "drop --route"),
    ({"optimize": "latency", "validate": False}, "drop --no-validate"),
])
def test_optimize_refuses_what_it_cannot_honour(saved_models, kwargs, message) -> None:
    with pytest.raises(UsageError, match=message):
        portkit.convert(saved_models("cnn", "pt2"), "tflite", **kwargs)


def test_timing_together_reports_an_artifact_that_fails_instead_of_failing_all(
        saved_models, converted, tmp_path: Path) -> None:
    from portkit.options import Budget
    from portkit.results import Latency
    from portkit.runtimes import tasks, worker
    from portkit.validators.latency import time_together

    src, good = saved_models("cnn", "pt2"), converted("cnn", "pt2", "tflite")
    bad = tmp_path / "bad.tflite"
    bad.write_bytes(good.read_bytes()[:2000])
    ref = worker.call(tasks.reference, path=str(src), fmt=Format.EXPORTED_PROGRAM, feed=Feed())
    budget = Budget(warmup=1, min_runs=5, min_seconds=0.0)
    timed = time_together([good, bad], Format.TFLITE, "tflite", ref, budget=budget)
    assert isinstance(timed[0], Latency) and timed[0].runs >= 5
    assert isinstance(timed[1], str) and timed[1]


def test_nhwc_io_on_a_model_without_4d_tensors_says_so(saved_models, workers,
                                                       tmp_path: Path) -> None:
    report = portkit.convert(saved_models("lstm", "pt2"), "tflite", tmp_path / "l.tflite",
                             route="litert-torch[nhwc-io]", workers=workers)
    assert report.exit_code == ExitCode.CONVERSION_FAILED
    assert "no 4-D input or output" in (report.routes_tried[0].error or "")


def test_inputs_file_alone_gives_a_torchscript_model_its_shapes(saved_models, workers,
                                                                 tmp_path: Path) -> None:
    """A TorchScript file stores no input shapes, not even their rank: the .npz's arrays give
    them, each one sample, with no --input."""
    import numpy as np

    samples = tmp_path / "sample.npz"
    np.savez(samples, seq=np.random.default_rng(0).standard_normal((1, 10, 8))
             .astype(np.float32))
    report = portkit.convert(saved_models("lstm", "torchscript"), "tflite",
                             tmp_path / "lstm.tflite", inputs_file=samples, workers=workers)
    assert report.exit_code == ExitCode.OK, report.routes_tried
    assert [(s.name, s.shape, s.dtype) for s in report.inputs] == [("seq", (1, 10, 8),
                                                                    "float32")]


def test_a_stateful_model_is_judged_over_steps_fed_its_own_state(workers, tmp_path: Path) -> None:
    """A recurrent step model (x, h) -> (y, h'): three calls per sample, the artifact fed the
    state it returned; the report says which output went back to which input."""
    import torch

    from portkit.fixtures import torch_models

    torch.manual_seed(0)
    src = tmp_path / "step.pt2"
    torch.export.save(torch.export.export(torch_models.stateful().eval(),
                                          (torch.randn(1, 8), torch.randn(1, 16))), str(src))
    report = portkit.convert(src, "tflite", tmp_path / "step.tflite", steps=3,
                             state=["h=output_1"], workers=workers)
    assert report.exit_code == ExitCode.OK, report.routes_tried
    assert (report.steps, report.state) == (3, {"h": "output_1"})
    assert {o.samples for c in report.checks for o in c.outputs} == {3}
    with pytest.raises(UsageError, match="--steps 3: no output looks like the state"):
        portkit.convert(src, "onnx", tmp_path / "step.onnx", steps=3, workers=workers)
    with pytest.raises(UsageError, match="--steps 0: must be at least 1"):
        portkit.convert(src, "onnx", tmp_path / "step.onnx", steps=0, workers=workers)
    import numpy as np

    four = tmp_path / "four.npz"  # four calls are not whole 3-step sequences
    np.savez(four, x=np.zeros((4, 1, 8), np.float32), h=np.zeros((4, 1, 16), np.float32))
    with pytest.raises(UsageError, match="4 samples are not a whole number of 3-step sequences"):
        portkit.convert(src, "onnx", tmp_path / "step.onnx", inputs_file=four, steps=3,
                        state=["h=output_1"], workers=workers)
