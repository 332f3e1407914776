"""``bench --profile`` / ``validate --profile``: time per op from each runtime's own profiler."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import pytest

from portkit import api
from portkit.errors import UsageError
from portkit.options import Budget
from portkit.profiles import OpTime, op_kinds
from portkit.runtimes.litert_profile import _Event, op_times
from tests.conftest import run_cli

QUICK = Budget(warmup=1, min_runs=5, min_seconds=0.0)


def _model_ops(path: Path) -> tuple[set[str], set[str]]:
    """Node names and op types in an ONNX file, or the builtin op names in a TFLite file."""
    if path.suffix == ".onnx":
        import onnx

        graph = onnx.load(str(path)).graph
        return {n.name for n in graph.node}, {n.op_type for n in graph.node}
    from ai_edge_litert.interpreter import Interpreter, OpResolverType

    it = Interpreter(model_path=str(path), experimental_op_resolver_type=(
        OpResolverType.BUILTIN_WITHOUT_DEFAULT_DELEGATES))
    return set(), {op["op_name"] for op in it._get_ops_details()}


def _check_rows(rows: tuple[OpTime, ...]) -> None:
    assert rows, "no profile rows"
    assert sum(o.share for o in rows) == pytest.approx(1.0)
    assert [o.ms for o in rows] == sorted((o.ms for o in rows), reverse=True)  # worst first
    assert sum(o.ms for o in rows) > 0
    assert len({o.op for o in rows}) == len(rows)


@pytest.mark.parametrize("target", ["onnx", "tflite"])
def test_bench_profile_rows_are_the_models_ops_worst_first(
        converted: Callable[[str, str, str], Path], target: str) -> None:
    model = converted("cnn", "pt2", target)
    report = api.bench([model], budget=QUICK, profile=True)
    rows = report.rows[0].latency.profile
    _check_rows(rows)
    names, kinds = _model_ops(model)
    if target == "onnx":
        # ONNX Runtime profiles its optimized graph: fused nodes keep an original node's name
        assert {o.provider for o in rows} == {"CPUExecutionProvider"}
        assert not any(o.delegated for o in rows)
        assert any(o.op in names for o in rows), [o.op for o in rows]
        assert any(o.kind in kinds for o in rows), [o.kind for o in rows]
    else:
        for o in rows:  # an XNNPACK operator, or a builtin kernel the model holds
            assert (o.provider, o.delegated) in {("XNNPACK", True), ("builtin", False)}, o
            assert o.delegated or o.kind in kinds, (o, kinds)
        assert any(o.delegated for o in rows)  # XNNPACK ran the convolutions
    assert sum(k.ms for k in op_kinds(rows)) == pytest.approx(sum(o.ms for o in rows))
    # without --profile, no rows (and no profiler run)
    assert api.bench([model], budget=QUICK).rows[0].latency.profile == ()


def test_bench_profile_json_has_the_rows(converted: Callable[[str, str, str], Path]) -> None:
    model = converted("cnn", "pt2", "tflite")
    done = run_cli("bench", model, "--profile", "--json", "--min-runs", "3", "--min-seconds",
                   "0", "--warmup", "1")
    assert done.returncode == 0, done.stderr
    rows = json.loads(done.stdout)["rows"][0]["latency"]["profile"]
    assert rows and set(rows[0]) == {"op", "kind", "ms", "share", "delegated", "calls",
                                     "provider"}
    assert sum(r["share"] for r in rows) == pytest.approx(1.0)


def test_validate_profile_times_the_artifact(converted: Callable[[str, str, str], Path],
                                             saved_models: Callable[[str, str], Path]) -> None:
    report = api.validate(converted("cnn", "pt2", "onnx"), saved_models("cnn", "pt2"),
                          runtimes=["onnxruntime"], profile=True)
    _check_rows(report.profile)
    assert "profile" in report.to_dict()


def test_a_runtime_without_a_profiler_says_so(saved_models: Callable[[str, str], Path]) -> None:
    with pytest.raises(UsageError, match="no per-op profiler"):
        api.bench([saved_models("cnn", "pt2")], budget=QUICK, profile=True)


def _event(tag: str, kind: int, us: int, node: int = 0, subgraph: int = 0) -> _Event:
    e = _Event()
    e.tag, e.event_type, e.elapsed_us, e.metadata1, e.metadata2 = \
        tag.encode(), kind, us, node, subgraph
    return e


def test_a_while_loop_keeps_its_own_time_and_its_body_ops_count_once() -> None:
    # one run: Invoke(0) { RESHAPE 5us, WHILE 100us { Invoke(1) { xnnpack FC 30us, ADD 10us } } }
    events = [_event("Invoke", 1, 150), _event("RESHAPE", 2, 5, node=0),
              _event("WHILE", 2, 100, node=1), _event("Invoke", 1, 60, subgraph=1),
              _event("Fully Connected", 8, 30, node=0), _event("ADD", 2, 10, node=2, subgraph=1),
              _event("Invoke", 32, 0, subgraph=1), _event("Invoke", 32, 0)]
    rows = {o.op: o for o in op_times(events, runs=1)}
    assert set(rows) == {"RESHAPE#0", "WHILE#1", "xnnpack#0@1", "ADD#2@1"}
    assert rows["WHILE#1"].ms == pytest.approx(0.060)  # 100 us less its body's 40
    assert rows["xnnpack#0@1"].delegated and not rows["ADD#2@1"].delegated
    assert sum(o.ms for o in rows.values()) == pytest.approx(0.105)


def test_a_tflite_with_a_free_batch_is_profiled_at_the_size_fed(
        converted: Callable[[str, str, str], Path]) -> None:
    # Keras's None batch is -1 in the file: LiteRT's buffers need the output's size at the run's
    model = converted("keras_cnn", "keras", "tflite")
    for shape in ([], ["image:3x32x32x3"]):
        [row] = api.bench([model], budget=QUICK, profile=True, shapes=shape).rows
        _check_rows(row.latency.profile)
