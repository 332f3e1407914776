"""Float TFLite -> quantized TFLite with ai-edge-quantizer: how every route ending in a TFLite
converter quantizes to integers (``from_float``; ``--quantize fp16`` stays TFLiteConverter's).

Modes: ``dynamic`` (int8 weights, float activations: recipe ``dynamic_wi8_afp32``), ``int8``
(int8 weights and activations, ``static_wi8_ai8``; float inputs and outputs unless
``--int8-io``; for a transformer-shaped model only its linear layers, see ``COMPUTE_ONLY``)
and ``int16x8`` (int8 weights, int16 activations, ``static_wi8_ai16``). The static modes
calibrate on ``--calibration`` less the samples held back to validate on (``options.holdout``),
taking each tensor's range over every sample (min/max, as TFLiteConverter does).

For the static modes every op's error is measured on calibration samples: the float and the
quantized model run with every tensor kept, and each op's output compared (``OpError``). Ops
stay float by name (``--keep-float NAME,...``: ``CONV_2D#3``, as that table lists them);
``--keep-float auto`` finds the fewest that make the quantized model meet the policy against
the float model on calibration samples, as Polygraphy's ``debug precision`` bisects for
TensorRT, by scope before single ops (``keep_float.search``). The validation that follows runs
on the held-back samples, which chose nothing.
"""

from __future__ import annotations

import os
import re
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from portkit.convert.keep_float import Search, search
from portkit.errors import ConversionError
from portkit.options import Budget, ConvertOptions
from portkit.policies import Quantize, Tolerance
from portkit.quantization import OpError, Quantization
from portkit.specs import TensorSpec, load_calibration, make_inputs

TOOL = "ai-edge-quantizer"
_RECIPES = {
    Quantize.DYNAMIC: ("dynamic_wi8_afp32", "int8 weights, float activations"),
    Quantize.INT8: ("static_wi8_ai8", "int8 weights and activations"),
    Quantize.INT16X8: ("static_wi8_ai16", "int8 weights, int16 activations"),
}
MODES = tuple(_RECIPES)
# The variant that quantizes only the ops that compute (conv, linear), as PT2E does: int8
# attention math (batch matmul, softmax, norms) runs off XNNPACK's fast kernels (encoder4: 9.1
# ms a run against 1.3 ms with only its linear layers int8). It is also what a static mode does
# to a transformer-shaped model (``transformer_shaped``) unless --int8-io asks for every op.
COMPUTE_ONLY = "int8-compute"
_COMPUTE_OPS = ("FULLY_CONNECTED", "CONV_2D", "DEPTHWISE_CONV_2D")
OP_SAMPLES = 8  # calibration samples every op's error is measured on
JUDGE_SAMPLES = 32  # calibration samples --keep-float auto judges a candidate on
_TIMING = Budget(warmup=3, min_runs=20, min_seconds=0.3)


def from_float(write_float: Callable[[Path], str], dst: Path, inputs: list[TensorSpec],
               options: ConvertOptions) -> tuple[str, Quantization]:
    """An edge's quantized output: ``write_float(path)`` writes the float model (returning its
    detail) into the worker's scratch directory, then ``quantize`` writes ``dst``."""
    floats = Path(os.getcwd()) / "float.tflite"
    made = write_float(floats)
    detail, quantization = quantize(floats, dst, inputs, options)
    return f"{made} -> {detail}", quantization


def quantize(float_path: Path, dst: Path, inputs: list[TensorSpec],
             options: ConvertOptions) -> tuple[str, Quantization]:
    """Quantize the float model at ``float_path`` into ``dst`` as ``options`` ask.

    Args:
        float_path: The float ``.tflite``.
        dst: Where the quantized one goes.
        inputs: The source's inputs (calibration samples are in their names and layout).
        options: ``quantize`` (one of ``MODES``), ``calibration``, ``holdout``, ``int8_io``,
            ``keep_float``/``keep_float_auto`` and ``judge``.

    Returns:
        The hop's detail, and what quantization did.

    Raises:
        ConversionError: A named op is not in the model.
        UsageError: Calibration data that doesn't fit, or too few samples to hold some back.
    """
    mode = options.quantize
    assert mode in MODES, mode
    model = _FloatModel(float_path, inputs, options)
    kept, trials, note = [model.op_named(n) for n in options.keep_float], 1, ""
    data = first = model.build(kept)
    found = None
    if options.keep_float_auto:  # ``first`` quantized every op
        found = model.keep_float_auto(first, options.judge or Tolerance())
        data, kept, trials, note = found.model, list(found.kept), found.trials, found.note
    dst.write_bytes(data)
    ops = model.op_errors(data) if mode.calibrated else ()
    full_bytes = full_ms = shipped_ms = None
    if kept:
        full = first if options.keep_float_auto else model.build([])
        full_bytes = len(full)
        full_ms, shipped_ms = model.time([full, data])
    name, about = _RECIPES[mode]
    io = "; int8 inputs and outputs" if options.int8_io else ""
    only = "; conv and linear ops only" if model.compute_only else ""
    if model.compute_only and options.variant != COMPUTE_ONLY:
        only += (f", the default for a transformer-shaped model ({model.shape}); --int8-io "
                 "quantizes every op")
    recipe = f"{name} ({about}{only}{io})"
    report = Quantization(
        mode=mode.value, tool=TOOL, recipe=recipe,
        calibration_samples=len(model.samples) if mode.calibrated else 0,
        held_back=options.holdout if mode.calibrated else 0, ops=tuple(ops),
        keep_float=tuple(model.labels[k] for k in kept),
        keep_float_auto=options.keep_float_auto, trials=trials,
        search_seconds=found.seconds if found else None,
        search_peak_mb=found.peak_mb if found else None,
        full_bytes=full_bytes, bytes=len(data), full_p50_ms=full_ms, p50_ms=shipped_ms,
        note=note)
    floats = f"; {len(kept)} op(s) kept float" if kept else ""
    return f"ai_edge_quantizer {recipe}{floats}", report


class _FloatModel:
    """The float model, its calibration (once) and the quantized models built from it."""

    def __init__(self, path: Path, inputs: list[TensorSpec], options: ConvertOptions) -> None:
        from ai_edge_litert.interpreter import Interpreter, OpResolverType

        from portkit.runtimes.binding import artifact_feeds, bind_inputs
        from portkit.runtimes.tflite import TfliteSession

        self.buffer = path.read_bytes()
        self.options = options
        self.mode = options.quantize
        # No delegate: XNNPACK would list the ops it takes as one DELEGATE node.
        interpreter = Interpreter(model_content=self.buffer, experimental_op_resolver_type=(
            OpResolverType.BUILTIN_WITHOUT_DEFAULT_DELEGATES))
        interpreter.allocate_tensors()
        self.signature = next(iter(interpreter.get_signature_list()), "serving_default")
        session = TfliteSession(interpreter)
        bindings = bind_inputs(inputs, session.inputs,
                               prefer_channels_last=options.variant == "nhwc-io")
        if options.calibration is not None:
            raw = load_calibration(options.calibration, inputs, options.holdout,
                                   options.allow_nonfinite)
        else:  # dynamic: nothing to calibrate; --keep-float auto judges on seeded inputs
            raw = [make_inputs(inputs, seed=i) for i in range(JUDGE_SAMPLES)]
        self.samples = [artifact_feeds(session, bindings, s) for s in raw]
        ops = [op for op in interpreter._get_ops_details() if len(op["outputs"])]
        details = {int(d["index"]): d for d in interpreter.get_tensor_details()}
        # Each op by its output tensor (what ai-edge-quantizer's recipes match) and by a short
        # label, its type and index in the float model (``CONV_2D#3``), which the table shows.
        self.op_names = [str(details[int(op["outputs"][0])]["name"]) for op in ops]
        self.labels = {name: f"{op['op_name']}#{op['index']}"
                       for name, op in zip(self.op_names, ops, strict=True)}
        types = [str(op["op_name"]) for op in ops]
        self.shape = transformer_shaped(types)
        # int8 compute for the linear layers only: asked for (the variant), or the default for a
        # transformer unless every op must be integer (--int8-io)
        self.compute_only = self.mode.calibrated and (
            options.variant == COMPUTE_ONLY or (bool(self.shape) and not options.int8_io))
        # what --keep-float auto may keep float: the ops the recipe quantizes
        self.candidates = [n for n, t in zip(self.op_names, types, strict=True)
                           if not self.compute_only or t in _COMPUTE_OPS]
        self._qsvs: dict[str, Any] | None = None

    def op_named(self, name: str) -> str:
        """The output tensor of the op ``--keep-float`` names, by its label (``CONV_2D#3``)
        or its output tensor's name.

        Raises:
            ConversionError: No op goes by that name in this route's float model.
        """
        by_label = {label: tensor for tensor, label in self.labels.items()}
        if name in by_label or name in self.labels:
            return by_label.get(name, name)
        shown = ", ".join(list(by_label)[:4])
        raise ConversionError(f"--keep-float {name}: no such op in this route's float model; "
                              f"name ops as the per-op error table does (e.g. {shown}) or by "
                              "their output tensor")

    def recipe(self, keep: Sequence[str]) -> Any:
        """The recipe for the mode (a ``RecipeManager``), with ``keep`` (op names) left
        float."""
        from ai_edge_quantizer import algorithm_manager, qtyping, recipe, recipe_manager

        no = algorithm_manager.AlgorithmName.NO_QUANTIZE
        op = qtyping.TFLOperationName
        manager = recipe_manager.RecipeManager()
        if not self.compute_only:
            manager.load_quantization_recipe(getattr(recipe, _RECIPES[self.mode][0])())
        else:
            for kind in _COMPUTE_OPS:
                manager.add_static_config(
                    regex=".*", operation_name=op(kind),
                    activation_num_bits=16 if self.mode is Quantize.INT16X8 else 8,
                    weight_num_bits=8,
                    algorithm_key=algorithm_manager.AlgorithmName.MIN_MAX_UNIFORM_QUANT)
        if self.mode is not Quantize.DYNAMIC and not self.options.int8_io:
            for edge in (op.INPUT, op.OUTPUT):  # float inputs and outputs
                manager.add_quantization_config(regex=".*", operation_name=edge,
                                                algorithm_key=no)
        for name in keep:  # an op's scope is its output tensors' names, each followed by ";"
            manager.add_quantization_config(regex="^" + re.escape(name) + ";",
                                            operation_name=op.ALL_SUPPORTED, algorithm_key=no)
        return manager

    def build(self, keep: Sequence[str]) -> bytes:
        """The model quantized with ``keep`` left float (calibrating once, on the first call)."""
        from ai_edge_quantizer import calibrator, quantizer
        from ai_edge_quantizer.utils import qsv_utils

        q = quantizer.Quantizer(bytearray(self.buffer),
                                self.recipe(keep).get_quantization_recipe())
        if self._qsvs is None and q.need_calibration:
            # Every op calibrated, whatever stays float: a float op's output that a quantized
            # op reads needs its range. Each tensor's range over every sample, as
            # TFLiteConverter calibrates: the default moving average of per-sample ranges
            # clips a trained model's largest activations and logits to about half.
            calibration = calibrator.Calibrator(self.buffer, num_threads=os.cpu_count() or 1,
                                                qsv_update_func=qsv_utils.min_max_update)
            calibration.calibrate({self.signature: [dict(s) for s in self.samples]},
                                  self.recipe([]))
            self._qsvs = calibration.get_model_qsvs()
        result = q.quantize(self._qsvs if q.need_calibration else None,
                            enable_progress_report=False)
        return bytes(result.quantized_model)

    def run(self, data: bytes, samples: Sequence[dict[str, np.ndarray]]
            ) -> list[dict[str, np.ndarray]]:
        """A model's outputs on ``samples`` (float feeds; quantized inputs are quantized)."""
        session = _session(data)
        return [session.run(dict(s)) for s in samples]

    def keep_float_auto(self, full: bytes, judge: Tolerance) -> Search:
        """The fewest ops kept float (of those the recipe quantizes) that make the model meet
        ``judge`` against the float model on calibration samples (``keep_float.search``: by
        scope, then by op); ``full`` is the model with none kept float."""
        from portkit.validators.parity import compare_outputs

        samples = self.samples[:JUDGE_SAMPLES]
        reference = self.run(self.buffer, samples)

        def fits(data: bytes) -> bool:
            rows = compare_outputs(reference, self.run(data, samples), judge)
            return all(r.passed for r in rows)

        return search(self.candidates, lambda keep: self.build(keep) if keep else full, fits)

    def op_errors(self, data: bytes) -> list[OpError]:
        """Every op's error in the quantized model ``data`` against the float one, on the
        first calibration samples, worst added first (``OpError``)."""
        from ai_edge_litert.interpreter import Interpreter, OpResolverType

        from portkit.runtimes.tflite import _quantize, _signature_names
        from portkit.runtimes.tflite_trace import dequantize

        def interpreter(content: bytes) -> Any:
            it = Interpreter(model_content=content, experimental_preserve_all_tensors=True,
                             experimental_op_resolver_type=(
                                 OpResolverType.BUILTIN_WITHOUT_DEFAULT_DELEGATES))
            it.allocate_tensors()
            return it

        flt, qnt = interpreter(self.buffer), interpreter(data)
        f_details = {int(d["index"]): d for d in flt.get_tensor_details()}
        q_index = {str(d["name"]): d for d in qnt.get_tensor_details()}
        ops = [op for op in flt._get_ops_details() if len(op["outputs"])]
        produced = {int(i) for op in ops for i in op["outputs"]}
        fed = {int(d["index"]) for d in flt.get_input_details()}
        squared: dict[int, float] = {}
        norms: dict[int, float] = {}
        for sample in self.samples[:OP_SAMPLES]:
            for it in (flt, qnt):
                names = _signature_names(it, "inputs")
                for detail in it.get_input_details():
                    value = sample[names.get(detail["index"], detail["name"])]
                    it.set_tensor(detail["index"], np.ascontiguousarray(_quantize(value, detail)))
                it.invoke()
            for index in produced | fed:
                name = str(f_details[index]["name"])
                if name not in q_index:
                    continue
                try:
                    f = flt.get_tensor(index).astype(np.float64)
                    q = dequantize(qnt.get_tensor(int(q_index[name]["index"])),
                                   q_index[name]).astype(np.float64)
                except ValueError:  # a tensor without data
                    continue
                if f.shape != q.shape:
                    continue
                squared[index] = squared.get(index, 0.0) + float(np.sum((q - f) ** 2))
                norms[index] = norms.get(index, 0.0) + float(np.sum(f ** 2))

        def error(index: int) -> float:
            return float(np.sqrt(squared[index] / max(norms[index], 1e-30)))

        found = []
        for op in ops:
            out = int(op["outputs"][0])
            if out not in squared:
                continue
            fed_errors = [error(int(i)) for i in op["inputs"] if int(i) in squared]
            name = str(f_details[out]["name"])
            quantized = np.dtype(q_index[name]["dtype"]).kind in "iu" and bool(
                len((q_index[name].get("quantization_parameters") or {}).get("scales", ())))
            found.append(OpError(self.labels[name], name, str(op["op_name"]), error(out),
                                 error(out) - max(fed_errors, default=0.0), quantized))
        return sorted(found, key=lambda o: -o.added)

    def time(self, models: Sequence[bytes]) -> tuple[float, float]:
        """Median latency of two models timed in turns (TFLite, one thread per core)."""
        from portkit.validators.latency import measure_interleaved

        sample = dict(self.samples[0])

        def load(data: bytes) -> Any:
            def loaded() -> Any:
                session = _session(data)
                return lambda: session.run(sample)
            return loaded

        first, second = measure_interleaved([load(m) for m in models], _TIMING,
                                            runtime="tflite", device="cpu",
                                            threads=os.cpu_count())
        return first.p50_ms, second.p50_ms


def transformer_shaped(op_types: Sequence[str]) -> str:
    """Why a float model is a transformer (its ops mostly matmuls over token sequences:
    attention's batch matmuls, and more linear layers than convolutions), in words; "" if
    not. Full int8 runs such a model 2.3 to 6 times slower than int8 linear layers with float
    attention (docs/quantize.md), so that is its default."""
    counts = {t: op_types.count(t) for t in ("BATCH_MATMUL", "FULLY_CONNECTED", "CONV_2D",
                                              "DEPTHWISE_CONV_2D")}
    convs = counts["CONV_2D"] + counts["DEPTHWISE_CONV_2D"]
    if not counts["BATCH_MATMUL"] or counts["FULLY_CONNECTED"] <= convs:
        return ""
    return (f"{counts['BATCH_MATMUL']} BATCH_MATMUL, {counts['FULLY_CONNECTED']} "
            f"FULLY_CONNECTED, {convs} conv")


def _session(data: bytes) -> Any:
    """A TFLite session on the model ``data`` (XNNPACK, one thread per core), as the tflite
    runtime loads artifacts."""
    from ai_edge_litert.interpreter import Interpreter

    from portkit.runtimes.tflite import TfliteSession

    interpreter = Interpreter(model_content=data, num_threads=os.cpu_count() or 1)
    interpreter.allocate_tensors()
    return TfliteSession(interpreter)
