"""``convert --optimize latency``: every route runs, the matching artifacts are timed against
each other in one worker, the fastest ships; and the report splits converter time from
portkit's own."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

import portkit
from portkit.convert import registry
from portkit.errors import ExitCode, UsageError
from portkit.formats import Format

pytest.importorskip("torch")


def test_optimize_tries_every_route_and_ships_the_fastest_that_matched(saved_models,
                                                                       tmp_path: Path) -> None:
    out = tmp_path / "cnn.tflite"
    report = portkit.convert(saved_models("cnn", "pt2"), "tflite", out, optimize="latency")
    planned = [r.name for r in registry.plan(Format.EXPORTED_PROGRAM, Format.TFLITE,
                                             variants=True)]
    assert [a.route for a in report.routes_tried] == planned
    assert "litert-torch[nhwc-io]" in planned
    matched = [a for a in report.routes_tried if a.ok]
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
    assert data["optimize"] == "latency"
    assert data["overhead_seconds"] == pytest.approx(report.seconds - report.converter_seconds)
    assert all(a["latency"]["p50_ms"] > 0 for a in data["routes_tried"] if a["ok"])


def test_plain_convert_reports_overhead_and_runs_one_route(saved_models, tmp_path: Path) -> None:
    report = portkit.convert(saved_models("cnn", "pt2"), "tflite", tmp_path / "cnn.tflite")
    assert [a.route for a in report.routes_tried] == ["litert-torch"]
    assert report.routes_tried[0].latency is None
    assert 0 < report.converter_seconds < report.seconds
    assert report.overhead_seconds == pytest.approx(report.seconds - report.converter_seconds)


def test_a_variant_can_be_forced_by_name_and_makes_the_input_nhwc(saved_models,
                                                                  tmp_path: Path) -> None:
    report = portkit.convert(saved_models("cnn", "pt2"), "tflite", tmp_path / "cnn.tflite",
                             route="litert-torch[nhwc-io]")
    assert report.exit_code == ExitCode.OK, report.routes_tried[0].error
    assert "to_channel_last_io" in report.route[0].detail
    assert report.mobile is not None
    assert [(t.shape, t.layout) for t in report.mobile.inputs] == [((1, 32, 32, 3), "NHWC")]
    assert report.checks[0].input_layouts  # the NCHW reference inputs were mapped to NHWC
    from rich.console import Console

    from portkit.validators.render import convert_tables

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
        saved_models, tmp_path: Path) -> None:
    from portkit.runtimes import worker
    from portkit.validators.latency import Budget, Latency

    src = saved_models("cnn", "pt2")
    good = tmp_path / "cnn.tflite"
    portkit.convert(src, "tflite", good)
    bad = tmp_path / "bad.tflite"
    bad.write_bytes(good.read_bytes()[:2000])
    ref = worker.call("portkit.runtimes.tasks:reference", path=str(src),
                      fmt=Format.EXPORTED_PROGRAM, given=[], inputs_file=None, seed=0)
    budget = Budget(warmup=1, min_runs=5, min_seconds=0.0)
    timed = portkit.api.time_together([good, bad], Format.TFLITE, "tflite", ref, budget=budget)
    assert isinstance(timed[0], Latency) and timed[0].runs >= 5
    assert isinstance(timed[1], str) and timed[1]


def test_nhwc_io_on_a_model_without_4d_tensors_says_so(saved_models, tmp_path: Path) -> None:
    report = portkit.convert(saved_models("lstm", "pt2"), "tflite", tmp_path / "l.tflite",
                             route="litert-torch[nhwc-io]")
    assert report.exit_code == ExitCode.CONVERSION_FAILED
    assert "no 4-D input or output" in (report.routes_tried[0].error or "")
