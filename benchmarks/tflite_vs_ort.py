"""Is portkit's default TFLite artifact as fast as ONNX Runtime on the same model?

    python -m benchmarks.tflite_vs_ort                          # every zoo model
    python -m benchmarks.tflite_vs_ort --models efficientnet_b0

For each zoo model portkit converts the saved source twice with its defaults, ``--to onnx`` and
``--to tflite`` (fresh workers, ``portkit.api.convert``); then, in one process, the TFLite
artifact (``ai_edge_litert``, XNNPACK) and the ONNX one (ONNX Runtime, CPU) are loaded, fed the
same seeded input and timed in turns (``portkit.validators.latency.measure_interleaved``), both
on 2 threads (ONNX Runtime's without spin-waiting after a run: its spinning threads would take
the cores from the TFLite turn that follows). Each turn starts with an untimed run, so neither is
timed on caches the other just took. The issue's bar: the TFLite p50 within 2x of ONNX
Runtime's. Results are merged into ``benchmarks/results/tflite_vs_ort.json`` model by model.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from benchmarks.run import machine, measured_on, per_model
from benchmarks.zoo import ZooModel
from portkit import api
from portkit.options import Budget
from portkit.results import versions

_ORT_TYPES = {"tensor(float)": "float32", "tensor(int64)": "int64", "tensor(int32)": "int32"}
RESULTS = Path(__file__).with_name("results") / "tflite_vs_ort.json"
# Its table's block in docs/benchmarks.md (benchmarks/docs_hook.py renders it at build time).
START, END = "<!-- tflite_vs_ort:start -->", "<!-- tflite_vs_ort:end -->"
THREADS = 2
BAR = 2.0


def main() -> None:
    per_model(__doc__, RESULTS, "tflite-vs-ort", run, markdown)


def run(model: ZooModel, work: Path) -> dict[str, Any]:
    """Both conversions (in portkit's workers), then the two artifacts timed in turns in this
    process, which runs nothing else meanwhile."""
    src = model.save(work)
    found: dict[str, Any] = {"name": model.name}
    paths = {}
    for target in ("onnx", "tflite"):
        print(f"{model.name}: portkit -> {target}", flush=True)
        report = api.convert(src, target, work / f"{model.name}.{target}", timeout=3600)
        found[target] = {"passed": report.passed, "route": report.route_name,
                         "seconds": round(report.seconds, 1),
                         "hops": [h.tool for h in report.route]}
        paths[target] = str(work / f"{model.name}.{target}")
    if all(found[t]["passed"] for t in ("onnx", "tflite")):
        tflite, ort = time_pair(paths["tflite"], paths["onnx"])
        found.update(tflite_p50_ms=tflite, ort_p50_ms=ort, ratio=tflite / ort)
    return {**found, "threads": THREADS, "machine": machine(), "versions": versions(),
            "date": time.strftime("%Y-%m-%d %H:%M:%S %Z")}


def time_pair(tflite: str, onnx: str) -> tuple[float, float]:
    """p50 (ms) of the TFLite and the ONNX artifact, timed in turns, one seeded input each."""

    from portkit.formats import Format
    from portkit.options import LoadOptions
    from portkit.runtimes import registry
    from portkit.specs import make_inputs
    from portkit.validators.latency import measure_interleaved

    options = LoadOptions(threads=THREADS)

    def lite() -> Any:
        session = registry.get("tflite").load(Path(tflite), Format.TFLITE, "cpu", options)
        feeds = make_inputs(_fixed(session.inputs), seed=0)
        return lambda: session.run(feeds)

    timed = measure_interleaved(
        [lite, ort_runner(onnx, THREADS)],
        Budget(warmup=3, min_runs=30, min_seconds=1.0), runtime="tflite+onnxruntime",
        device="cpu", threads=THREADS)
    return timed[0].p50_ms, timed[1].p50_ms


def _fixed(specs: Any) -> list[Any]:
    """The inputs with a free dimension (Keras's ``None`` batch, ONNX's ``batch``) at 1."""
    from portkit.specs import TensorSpec

    return [TensorSpec(s.name, tuple(d if isinstance(d, int) and d > 0 else 1 for d in s.shape),
                       s.dtype) for s in specs]


def markdown(path: Path) -> str:
    """The docs table: TFLite against ONNX Runtime per model."""
    import json

    data = json.loads(path.read_text())
    lines = ["| model | TFLite route | ONNX route | TFLite p50 ms | ONNX Runtime p50 ms | ratio "
             "| within 2x |", "|---|---|---|---|---|---|---|"]
    for m in data["models"]:
        if "ratio" not in m:
            lines.append(f"| {m['name']} | {m['tflite']['route']} | {m['onnx']['route']} "
                         "| - | - | - | not timed |")
            continue
        lines.append(f"| {m['name']} | {m['tflite']['route']} | {m['onnx']['route']} | "
                     f"{m['tflite_p50_ms']:.2f} | "
                     f"{m['ort_p50_ms']:.2f} | {m['ratio']:.2f}x | "
                     f"{'yes' if m['ratio'] <= BAR else '**no**'} |")
    lines.append(measured_on(data["models"], f"{THREADS} threads each, timed in turns in one "
                                             "process"))
    return "\n".join(lines)


if __name__ == "__main__":
    main()


def ort_runner(path: str, threads: int) -> Callable[[], Callable[[], Any]]:
    """What ``measure_interleaved`` loads for an ONNX file: an ONNX Runtime CPU session on
    ``threads`` threads that don't spin after a run (spinning threads would take the cores from
    the next format's turn), fed seeded inputs of its own input shapes."""

    def load() -> Callable[[], Any]:
        import onnxruntime

        from portkit.specs import TensorSpec, make_inputs

        so = onnxruntime.SessionOptions()
        so.intra_op_num_threads = threads
        so.add_session_config_entry("session.intra_op.allow_spinning", "0")
        session = onnxruntime.InferenceSession(path, so, providers=["CPUExecutionProvider"])
        feeds = make_inputs(_fixed([TensorSpec(i.name, tuple(i.shape), _ORT_TYPES[i.type])
                                    for i in session.get_inputs()]), seed=0)
        return lambda: session.run(None, feeds)

    return load
