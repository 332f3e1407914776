"""The library API: ``convert`` and ``inspect``. The CLI is a thin shell over these.

``convert`` runs load -> convert -> run -> compare -> report. Every step that touches a model runs
in a worker process; the artifact is staged beside its target and moved into place only after
the route that made it has finished, so an existing file is never half-overwritten.
"""

from __future__ import annotations

import contextlib
import dataclasses
import functools
import tempfile
import time
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from portkit.convert import registry as edges
from portkit.errors import ConversionError, InvalidModelError, PortkitError, UnsafeModelError, UsageError
from portkit.formats import TARGETS, Format, sniff
from portkit.io import atomic_replace, check_output_path, staging_dir
from portkit.runtimes import registry as runtimes
from portkit.runtimes import worker
from portkit.runtimes.base import ModelInfo
from portkit.runtimes.tasks import Reference
from portkit.convert.registry import Hop
from portkit.specs import (
    POLICIES,
    QUANTIZE_MODES,
    ConvertOptions,
    LoadOptions,
    TensorSpec,
    Tolerance,
    parse_input_flag,
)
from portkit.validators.parity import compare_outputs
from portkit.validators.latency import Budget, Latency
from portkit.validators.report import (
    Attempt,
    BenchReport,
    BenchRow,
    Check,
    ConvertReport,
    FileInfo,
    ValidateReport,
    versions,
)

Progress = Callable[[str], contextlib.AbstractContextManager[Any]]


def _no_progress(_message: str) -> contextlib.AbstractContextManager[Any]:
    return contextlib.nullcontext()


@dataclass(frozen=True)
class Inspection:
    """``portkit inspect``: a model's format, size, inputs, outputs and op histogram."""

    path: str
    size_bytes: int
    info: ModelInfo


def convert(
    source: str | Path | Any,
    to: str,
    output: str | Path | None = None,
    *,
    inputs: Sequence[str | TensorSpec] = (),
    inputs_file: str | Path | None = None,
    route: str | None = None,
    atol: float | None = None,
    rtol: float | None = None,
    validate: bool = True,
    seed: int = 0,
    timeout: float = worker.DEFAULT_TIMEOUT,
    progress: Progress = _no_progress,
    signature: str | None = None,
    trust_model: bool = False,
    quantize: str | None = None,
    calibration: str | Path | None = None,
    int8_io: bool = False,
    no_flex: bool = False,
    opset: int | None = None,
    samples: int | None = None,
    min_cosine: float | None = None,
    top_k_agreement: float | None = None,
    optimize: str | None = None,
    workers: worker.Pool | None = None,
) -> ConvertReport:
    """Convert a model to another format and prove the artifact matches its source.

    Routes are tried cheapest first until one produces an artifact that runs and matches the
    source on every runtime that loads it; every route tried is in the report. With
    ``optimize="latency"`` every route is tried, the artifacts that match are timed against
    each other, and the fastest is kept.

    Args:
        source: A model file, a SavedModel directory, or a ``torch.nn.Module``.
        to: Target format: ``onnx``, ``tflite``, ``savedmodel``, ``torchscript`` or ``pt2``.
        output: Where to write the artifact (default: beside the source, new suffix).
        inputs: Input specs ``NAME:1x3x224x224[:dtype]`` for shapes the model doesn't store.
        inputs_file: An ``.npz`` of input arrays to use instead of seeded random ones.
        route: Force one route by name (e.g. ``torch.onnx+onnx2tf``).
        atol: Absolute tolerance per element (default: by precision, see ``POLICIES``).
        rtol: Relative tolerance per element (default: by precision).
        validate: Run and compare the artifact (the default); False only converts.
        seed: Seed for generated inputs.
        timeout: Seconds each worker step (load, convert, run) may take.
        progress: ``progress(message)`` returns a context manager around each long step.
        signature: SavedModel signature of the source (default ``serving_default``).
        trust_model: Load Keras Lambda layers and custom objects (they run code).
        quantize: TFLite quantization: ``fp16``, ``dynamic``, ``int8`` or ``int16x8``.
        calibration: Representative inputs for ``int8``/``int16x8`` (``.npz`` or ``.npy`` folder).
        int8_io: With ``int8``, make the model's inputs and outputs int8 too.
        no_flex: Fail rather than write a TFLite model that needs the Flex runtime.
        opset: ONNX opset for the converters that take one (default: their newest).
        samples: How many inputs to compare on (default: by precision; 32 when quantized).
        min_cosine: Lowest cosine similarity that passes (default: by precision).
        top_k_agreement: Lowest top-1 agreement (0-1) for classifier-like outputs.
        optimize: ``latency``: try every route, ship the fastest artifact that matches.
        workers: Warm workers to run artifacts in, kept across calls (one per runtime; the
            source is always run and converted in this call's own workers).

    Returns:
        The report; ``report.exit_code`` says whether it converted and matched.

    Raises:
        PortkitError: Bad arguments or input file, or no route converted (exit code on it).
    """
    started = time.perf_counter()
    target = _target(to)
    given = [parse_input_flag(s) if isinstance(s, str) else s for s in inputs]
    options = _options(target, signature, trust_model, quantize, calibration, int8_io, no_flex,
                       opset)
    _check_optimize(optimize, route, validate)
    tol = _policy(quantize, atol, rtol, samples, min_cosine, top_k_agreement)
    with contextlib.ExitStack() as stack:
        if not isinstance(source, (str, Path)):
            source = _export_module(source, given, stack)
        src = Path(source).absolute()  # workers run in their own directories
        fmt = sniff(src)
        shown = FileInfo(str(src), fmt.value)  # the user's file, even if exported first
        if fmt is Format.TORCH_PICKLE and trust_model:
            src, fmt = _export_trusted_pickle(src, given, timeout, stack, progress)
        _refuse_unconvertible(src, fmt, target)
        routes = _routes(fmt, target, quantize, route, optimize)
        if not routes:
            what = f"{quantize}-quantized " if quantize else ""
            raise ConversionError(
                f"{src}: no converter goes from {fmt.value} to {what}{target.value} yet")
        out = Path(output) if output is not None else src.with_suffix(target.suffix)
        check_output_path(out)
        if out.resolve() == src.resolve():
            raise UsageError(f"-o {out}: that is the source model; choose another path")
        stage = stack.enter_context(staging_dir(out.absolute()))  # checks -o before any work
        background = stack.enter_context(ThreadPoolExecutor(max_workers=1))
        pool = stack.enter_context(worker.Pool())  # closed first: stops a reference still running
        runners = workers if workers is not None else pool
        # The reference runs in its own worker beside the first conversion hop.
        ref = _Reference(background.submit(
            pool.call, "reference", "portkit.runtimes.tasks:reference", timeout=timeout,
            what=str(src), path=str(src), fmt=fmt, given=given,
            inputs_file=str(Path(inputs_file).absolute()) if inputs_file else None, seed=seed,
            samples=tol.samples, options=options.load,
        ), progress, src.name, from_file=inputs_file is not None)
        hops = _Hops(pool, timeout, progress, src.name, given)
        attempts: list[Attempt] = []
        produced: list[Path] = []
        for i, r in enumerate(routes):
            attempt, path = _try_route(r, src, fmt, stage / f"route{i}", ref, tol, options,
                                       validate, timeout, progress, runners, hops)
            attempts.append(attempt)
            produced.append(path)
            if not optimize and (attempt.ok or (attempt.converted and not validate)):
                break
        reference = ref.get()  # its error (a bad input, an unsafe model) outranks the routes'
        if optimize:
            attempts = _time_routes(attempts, produced, target, reference, runners, timeout,
                                    progress)
        chosen = _choose(attempts)
        artifact = None
        if chosen is not None:
            atomic_replace(produced[chosen], out)
            artifact = FileInfo.of(out, target.value)
        best = attempts[chosen] if chosen is not None else None
        return ConvertReport(
            passed=bool(best and best.ok),
            validated=validate,
            source=shown,
            target=target.value,
            artifact=artifact,
            route=best.hops if best else (),
            routes_tried=tuple(attempts),
            checks=best.checks if best else (),
            inputs=reference.inputs,
            tolerance=tol,
            seed=seed,
            seconds=time.perf_counter() - started,
            versions=versions(),
            quantize=quantize,
            mobile=best.mobile if best else None,
            optimize=optimize,
            converter_seconds=hops.seconds,
            route_name=best.route if best else None,
        )


def _routes(fmt: Format, target: Format, quantize: str | None, route: str | None,
            optimize: str | None) -> list[edges.Route]:
    """The routes to try: the one named, every route and variant (optimizing), or every route
    with its edges' defaults.

    Raises:
        UsageError: ``route`` names no planned route.
    """
    planned = edges.plan(fmt, target, quantize=quantize is not None, variants=True)
    if route is not None or optimize:
        return edges.pick(planned, route)
    return [r for r in planned if r.variant is None]


def _check_optimize(optimize: str | None, route: str | None, validate: bool) -> None:
    if optimize is None:
        return
    if optimize != "latency":
        raise UsageError(f"--optimize {optimize}: the one goal so far is latency")
    if route is not None:
        raise UsageError("--optimize tries every route: drop --route")
    if not validate:
        raise UsageError("--optimize keeps only artifacts that match their source: "
                         "drop --no-validate")


def _choose(attempts: list[Attempt]) -> int | None:
    """The attempt to ship: the fastest that matched (when timed), else the first that matched,
    else the first that converted (its report says why it failed), else none."""
    ok = [i for i, a in enumerate(attempts) if a.ok]
    timed = [i for i in ok if attempts[i].latency is not None]
    if timed:
        return min(timed, key=lambda i: attempts[i].latency.p50_ms)  # type: ignore[union-attr]
    converted = [i for i, a in enumerate(attempts) if a.converted]
    return (ok or converted or [None])[0]


def _time_routes(attempts: list[Attempt], produced: list[Path], target: Format, ref: Reference,
                 pool: worker.Pool, timeout: float, progress: Progress) -> list[Attempt]:
    """Time the artifacts that matched against each other on the target's first runtime (TFLite:
    one thread per core); each attempt gets its latency."""
    ok = [i for i, a in enumerate(attempts) if a.ok]
    if not ok:
        return attempts
    rt = runtimes.for_format(target)[0]
    with progress(f"Timing {len(ok)} matching artifact(s) on {rt.name}"):
        timings = time_together([produced[i] for i in ok], target, rt.name, ref,
                                channels_last=any(attempts[i].channels_last for i in ok),
                                timeout=timeout, pool=pool)
    timed = list(attempts)
    for i, latency in zip(ok, timings, strict=True):
        if isinstance(latency, Latency):
            timed[i] = dataclasses.replace(attempts[i], latency=latency)
    return timed


def time_together(paths: Sequence[Path], fmt: Format, runtime: str, ref: Reference, *,
                  threads: int | None = None, channels_last: bool = False,
                  budget: Budget = Budget(), timeout: float = worker.DEFAULT_TIMEOUT,
                  pool: worker.Pool | None = None) -> list[Latency | str]:
    """Time artifacts of one source against each other, in turns in one worker, on the
    reference's first sample; one that fails there is timed again alone in a fresh worker.

    Args:
        paths: The artifacts (all of ``fmt``).
        fmt: Their format.
        runtime: The runtime to time them on (CPU).
        ref: The reference whose first sample they are fed, mapped to each one's inputs.
        threads: CPU threads (None: the runtime's default; TFLite one per core).
        channels_last: Map channels-first reference inputs to channels-last where both fit.
        budget: Warm-up, runs and seconds per artifact.
        timeout: Seconds the timing may take.
        pool: A warm worker pool to time in (its worker named after the runtime).

    Returns:
        Per artifact its latency, or why it could not be timed.
    """
    def bench(chosen: Sequence[Path], warm: worker.Pool | None) -> list[Latency | str]:
        kwargs = dict(timeout=timeout, what=f"timing on {runtime}", paths=[str(p) for p in chosen],
                      fmt=fmt, runtime=runtime, device="cpu", sample=ref.feeds[0],
                      specs=list(ref.inputs), budget=budget, prefer_channels_last=channels_last,
                      options=LoadOptions(threads=threads))
        if warm is not None:
            return warm.call(runtime, "portkit.runtimes.tasks:bench_candidates", **kwargs)
        return worker.call("portkit.runtimes.tasks:bench_candidates", **kwargs)

    results = bench(paths, pool)
    for i, result in enumerate(results):
        if isinstance(result, str) and len(paths) > 1:
            results[i] = bench([paths[i]], None)[0]
    return results


def inspect(path: str | Path, *, timeout: float = worker.DEFAULT_TIMEOUT,
            signature: str | None = None, trust_model: bool = False) -> Inspection:
    """Describe a model file: format, inputs, outputs and op counts (loaded in a worker); for a
    ``.tflite``, its mobile report (Flex ops, quantization, layout).

    Raises:
        PortkitError: The file is missing, unknown or cannot be loaded.
    """
    src = Path(path).absolute()
    fmt = sniff(src)
    _refuse_unconvertible(src, fmt, None)
    info: ModelInfo = worker.call("portkit.runtimes.tasks:describe", timeout=timeout,
                                  what=str(src), path=str(src), fmt=fmt,
                                  options=LoadOptions(signature, trust_model))
    size = FileInfo.of(src, fmt.value).size_bytes
    return Inspection(str(src), size, info)


def validate(
    artifact: str | Path,
    reference: str | Path,
    *,
    runtimes_: Sequence[str] = (),
    inputs: Sequence[str | TensorSpec] = (),
    inputs_file: str | Path | None = None,
    atol: float | None = None,
    rtol: float | None = None,
    min_cosine: float | None = None,
    top_k_agreement: float | None = None,
    samples: int | None = None,
    per_output: Mapping[str, Tolerance] | None = None,
    min_top5: float | None = None,
    seed: int = 0,
    timeout: float = worker.DEFAULT_TIMEOUT,
    signature: str | None = None,
    trust_model: bool = False,
    save_bundle: str | Path | None = None,
    progress: Progress = _no_progress,
    workers: worker.Pool | None = None,
) -> ValidateReport:
    """Run an artifact on every runtime and device that loads it and compare with a reference.

    Devices a runtime has elsewhere but not here (CUDA, a TensorFlow GPU) are reported as
    skipped, with the reason.

    Args:
        artifact: The converted model.
        reference: The model it was converted from (run as the reference).
        runtimes_: Restrict to these runtime names (default: every runtime for the format).
        inputs: Input specs for shapes the reference doesn't store.
        inputs_file: An ``.npz`` of inputs (samples on an extra leading axis).
        atol, rtol, min_cosine, top_k_agreement, samples, min_top5: Override the fp32 policy's
            numbers (``top_k_agreement`` is the lowest top-1 agreement).
        per_output: Tolerances for some outputs by reference output name.
        seed: Seed of generated inputs.
        timeout: Seconds each worker step may take.
        signature: SavedModel signature of the reference.
        trust_model: Let the reference run code on load (Keras Lambda layers).
        save_bundle: Also write a reproducibility bundle here (see ``replay``).
        progress: ``progress(message)`` context managers around each step.
        workers: Warm workers to run the artifact in, kept across calls (one per runtime).

    Returns:
        The report; ``report.exit_code`` is 0 when every run matched.

    Raises:
        PortkitError: Bad arguments or model files.
    """
    started = time.perf_counter()
    art, src = Path(artifact).absolute(), Path(reference).absolute()
    art_fmt, src_fmt = sniff(art), sniff(src)
    for path, fmt in ((art, art_fmt), (src, src_fmt)):
        _refuse_unconvertible(path, fmt, None)
    tol = _policy(None, atol, rtol, samples, min_cosine, top_k_agreement, min_top5)
    chosen = _runtimes_for(art_fmt, runtimes_)
    given = [parse_input_flag(s) if isinstance(s, str) else s for s in inputs]
    with progress(f"Running {src.name} as the reference"):
        ref: Reference = worker.call(
            "portkit.runtimes.tasks:reference", timeout=timeout, what=str(src),
            path=str(src), fmt=src_fmt, given=given,
            inputs_file=str(Path(inputs_file).absolute()) if inputs_file else None, seed=seed,
            samples=tol.samples, options=LoadOptions(signature, trust_model),
        )
    outputs: dict[str, tuple[dict[str, Any], ...]] = {}
    checks = _run_everywhere(art, art_fmt, chosen, ref, tol, per_output, timeout, progress,
                             outputs, workers)
    ran = [c for c in checks if not c.skipped]
    report = ValidateReport(
        passed=bool(ran) and all(c.passed for c in ran),
        reference=FileInfo.of(src, src_fmt.value), artifact=FileInfo.of(art, art_fmt.value),
        checks=tuple(checks), inputs=ref.inputs, tolerance=tol,
        per_output=dict(per_output or {}), seed=seed, seconds=time.perf_counter() - started,
        versions=versions(),
    )
    if save_bundle is not None:
        from portkit.validators import bundle

        bundle.save(Path(save_bundle), report, ref, outputs, art)
    return report


def replay(bundle_dir: str | Path, *, runtimes_: Sequence[str] = (),
           timeout: float = worker.DEFAULT_TIMEOUT,
           progress: Progress = _no_progress) -> ValidateReport:
    """Rerun a bundle's artifact on its stored inputs and compare with the stored reference
    outputs, under the stored tolerances (the reference model is not needed).

    Raises:
        PortkitError: Not a bundle, or its artifact can't be loaded.
    """
    from portkit.validators import bundle

    started = time.perf_counter()
    art, fmt, ref, tol, per_output, manifest = bundle.load(Path(bundle_dir))
    checks = _run_everywhere(art, fmt, _runtimes_for(fmt, runtimes_), ref, tol, per_output,
                             timeout, progress, None)
    ran = [c for c in checks if not c.skipped]
    return ValidateReport(
        passed=bool(ran) and all(c.passed for c in ran),
        reference=FileInfo(**manifest["reference"]), artifact=FileInfo.of(art, fmt.value),
        checks=tuple(checks), inputs=ref.inputs, tolerance=tol, per_output=per_output,
        seed=int(manifest["seed"]), seconds=time.perf_counter() - started, versions=versions(),
    )


def _runtimes_for(fmt: Format, names: Sequence[str]) -> list[runtimes.Runtime]:
    """The runtimes loading ``fmt`` (only those named, if any).

    Raises:
        UsageError: A named runtime doesn't load ``fmt``.
    """
    every = runtimes.for_format(fmt)
    unknown = set(names) - {rt.name for rt in every}
    if unknown:
        raise UsageError(f"--runtime {', '.join(sorted(unknown))}: does not load {fmt.value} "
                         f"models; runtimes for it: {', '.join(rt.name for rt in every)}")
    return [rt for rt in every if not names or rt.name in names]


def _run_everywhere(art: Path, fmt: Format, chosen: list[runtimes.Runtime], ref: Reference,
                    tol: Tolerance, per_output: Mapping[str, Tolerance] | None, timeout: float,
                    progress: Progress,
                    outputs: dict[str, tuple[dict[str, Any], ...]] | None,
                    workers: worker.Pool | None = None) -> list[Check]:
    """Checks on every device of every chosen runtime; devices missing here are skipped rows."""
    checks: list[Check] = []
    with contextlib.ExitStack() as stack:
        pool = workers if workers is not None else stack.enter_context(worker.Pool())
        for rt in chosen:
            checks += _checks(art, fmt, rt, ref, tol, _layout_changed(ref, fmt), timeout,
                              progress, pool, per_output, outputs)
            here = {c.device for c in checks if c.runtime == rt.name}
            checks += [Check(rt.name, d, False, skipped=rt.unavailable(d))
                       for d in rt.all_devices if d not in here]
    return checks


def bench(
    models: Sequence[str | Path],
    *,
    runtimes_: Sequence[str] = (),
    inputs: Sequence[str | TensorSpec] = (),
    threads: int | None = None,
    batch: int | None = None,
    budget: Budget = Budget(),
    timeout: float = worker.DEFAULT_TIMEOUT,
    progress: Progress = _no_progress,
) -> BenchReport:
    """Latency of each model on each runtime that loads it (one fresh worker per measurement).

    Args:
        models: Model files (e.g. several artifacts of one model).
        runtimes_: Restrict to these runtime names.
        inputs: Input specs for shapes a model doesn't store.
        threads: CPU threads per runtime (default: the runtime's own; TFLite one per core).
        batch: Batch size to feed (replaces the first dimension).
        budget: Warm-up runs, minimum timed runs and seconds.
        timeout: Seconds each measurement may take.
        progress: ``progress(message)`` context managers around each step.

    Returns:
        Rows per model and runtime, with p50 ratios against the first model's.

    Raises:
        PortkitError: A model can't be read, or no runtime loads it.
    """
    given = [parse_input_flag(s) if isinstance(s, str) else s for s in inputs]
    rows: list[BenchRow] = []
    for model in models:
        path = Path(model).absolute()
        fmt = sniff(path)
        _refuse_unconvertible(path, fmt, None)
        chosen = [rt for rt in runtimes.for_format(fmt) if not runtimes_ or rt.name in runtimes_]
        if not chosen:
            raise UsageError(f"{path}: no runtime among {', '.join(runtimes_)} loads "
                             f"{fmt.value} models")
        for rt in chosen:
            with progress(f"Timing {path.name} on {rt.name}"):
                latency: Latency = worker.call(
                    "portkit.runtimes.tasks:bench", timeout=timeout, what=f"{path.name} on {rt.name}",
                    path=str(path), fmt=fmt, runtime=rt.name, device="cpu",
                    given=given, batch=batch, budget=budget, options=LoadOptions(threads=threads),
                )
            rows.append(BenchRow(str(path), fmt.value, latency))
    return BenchReport(tuple(rows), budget, versions())


def _layout_changed(ref: Reference, fmt: Format) -> bool:
    """Whether an artifact of this format likely went channels-last (TFLite/SavedModel)."""
    return fmt in (Format.TFLITE, Format.SAVEDMODEL) and any(
        len(s.shape or ()) == 4 and (s.shape or (0, 0))[1] in (1, 3, 4) for s in ref.inputs)


def _target(to: str) -> Format:
    try:
        return TARGETS[to.lower()]
    except KeyError:
        raise UsageError(f"--to {to}: unknown target; one of {', '.join(TARGETS)}") from None


def _options(target: Format, signature: str | None, trust_model: bool, quantize: str | None,
             calibration: str | Path | None, int8_io: bool, no_flex: bool,
             opset: int | None) -> ConvertOptions:
    """Check the flags that only make sense together and build the converters' options."""
    if quantize is not None:
        if quantize not in QUANTIZE_MODES:
            raise UsageError(f"--quantize {quantize}: one of {', '.join(QUANTIZE_MODES)}")
        if target is not Format.TFLITE:
            raise UsageError(f"--quantize {quantize}: quantization is for --to tflite")
        if quantize in ("int8", "int16x8") and calibration is None:
            raise UsageError(
                f"--quantize {quantize} needs calibration data: pass --calibration data.npz "
                "(or a folder of .npy files) holding ~100 representative inputs; portkit never "
                "calibrates on random data"
            )
    if calibration is not None:
        if quantize not in ("int8", "int16x8"):
            raise UsageError("--calibration is for --quantize int8 or int16x8")
        if not Path(calibration).exists():
            raise UsageError(f"--calibration {calibration}: no such file or folder")
        calibration = str(Path(calibration).absolute())
    if int8_io and quantize != "int8":
        raise UsageError("--int8-io is for --quantize int8")
    if no_flex and target is not Format.TFLITE:
        raise UsageError("--no-flex is for --to tflite")
    return ConvertOptions(LoadOptions(signature, trust_model), quantize,
                          None if calibration is None else str(calibration), int8_io, no_flex,
                          opset)


def _policy(quantize: str | None, atol: float | None, rtol: float | None,
            samples: int | None, min_cosine: float | None = None,
            top_k_agreement: float | None = None, min_top5: float | None = None) -> Tolerance:
    """The precision's default policy, with the tolerances the user set."""
    policy = POLICIES[quantize or "fp32"]
    changes: dict[str, Any] = {}
    for key, value in (("atol", atol), ("rtol", rtol), ("min_cosine", min_cosine),
                       ("min_top1", top_k_agreement), ("min_top5", min_top5)):
        if value is not None:
            changes[key] = value
    if samples is not None:
        if samples < 1:
            raise UsageError(f"--samples {samples}: must be at least 1")
        changes["samples"] = samples
    return dataclasses.replace(policy, **changes)


def _refuse_unconvertible(src: Path, fmt: Format, target: Format | None) -> None:
    if fmt is Format.STATE_DICT:
        raise InvalidModelError(
            f"{src}: holds only weights (a state_dict), not the model's code; save the model with "
            "torch.export.save(torch.export.export(model, args), 'model.pt2') or "
            "torch.jit.save(torch.jit.trace(model, args), 'model.pt')"
        )
    if fmt is Format.TORCH_PICKLE:
        raise UnsafeModelError(
            f"{src}: a pickled Python object, which runs code when loaded; save it as .pt2 "
            "(torch.export.save) or TorchScript (torch.jit.save), or, if you trust this file, "
            "pass --trust-model (it is unpickled in a worker)"
        )
    if target is not None and fmt is target:
        raise UsageError(f"{src}: already {fmt.value}; pick another --to")


class _Reference:
    """The source run on the inputs, in a worker of its own beside the first conversion hop;
    ``get`` waits for it."""

    def __init__(self, job: Future[Reference], progress: Progress, name: str,
                 from_file: bool) -> None:
        self._job, self._progress, self._name = job, progress, name
        self.from_file = from_file  # input shapes come from --inputs: hops must wait for them

    def get(self) -> Reference:
        """The reference (raises what its worker raised)."""
        if not self._job.done():
            with self._progress(f"Running {self._name} as the reference (beside the conversion)"):
                return self._job.result()
        return self._job.result()


class _Hops:
    """Runs conversion hops in warm workers, once per route prefix: routes that start alike
    (``torch.onnx+onnx2tf`` and ``torch.onnx+onnx2tf+tflite-converter``) share the first hops'
    artifacts. Counts the converters' own seconds (the report's overhead is the rest)."""

    def __init__(self, pool: worker.Pool, timeout: float, progress: Progress, name: str,
                 given: list[TensorSpec]) -> None:
        self._pool, self._timeout, self._progress, self._name = pool, timeout, progress, name
        self._given = given
        self._done: dict[tuple[tuple[edges.Edge, ...], str | None],
                         tuple[Path, Hop] | PortkitError] = {}
        self._failed_seconds = 0.0

    @property
    def seconds(self) -> float:
        """The converters' own time: inside each hop that converted, wall time of those that
        failed."""
        return self._failed_seconds + sum(
            d[1].seconds for d in self._done.values() if not isinstance(d, PortkitError))

    def run(self, route: tuple[edges.Edge, ...], src: Path, fmt: Format, dst: Path,
            inputs: list[TensorSpec] | None, options: ConvertOptions) -> tuple[Path, Hop]:
        """The last edge of ``route`` run on ``src`` (the previous hops' artifact) with
        ``options`` (its variant, if any, is part of what is shared).

        Raises:
            PortkitError: The converter failed (now, or when another route ran this prefix).
        """
        key = (route, options.variant)
        if key in self._done:
            done = self._done[key]
            if isinstance(done, PortkitError):
                raise done
            return done
        edge = route[-1]
        name = f"convert-from-{fmt.value}"  # hops from one format share a warm worker
        started = time.perf_counter()
        try:
            beside = "; the source runs as the reference beside it" if inputs is None else ""
            with self._progress(f"Converting with {edge.tool} ({fmt.value} -> "
                                f"{edge.target.value}{beside})"):
                hop: Hop = self._pool.call(
                    name, "portkit.convert.registry:run_edge", timeout=self._timeout,
                    what=f"{edge.tool} on {self._name}", tool=edge.tool, target=edge.target,
                    src=str(src), src_format=fmt, dst=str(dst), inputs=inputs, options=options,
                    given=self._given,
                )
        except PortkitError as e:
            self._failed_seconds += time.perf_counter() - started
            self._pool.discard(name)  # a converter that failed may have left state behind
            self._done[key] = e
            raise
        self._done[key] = (dst, hop)
        return dst, hop


def _try_route(route: edges.Route, src: Path, fmt: Format, folder: Path, ref: _Reference,
               tol: Tolerance, options: ConvertOptions, validate: bool, timeout: float,
               progress: Progress, pool: worker.Pool, hops_run: _Hops) -> tuple[Attempt, Path]:
    folder.mkdir()
    current, current_fmt = src, fmt
    hops = []
    for j, edge in enumerate(route.edges):
        dst = folder / f"hop{j}{edge.target.suffix}"
        hop_options = options if j == 0 else dataclasses.replace(options, load=LoadOptions())
        if j == len(route.edges) - 1 and route.variant is not None:
            hop_options = dataclasses.replace(hop_options, variant=route.variant.name)
        # A first hop reads the source's inputs itself, so it need not wait for the reference.
        inputs = None if j == 0 and not ref.from_file else list(ref.get().inputs)
        try:
            current, hop = hops_run.run(route.edges[:j + 1], current, current_fmt, dst, inputs,
                                        hop_options)
        except PortkitError as e:
            return Attempt(route.name, False, False, f"{edge.tool}: {e}", tuple(hops),
                           channels_last=route.channels_last), dst
        hops.append(hop)
        current_fmt = edge.target
    attempt = functools.partial(Attempt, route.name, hops=tuple(hops),
                                channels_last=route.channels_last)
    mobile = None
    if current_fmt is Format.TFLITE:
        mobile = pool.call("tflite", "portkit.validators.mobile:mobile_report", timeout=timeout,
                           what=str(current), path=current)
    if not validate:
        try:  # the post-condition every artifact meets: it reloads in a fresh worker
            worker.call("portkit.runtimes.tasks:describe", timeout=timeout, what=str(current),
                        path=str(current), fmt=current_fmt)
        except PortkitError as e:
            return attempt(False, False, f"does not reload: {e}"), current
        return attempt(True, False, "not validated (--no-validate)", mobile=mobile), current
    if mobile is not None and not mobile.builtin_only:
        needs = ", ".join(mobile.flex_ops + mobile.custom_ops)
        check = Check("tflite", "cpu", False, error=(
            f"not run: needs the Flex runtime or custom kernels for {needs}, which "
            "ai_edge_litert's interpreter lacks; run it where the Flex delegate is linked, "
            "or convert with --no-flex"))
        return attempt(True, False, _failure(check), checks=(check,), mobile=mobile), current
    reference = ref.get()
    checks = tuple(c for rt in runtimes.for_format(current_fmt)
                   for c in _checks(current, current_fmt, rt, reference, tol,
                                    route.channels_last, timeout, progress, pool))
    failed = [c for c in checks if not c.passed]
    error = "; ".join(_failure(c) for c in failed) if failed else None
    return attempt(True, not failed, error, checks=checks, mobile=mobile), current


def _checks(artifact: Path, fmt: Format, runtime: runtimes.Runtime, ref: Reference,
            tol: Tolerance, channels_last: bool, timeout: float, progress: Progress,
            pool: worker.Pool, per_output: Mapping[str, Tolerance] | None = None,
            outputs: dict[str, tuple[dict[str, Any], ...]] | None = None) -> list[Check]:
    """Run the artifact on every device of one runtime (one worker) and compare each run."""
    try:
        with progress(f"Running the artifact on {runtime.name}"):
            runs = pool.call(
                runtime.name, "portkit.runtimes.tasks:run_artifact_everywhere", timeout=timeout,
                what=f"{artifact.name} on {runtime.name}", path=str(artifact),
                fmt=fmt, runtime=runtime.name, feeds=ref.feeds, specs=list(ref.inputs),
                prefer_channels_last=channels_last,
            )
    except PortkitError as e:
        return [Check(runtime.name, "cpu", False, error=str(e))]
    checks = []
    for device, run in runs:
        if isinstance(run, str):
            checks.append(Check(runtime.name, device, False, error=run))
            continue
        if outputs is not None:
            outputs[f"{runtime.name}-{device}"] = run.outputs
        rows = tuple(compare_outputs(ref.outputs, run.outputs, tol, per_output))
        notes = tuple(f"{b.source}: {b.layout_note}" for b in run.bindings if b.layout_note)
        checks.append(Check(runtime.name, device, all(r.passed for r in rows), rows, notes,
                            run.seconds))
    return checks


def _failure(check: Check) -> str:
    if check.error:
        return f"{check.runtime}/{check.device}: {check.error}"
    worst = max((o for o in check.outputs if not o.passed), key=lambda o: o.max_abs_err)
    if worst.error:
        return f"{check.runtime}/{check.device}: output {worst.name}: {worst.error}"
    found = [f"max abs err {worst.max_abs_err:.3g} (would pass with atol "
             f"{worst.min_atol_to_pass:.3g})"]
    if "cosine" in worst.failed:
        found.append(f"cosine {worst.cosine:.4f}")
    if "top-1" in worst.failed:
        found.append(f"top-1 agreement {worst.top1:.0%}")
    if "top-5" in worst.failed:
        found.append(f"top-5 agreement {worst.top5:.0%}")
    return f"{check.runtime}/{check.device}: output {worst.name} " + ", ".join(found)


def _export_trusted_pickle(src: Path, given: list[TensorSpec], timeout: float,
                           stack: contextlib.ExitStack,
                           progress: Progress) -> tuple[Path, Format]:
    """``--trust-model`` on a pickled module: unpickle it in a worker and save it as ``.pt2``."""
    if not given or not all(s.is_static for s in given):
        raise UsageError(f"{src}: a pickled module stores no input shapes; pass --input "
                         "NAME:SHAPE for every input")
    folder = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="portkit-pickle-")))
    dst = folder / f"{src.stem}.pt2"
    with progress(f"Unpickling {src.name} (--trust-model) and exporting it"):
        worker.call("portkit.convert._torch:export_pickled_module", timeout=timeout,
                    what=str(src), src=str(src), dst=str(dst), inputs=given)
    return dst, Format.EXPORTED_PROGRAM


def _export_module(module: Any, given: list[TensorSpec], stack: contextlib.ExitStack) -> Path:
    """Save an ``nn.Module`` as an ExportedProgram (``.pt2``) in a temporary folder."""
    import torch

    from portkit.convert._torch import example_args

    if not given or not all(s.is_static for s in given):
        raise UsageError("convert(module, ...): pass inputs=['x:1x3x224x224', ...] for every input")
    folder = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="portkit-module-")))
    path = folder / f"{type(module).__name__}.pt2"
    specs = [TensorSpec(s.name, s.shape, s.dtype or "float32") for s in given]
    torch.export.save(torch.export.export(module.eval(), example_args(specs)), str(path))
    return path

