"""``convert --speed-check``: the shipped artifact timed against the source's own runtime, a
warning with the worst ops beyond 3x. No test asserts a timing: the verdict is checked against
the medians the report holds, and the slow case is one whose work is hundreds of times the
baseline's (an average pool whose window XNNPACK walks in full)."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import numpy as np
import pytest

import portkit
from portkit.errors import UsageError
from portkit.formats import Format
from portkit.options import Budget, LoadOptions, Optimize
from portkit.policies import POLICIES
from portkit.profiles import OpTime
from portkit.results import ConvertReport, FileInfo
from portkit.speed import MIN_GAP_MS, SLOW_RATIO, SpeedCheck, is_slow, timed
from portkit.validators.slowness import Timed, baseline, time_against, wanted
from tests.schema import key_paths

POOL = OpTime(op="xnnpack#1", kind="Average Pooling (NHWC, F32)", ms=9.0, share=0.98,
              delegated=True, provider="XNNPACK")
CONV = OpTime(op="CONV_2D#0", kind="CONV_2D", ms=0.2, share=0.02, delegated=False,
              provider="builtin")


def test_the_verdict_is_the_ratio_beyond_3x_and_a_millisecond() -> None:
    slow = timed("tflite", "onnxruntime on the source", "onnxruntime", p50_ms=142.0,
                 baseline_p50_ms=2.3, threads=2, runs=10, worst_ops=(POOL, CONV))
    assert slow.ratio == pytest.approx(142.0 / 2.3) and slow.warned
    assert (slow.threshold, slow.min_gap_ms) == (SLOW_RATIO, MIN_GAP_MS) == (3.0, 1.0)
    assert slow.worst_ops == (POOL, CONV)
    fine = timed("tflite", "b", "onnxruntime", p50_ms=6.0, baseline_p50_ms=2.0, threads=2,
                 runs=10, worst_ops=(POOL,), note="x")
    assert fine.ratio == 3.0 and not fine.warned  # 3x is not beyond 3x
    assert fine.worst_ops == () and fine.note == ""  # ops are only kept for a warning
    # Microseconds are no warning, however large the ratio: a tiny model's ratio is the
    # runtimes' per-call overhead.
    assert not is_slow(0.9, 0.01) and is_slow(1.02, 0.01) and not is_slow(5.0, 0.0)
    assert timed("tflite", "b", "torch", p50_ms=1.0, baseline_p50_ms=0.0, threads=None,
                 runs=1).ratio == 0.0


def test_the_report_renders_a_warning_naming_the_worst_ops_and_keeps_them_in_json() -> None:
    from portkit.cli.render import convert_tables, speed_line

    slow = timed("tflite", "onnxruntime on the source", "onnxruntime", p50_ms=142.0,
                 baseline_p50_ms=2.3, threads=2, runs=10, worst_ops=(POOL, CONV))
    line = speed_line(slow).plain
    assert line == ("SLOW: artifact p50 142 ms on tflite is 62x the 2.3 ms of onnxruntime on "
                    "the source, on this CPU (2 threads, 10 runs each in turns); worst ops: "
                    "xnnpack#1 Average Pooling (NHWC, F32) (98%), CONV_2D#0 (2%); more: "
                    "portkit bench ARTIFACT --profile")
    fine = timed("onnxruntime", "torch on the source", "torch", p50_ms=1.5, baseline_p50_ms=1.0,
                 threads=2, runs=10)
    assert speed_line(fine).plain.startswith("Speed check: artifact p50 1.5 ms on onnxruntime "
                                             "is 1.5x the 1 ms of torch on the source")
    big = timed("tflite", "torch on the source", "torch", p50_ms=2030.4, baseline_p50_ms=1090.0,
                threads=2, runs=10)
    assert "p50 2,030 ms on tflite is 1.9x the 1,090 ms of torch" in speed_line(big).plain
    failed = SpeedCheck(runtime="tflite", baseline="none", baseline_runtime="",
                        error="the source ran on onnx-reference")
    assert speed_line(failed).plain == ("Speed check: not timed against none: the source ran "
                                        "on onnx-reference")
    report = ConvertReport(passed=True, validated=True, source=FileInfo("m.onnx", "onnx"),
                           target="tflite", artifact=None, route=(), routes_tried=(), checks=(),
                           inputs=(), tolerance=POLICIES["fp32"], seed=0, seconds=1.0,
                           speed=slow)
    assert any(getattr(t, "plain", "").startswith("SLOW: ") for t in convert_tables(report))
    data = json.loads(report.to_json())
    assert data["speed"]["warned"] is True and data["speed"]["ratio"] == pytest.approx(61.74, 1e-3)
    assert [o["op"] for o in data["speed"]["worst_ops"]] == ["xnnpack#1", "CONV_2D#0"]
    assert set(data["speed"]["worst_ops"][0]) == {
        "op", "kind", "ms", "share", "delegated", "calls", "provider"}
    assert "speed.baseline" in key_paths(data)
    no_check = json.loads(dataclasses.replace(report, speed=None).to_json())
    assert no_check["speed"] is None


def test_it_runs_when_asked_or_with_optimize_latency_and_refuses_what_it_cannot_time() -> None:
    assert not wanted(None, None, Format.TFLITE)
    assert wanted(None, Optimize.LATENCY, Format.ONNX)
    assert not wanted(None, Optimize.LATENCY, Format.TORCHSCRIPT)  # skipped, not refused
    assert not wanted(False, Optimize.LATENCY, Format.TFLITE)
    assert wanted(True, None, Format.TFLITE)
    with pytest.raises(UsageError, match="--speed-check times TFLite and ONNX"):
        wanted(True, None, Format.SAVEDMODEL)
    with pytest.raises(UsageError, match="drop --no-validate or --speed-check"):
        wanted(True, None, Format.TFLITE, validate=False)
    # The API refuses it before any work.
    with pytest.raises(UsageError, match="--to savedmodel writes neither"):
        portkit.convert(Path("missing.onnx"), "savedmodel", speed_check=True)


def test_the_baseline_is_the_sources_runtime_or_ort_on_a_torch_sources_onnx(tmp_path) -> None:
    src, hop = tmp_path / "m.pt2", tmp_path / "hop0.onnx"
    load = LoadOptions(trust_model=True)
    side, said = baseline((src, Format.EXPORTED_PROGRAM), Format.TFLITE, "torch", hop, load)
    assert (side.path, side.fmt, side.runtime, side.bind) == (str(hop), Format.ONNX,
                                                             "onnxruntime", True)
    assert said == "onnxruntime on the source's ONNX"
    side, said = baseline((src, Format.EXPORTED_PROGRAM), Format.TFLITE, "torch", None, load)
    assert (side.runtime, side.bind, said) == ("torch", False, "torch on the source")
    assert side.options.trust_model  # the source loads as the reference did
    side, _ = baseline((src, Format.EXPORTED_PROGRAM), Format.ONNX, "torch", hop, load)
    assert side.runtime == "torch"  # the artifact is that ONNX: time it against torch
    side, said = baseline((tmp_path / "m.keras", Format.KERAS), Format.TFLITE, "tensorflow",
                          None, load)
    assert said == "tensorflow on the source (tf.function)"
    assert side.options.threads is None  # TensorFlow's thread pools are fixed once it ran
    why = baseline((tmp_path / "old.onnx", Format.ONNX), Format.TFLITE, "onnx-reference", None,
                   load)
    assert isinstance(why, str) and "no yardstick" in why


def _slow_pool_onnx(path: Path, window: int = 1024, channels: int = 128) -> Path:
    """A conv, then an average pool whose window (``window`` square, padded, pads not counted)
    dwarfs its 7x7 input: ONNX Runtime sums the 49 values, XNNPACK walks the whole window
    (the pattern of transformers' EfficientNet pooler, 450 ms as TFLite against 7.5 ms)."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    rng = np.random.default_rng(0)
    w = numpy_helper.from_array((rng.standard_normal((channels, 3, 3, 3)) * 0.1)
                                .astype(np.float32), "w")
    lo = (window - 7) // 2
    hi = window - 7 - lo
    nodes = [helper.make_node("Conv", ["x", "w"], ["h"], pads=[1, 1, 1, 1]),
             helper.make_node("AveragePool", ["h"], ["y"], kernel_shape=[window, window],
                              strides=[window, window], pads=[lo, lo, hi, hi],
                              count_include_pad=0)]
    graph = helper.make_graph(
        nodes, "slow_pool", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 3, 7, 7])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, channels, 1, 1])], [w])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.checker.check_model(model, full_check=True)
    onnx.save(model, path)
    return path


def test_a_pathologically_slow_tflite_is_timed_against_ort_and_its_pool_named(
        workers, tmp_path, monkeypatch) -> None:
    from portkit.cli.render import convert_tables
    from portkit.convert import planner

    # The artifact as onnx2tf writes it without the pool-rewrite preparation (which makes this
    # pool global and fast, tests/convert/test_pool_rewrite.py): the slow case the check is for.
    monkeypatch.setattr(planner, "preparations", lambda *args: ())
    src = _slow_pool_onnx(tmp_path / "pool.onnx")
    out = tmp_path / "pool.tflite"
    report = portkit.convert(src, "tflite", out, speed_check=True, workers=workers)
    assert report.exit_code == 0, report.routes_tried
    s = report.speed
    assert s is not None and s.error is None, s
    assert (s.runtime, s.baseline_runtime, s.baseline) == ("tflite", "onnxruntime",
                                                           "onnxruntime on the source")
    assert s.p50_ms > 0 and s.baseline_p50_ms > 0 and s.runs >= 10
    assert s.ratio == pytest.approx(s.p50_ms / s.baseline_p50_ms)
    assert s.warned == is_slow(s.p50_ms, s.baseline_p50_ms)  # the verdict on its own medians
    assert bool(s.worst_ops) == s.warned or bool(s.note)
    lines = [t.plain for t in convert_tables(report) if hasattr(t, "plain")]
    assert any(x.startswith("SLOW: " if s.warned else "Speed check: ") for x in lines), lines
    data = json.loads(report.to_json())
    assert data["speed"]["baseline_runtime"] == "onnxruntime"
    # The profile that names the ops (forced here: what a slow verdict runs): the pool, not
    # the conv, is where the time goes.
    feeds = {"x": np.random.default_rng(0).standard_normal((1, 3, 7, 7)).astype(np.float32)}
    art = Timed(str(out), Format.TFLITE, "tflite", LoadOptions(threads=1), channels_last=True)
    ort = Timed(str(src), Format.ONNX, "onnxruntime", LoadOptions(threads=1), bind=False)
    _a, _b, ops, note = workers.call(
        "tflite", time_against, artifact=art, baseline=ort, sample=feeds,
        specs=list(report.inputs), budget=Budget(warmup=0, min_runs=2, min_seconds=0.0),
        profile_runs=2, threshold=0.0, min_gap_ms=-1e9)
    if note:
        pytest.skip(f"no TFLite profiler here: {note}")
    assert "pool" in ops[0].kind.lower(), ops
    assert sum(o.share for o in ops) == pytest.approx(1.0)


def test_the_cli_flag_reaches_the_api(tmp_path) -> None:
    from tests.conftest import run_cli

    done = run_cli("convert", tmp_path / "m.onnx", "--to", "savedmodel", "--speed-check")
    assert done.returncode == 2, done.stderr
    assert "--speed-check times TFLite and ONNX artifacts" in done.stderr + done.stdout


class _Conversion:
    """What ``source_onnx`` uses of a conversion: the ONNX a route made, and a route run."""

    def __init__(self, made: Path | None, passes: bool = True) -> None:
        self._made, self._passes, self.ran = made, passes, []

    def made(self, fmt: Format) -> Path | None:
        return self._made

    def attempt(self, route, folder: Path):
        from portkit.results import Attempt

        self.ran.append(route.name)
        return Attempt(route=route.name, converted=True, passed=self._passes), folder / "hop0.onnx"


def test_a_torch_sources_onnx_is_the_one_a_route_made_else_one_made_and_checked_now(
        tmp_path) -> None:
    from portkit.convert.baseline import source_onnx

    made = _Conversion(tmp_path / "route1" / "hop0.onnx")
    assert source_onnx(made, Format.EXPORTED_PROGRAM, Format.TFLITE, tmp_path / "b") == \
        tmp_path / "route1" / "hop0.onnx" and made.ran == []
    fresh = _Conversion(None)
    assert source_onnx(fresh, Format.TORCHSCRIPT, Format.TFLITE, tmp_path / "b") == \
        tmp_path / "b" / "hop0.onnx"
    assert fresh.ran == ["torch.onnx-legacy"]  # the cheapest one-hop route to ONNX
    failed = _Conversion(None, passes=False)  # an ONNX that does not match is no baseline
    assert source_onnx(failed, Format.EXPORTED_PROGRAM, Format.TFLITE, tmp_path / "b") is None
    for fmt, target in ((Format.ONNX, Format.TFLITE), (Format.KERAS, Format.TFLITE),
                        (Format.EXPORTED_PROGRAM, Format.ONNX)):
        none = _Conversion(None)
        assert source_onnx(none, fmt, target, tmp_path / "b") is None and none.ran == []


def test_a_torch_source_shipped_without_an_onnx_hop_is_timed_against_ort_on_its_onnx(
        saved_models, workers, tmp_path) -> None:
    report = portkit.convert(saved_models("cnn", "pt2"), "tflite", tmp_path / "cnn.tflite",
                             speed_check=True, workers=workers)
    assert report.exit_code == 0 and report.route_name == "litert-torch"
    assert [a.route for a in report.routes_tried] == ["litert-torch"]  # the export is no route
    s = report.speed
    assert s is not None and s.error is None, s
    assert (s.baseline, s.baseline_runtime) == ("onnxruntime on the source's ONNX", "onnxruntime")
    assert s.ratio == pytest.approx(s.p50_ms / s.baseline_p50_ms)
    assert s.warned == is_slow(s.p50_ms, s.baseline_p50_ms)
