"""Running a conversion: plan the routes, run them cheapest first (or all, optimizing), check
each artifact, and move the one to ship into place.

Every step that touches a model runs in one of the context's workers, each named for what it
runs, so a caller that keeps them warm across conversions (``portkit check``, a test session)
imports each framework once: the reference (one worker per source framework) beside the first
conversion hop, hops (one worker per source format; routes that start alike share their first
hops), artifacts (one per runtime). A converter that fails has its worker stopped, as does a
reference still running when the conversion stops. The artifact is staged beside its target and
moved into place only after the route that made it has finished, so an existing file is never
half-overwritten.
"""

from __future__ import annotations

import contextlib
import dataclasses
import time
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path
from typing import Any

from portkit.convert import constants, dynamic, registry, representative
from portkit.convert._torch import export_pickled_module, module_inputs, save_exported
from portkit.convert.baseline import source_onnx
from portkit.errors import ConversionError, DimensionsFixedError, PortkitError, UsageError
from portkit.formats import Format, sniff
from portkit.io import (
    Folder,
    Output,
    atomic_replace,
    check_outputs,
    failed_path,
    owned_tempdir,
    staging_dir,
)
from portkit.options import ConvertJob, ConvertOptions, LoadOptions, shown
from portkit.results import (
    Attempt,
    Check,
    ConvertReport,
    FileInfo,
    Hop,
    Latency,
    versions,
)
from portkit.runtimes import registry as runtimes
from portkit.runtimes import tasks, worker
from portkit.runtimes.context import Progress, RunContext
from portkit.runtimes.tasks import Reference
from portkit.safety import refuse_unloadable
from portkit.shapes import Shapes
from portkit.specs import TensorSpec
from portkit.validators.accuracy import judge
from portkit.validators.checks import (
    Expected,
    check_runtime,
    ranking_only,
    reference_worker,
    run_reference,
    why_failed,
)
from portkit.validators.latency import time_together
from portkit.validators.slowness import check_speed


def convert(job: ConvertJob, ctx: RunContext) -> ConvertReport:
    """Convert ``job.source`` and prove the artifact matches it (see ``portkit.api.convert``).

    Args:
        job: What to convert, where to, and how to judge it.
        ctx: The workers everything runs in (the caller may keep them warm across calls), the
            timeout of each step, and progress.

    Returns:
        The report; ``report.exit_code`` says whether it converted and matched.

    Raises:
        PortkitError: Bad arguments or input file, or no route converted (exit code on it).
    """
    started = time.perf_counter()
    with contextlib.ExitStack() as stack:
        src = job.source.absolute()  # workers run in their own directories
        fmt = sniff(src)
        if fmt is job.target:  # said before -o's default (the source itself) is refused
            raise UsageError(f"{src}: already {fmt.value}; pick another --to")
        trusted_pickle = fmt is Format.TORCH_PICKLE and job.options.load.trust_model
        if not trusted_pickle:  # the input's own error outranks the outputs'
            refuse_unloadable(src, fmt)
        out = check_paths(job)  # before any worker runs
        job = representative.judged_on(job)
        shown = FileInfo(str(src), fmt.value)  # the user's file, even if exported first
        if trusted_pickle:
            src, fmt, left = _export_trusted_pickle(src, job, stack, ctx)
            # The .pt2 holds the shapes, under forward's own argument names.
            job = dataclasses.replace(job, inputs=(), shapes=left)
            refuse_unloadable(src, fmt)
        if job.constants:
            constants.check_format(src, fmt)
        if fmt is job.target:
            raise UsageError(f"{src}: already {fmt.value}; pick another --to")
        # An --opset no route writes is refused before any worker starts; routes that can't
        # write it are dropped, with the reason, once the preparations are known.
        registry.by_opset(registry.plan(fmt, job.target, quantize=job.options.quantize),
                          job.options.opset)
        routes, dropped = registry.by_opset(plan(fmt, job, _preparations(src, fmt, job, ctx)),
                                            job.options.opset)
        if not routes:
            what = f"{job.options.quantize.value}-quantized " if job.options.quantize else ""
            raise ConversionError(
                f"{src}: no converter goes from {fmt.value} to {what}{job.target.value} yet")
        stage = stack.enter_context(staging_dir(out.absolute()))
        tries = _Tries(src, fmt, routes, stage, ctx, stack,
                       stack.enter_context(ThreadPoolExecutor(max_workers=1)))
        ref = tries.reference(job)
        prepared, preparation = src, None
        if job.constants:  # the routes convert the source with its constants bound
            prepared, preparation = _bind_constants(src, fmt, job, stack, ctx)
        conversion, attempts, produced = tries.run(job, prepared, ref, "route")
        reference = ref.get()  # its error (a bad input, an unsafe model) outranks the routes'
        converter_seconds = conversion.converter_seconds
        fixed = None  # dynamic dimensions no route kept, which the user did not ask for
        if (shapes := dynamic.fallback(job.shapes, job.inputs, reference.inputs, attempts,
                                       job.validate)) is not None:
            fixed = dynamic.fixed_dims(reference.inputs, shapes.fixed, attempts)
            job = dataclasses.replace(job, shapes=shapes)
            ref = tries.reference(job)
            conversion, more, made = tries.run(job, prepared, ref, "fixed")
            reference = ref.get()
            converter_seconds += conversion.converter_seconds
            attempts += [dataclasses.replace(a, fixed=shapes.fixed) for a in more]
            produced += made
        if job.optimize:
            attempts = _time_routes(attempts, produced, job.target, reference, ctx)
        chosen = choose(attempts)
        accuracy = None  # --eval: the chosen artifact's task accuracy, which may fail it
        if chosen is not None:
            attempts[chosen], accuracy = judge(job, (src, fmt), reference, attempts[chosen],
                                               produced[chosen], ctx)
        speed = None  # --speed-check: a passed artifact timed against the source's runtime
        if chosen is not None and job.speed_check and attempts[chosen].passed:
            speed = check_speed(produced[chosen], job.target, attempts[chosen].channels_last,
                                (src, fmt), reference,
                                source_onnx(conversion, fmt, job.target, stage / "baseline"),
                                job.options.load, ctx)
        artifact, failed = None, False
        if chosen is not None:  # -o only ever receives an artifact that passed
            failed = job.validate and not attempts[chosen].passed
            shipped = failed_path(out) if failed else out
            atomic_replace(produced[chosen], shipped)
            artifact = FileInfo.of(shipped, job.target.value)
        best = attempts[chosen] if chosen is not None else None
        report = ConvertReport(
            passed=bool(best and best.passed),
            validated=job.validate,
            source=shown,
            target=job.target.value,
            artifact=artifact,
            route=best.hops if best else (),
            routes_tried=tuple(attempts) + tuple(
                Attempt(route=name, converted=False, passed=False, error=why)
                for name, why in dropped.items()),
            checks=best.checks if best else (),
            inputs=reference.inputs,
            tolerance=job.tolerance,
            seed=job.seed,
            seconds=time.perf_counter() - started,
            versions=versions(),
            quantize=job.options.quantize,
            mobile=best.mobile if best else None,
            optimize=job.optimize,
            converter_seconds=converter_seconds + (preparation.seconds if preparation else 0.0),
            route_name=best.route if best else None,
            reference_runtime=reference.runtime,
            constants=dict(job.constants),
            steps=reference.steps,
            state=dict(reference.state),
            preparation=preparation,
            artifact_failed=failed,
            inputs_from=representative.described(job, reference),
            accuracy=accuracy,
            speed=speed,
            fixed=fixed if best is not None and best.fixed else None,
            notes=reference.notes,
        )
    if job.report is not None:
        report.write_json(job.report)
    return report


def check_paths(job: ConvertJob) -> Path:
    """Check every path the conversion writes, before any work: ``-o`` (its suffix must fit
    ``--to``), where a failed artifact goes, ``--report``; none may be an input.

    Returns:
        Where the artifact goes: ``-o``, or beside the source with the target's suffix.

    Raises:
        UsageError: A path is refused (see ``portkit.io.check_outputs``).
    """
    src = job.source.absolute()
    out = job.output if job.output is not None else src.with_suffix(job.target.suffix)
    folder = Folder.REPLACED if job.target is Format.SAVEDMODEL else Folder.NEVER
    calibration = job.options.calibration
    flag = "-o" if job.output is not None else "-o (default: beside the source)"
    check_outputs(
        [Output(flag, out, folder),
         Output(f"{flag}'s failed artifact", failed_path(out) if job.validate else None, folder),
         Output("--report", job.report)],
        [job.source, job.inputs_file, Path(calibration) if calibration else None,
         job.evaluation.file if job.evaluation else None])
    if job.output is not None:
        _check_suffix(out, job.target)
    return out


# What each target is, for the message of a suffix that does not fit it.
_WRITES = {Format.ONNX: "an ONNX model", Format.TFLITE: "a TFLite model",
           Format.TORCHSCRIPT: "a TorchScript model", Format.EXPORTED_PROGRAM: "an ExportedProgram",
           Format.SAVEDMODEL: "a SavedModel folder"}
_MODEL_SUFFIXES = {x for f in Format for x in f.suffixes if x} | {".pb", ".pth", ".bin"}


def _check_suffix(out: Path, target: Format) -> None:
    """``-o``'s suffix fits ``--to``: ``.onnx`` for ONNX...; a SavedModel folder has no model
    file's suffix.

    Raises:
        UsageError: It does not; the message names the path to use.
    """
    suffix = out.suffix.lower()
    fits = suffix in target.suffixes if target.suffix else suffix not in _MODEL_SUFFIXES
    if not fits:
        what = _WRITES.get(target, f"a {target.value} model")
        to = "pt2" if target is Format.EXPORTED_PROGRAM else target.value
        raise UsageError(f"-o {out}: --to {to} writes {what}; name it "
                         f"{out.with_suffix(target.suffix)}")


def plan(fmt: Format, job: ConvertJob, prepared: tuple[str, ...] = ()) -> list[registry.Route]:
    """The routes to try: the one named, every route and variant (optimizing), or every route
    with its edges' defaults; each starts with the preparations the source needs (``prepared``:
    ``onnx-upgrade``), which ``--route`` may name or leave out.

    Raises:
        UsageError: ``job.route`` names no planned route.
    """
    planned = registry.plan(fmt, job.target, quantize=job.options.quantize, variants=True)
    if job.route is not None or job.optimize:
        name = job.route
        for tool in prepared:
            name = name.removeprefix(f"{tool}+") if name else name
        chosen = registry.pick(planned, name)
    else:
        chosen = [r for r in planned if r.variant is None]
    return registry.prepare(chosen, list(prepared), fmt)


def _preparations(src: Path, fmt: Format, job: ConvertJob, ctx: RunContext) -> tuple[str, ...]:
    """The preparations ``src`` needs (read in the worker its first hop will use; a test may
    resolve the inputs as that hop does, from ``--input`` and ``--dim``)."""
    if not registry.preparations(fmt):
        return ()
    return tuple(ctx.pool.call(f"convert-from-{fmt.value}", registry.needed,
                               timeout=ctx.timeout, what=str(src), src=str(src), fmt=fmt,
                               given=list(job.inputs), shapes=job.shapes,
                               load=job.options.load))


def choose(attempts: list[Attempt]) -> int | None:
    """The attempt to ship: the fastest that matched (when timed), else the first that matched,
    else the first that converted (its report says why it failed), else none."""
    passed = [i for i, a in enumerate(attempts) if a.passed]
    timed = [i for i in passed if attempts[i].latency is not None]
    if timed:
        return min(timed, key=lambda i: attempts[i].latency.p50_ms)  # type: ignore[union-attr]
    converted = [i for i, a in enumerate(attempts) if a.converted]
    return (passed or converted or [None])[0]


def save_module(module: Any, inputs: list[TensorSpec], shapes: Shapes,
                stack: contextlib.ExitStack) -> tuple[Path, Shapes]:
    """Save an ``nn.Module`` as an ExportedProgram (``.pt2``) in a temporary folder that
    ``stack`` removes, a dimension named in ``inputs`` dynamic over its ``shapes`` range.

    Returns:
        The file, and the ``Shapes`` left for it (``_torch.module_inputs``).

    Raises:
        UsageError: Not every input's shape is given.
    """
    specs, left = module_inputs("convert(module, ...)", inputs, shapes)
    folder = stack.enter_context(owned_tempdir("module"))
    path = folder / f"{type(module).__name__}.pt2"
    save_exported(module, specs, path)
    return path, left


def _export_trusted_pickle(src: Path, job: ConvertJob, stack: contextlib.ExitStack,
                           ctx: RunContext) -> tuple[Path, Format, Shapes]:
    """``--trust-model`` on a pickled module: unpickle it in a worker and save it as ``.pt2``
    (with the ``Shapes`` left for it, as ``save_module``)."""
    inputs, left = module_inputs(f"{src} (a pickled module)",
                                 list(job.inputs), job.shapes)
    folder = stack.enter_context(owned_tempdir("pickle"))
    dst = folder / f"{src.stem}.pt2"
    with ctx.progress(f"Unpickling {src.name} (--trust-model) and exporting it"):
        worker.call(export_pickled_module, timeout=ctx.timeout, what=str(src), src=str(src),
                    dst=str(dst), inputs=inputs)
    return dst, Format.EXPORTED_PROGRAM, left


def _bind_constants(src: Path, fmt: Format, job: ConvertJob, stack: contextlib.ExitStack,
                    ctx: RunContext) -> tuple[Path, Hop]:
    """``--const``: the source with those inputs bound (a file of the same name and format in a
    temporary folder), made in the worker its format's hops use; and that step as a hop."""
    folder = stack.enter_context(owned_tempdir("const"))
    dst = folder / src.name
    with ctx.progress(f"Binding --const {shown(job.constants)} into {src.name}"):
        hop: Hop = ctx.pool.call(f"convert-from-{fmt.value}", constants.bind_constants,
                                 timeout=ctx.timeout, what=f"--const on {src.name}", src=str(src),
                                 fmt=fmt, dst=str(dst), constants=dict(job.constants))
    return dst, hop


def _time_routes(attempts: list[Attempt], produced: list[Path], target: Format, ref: Reference,
                 ctx: RunContext) -> list[Attempt]:
    """Time the artifacts that matched against each other on the target's first runtime (TFLite:
    one thread per core); each attempt gets its latency."""
    passed = [i for i, a in enumerate(attempts) if a.passed]
    if not passed:
        return attempts
    rt = runtimes.for_format(target)[0]
    with ctx.progress(f"Timing {len(passed)} matching artifact(s) on {rt.name}"):
        timings = time_together([produced[i] for i in passed], target, rt.name, ref,
                                channels_last=any(attempts[i].channels_last for i in passed),
                                timeout=ctx.timeout, pool=ctx.pool)
    timed = list(attempts)
    for i, latency in zip(passed, timings, strict=True):
        if isinstance(latency, Latency):
            timed[i] = dataclasses.replace(attempts[i], latency=latency)
    return timed


class _Tries:
    """The planned routes run from the source: a reference beside them, each route in turn
    until one ships; run again with the dimensions no route kept dynamic fixed
    (``dynamic.fallback``)."""

    def __init__(self, src: Path, fmt: Format, routes: list[registry.Route], stage: Path,
                 ctx: RunContext, stack: contextlib.ExitStack,
                 background: ThreadPoolExecutor) -> None:
        self._src, self._fmt, self._routes, self._stage = src, fmt, routes, stage
        self._ctx, self._stack, self._background = ctx, stack, background

    def reference(self, job: ConvertJob) -> _Reference:
        """The source run as ``job`` feeds it, started in the background."""
        ref = _Reference(self._background.submit(run_reference, self._src, self._fmt, job,
                                                 job.options.load, self._ctx),
                         self._ctx.progress, self._src.name,
                         from_file=job.inputs_file is not None and not job.options.holdout)
        # Runs before the thread pool exits: a reference still running is stopped, not awaited.
        self._stack.callback(ref.stop, self._ctx.pool, reference_worker(self._fmt))
        return ref

    def run(self, job: ConvertJob, prepared: Path, ref: _Reference, prefix: str
            ) -> tuple[_Conversion, list[Attempt], list[Path]]:
        """Each route from ``prepared`` (the source, its constants bound) in turn, into folders
        ``prefix0``, ``prefix1``...: all of them when optimizing, else until one ships."""
        conversion = _Conversion(job, prepared, self._fmt, ref, self._ctx)
        attempts: list[Attempt] = []
        produced: list[Path] = []
        for i, r in enumerate(self._routes):
            ref.raise_if_failed()  # the routes' outcome would not matter: stop early
            attempt, path = conversion.attempt(r, self._stage / f"{prefix}{i}")
            ranking = ranking_only(attempt.checks)  # the values match: other routes would too
            if ranking and i + 1 < len(self._routes):
                attempt = dataclasses.replace(attempt, error=f"{attempt.error}; the other "
                                              "routes not tried: only the ranking of classes "
                                              "failed, in an output whose kind was guessed")
            attempts.append(attempt)
            produced.append(path)
            if ranking or not job.optimize and (
                    attempt.passed or (attempt.converted and not job.validate)):
                break
        return conversion, attempts, produced


class _Reference:
    """The source run on the inputs, in a worker of its own beside the first conversion hop;
    ``get`` waits for it."""

    def __init__(self, job: Future[Reference], progress: Progress, name: str,
                 from_file: bool) -> None:
        self._job, self._progress, self._name = job, progress, name
        self.from_file = from_file  # input shapes come from --inputs: hops must wait for them

    def stop(self, pool: worker.Pool, name: str) -> None:
        """Stop its worker (called ``name`` in ``pool``) if it is still running."""
        if not self._job.done():
            pool.discard(name)

    def raise_if_failed(self) -> None:
        """Raise the reference's error now if it has already failed (a bad input, an unsafe or
        unloadable model): every later route's outcome would not matter."""
        if self._job.done() and self._job.exception() is not None:
            self._job.result()

    def get(self) -> Reference:
        """The reference (raises what its worker raised)."""
        if not self._job.done():
            with self._progress(f"Running {self._name} as the reference (beside the conversion)"):
                return self._job.result()
        return self._job.result()


class _Conversion:
    """One conversion's routes, tried in turn. Hops run once per route prefix: routes that
    start alike (``torch.onnx+onnx2tf`` and ``torch.onnx+onnx2tf+tflite-converter``) share the
    first hops' artifacts. Counts the converters' own seconds (the report's overhead is the
    rest)."""

    def __init__(self, job: ConvertJob, src: Path, fmt: Format, ref: _Reference,
                 ctx: RunContext) -> None:
        self._job, self._src, self._fmt, self._ref, self._ctx = job, src, fmt, ref, ctx
        self._done: dict[tuple[tuple[registry.Edge, ...], str | None],
                         tuple[Path, Hop] | PortkitError] = {}
        self._failed_seconds = 0.0

    @property
    def converter_seconds(self) -> float:
        """The converters' own time: inside each hop that converted, wall time of those that
        failed."""
        return self._failed_seconds + sum(
            d[1].seconds for d in self._done.values() if not isinstance(d, PortkitError))

    def made(self, fmt: Format) -> Path | None:
        """A file of ``fmt`` that a route's first hop made from the source, if one did."""
        return next((d[0] for (edges, _v), d in self._done.items() if len(edges) == 1
                     and edges[0].target is fmt and not isinstance(d, PortkitError)), None)

    def attempt(self, route: registry.Route, folder: Path) -> tuple[Attempt, Path]:
        """Run ``route`` from the source into ``folder``, then check what it made; returns the
        attempt and the artifact's path (or the hop's that failed)."""
        folder.mkdir()
        current, current_fmt = self._src, self._fmt
        hops = []
        for j, edge in enumerate(route.edges):
            dst = folder / f"hop{j}{edge.target.suffix}"
            options = self._job.options if j == 0 else dataclasses.replace(
                self._job.options, load=LoadOptions())
            if j == len(route.edges) - 1 and route.variant is not None:
                options = dataclasses.replace(options, variant=route.variant.name)
            # A first hop reads the source's inputs itself, so it need not wait for the reference.
            inputs = None if j == 0 and not self._ref.from_file else list(self._ref.get().inputs)
            try:
                current, hop = self._hop(route.edges[:j + 1], current, current_fmt, dst, inputs,
                                         options)
            except UsageError:  # the source or the flags, not the route: every route would fail
                self._ref.get()  # the reference's own error outranks it
                raise
            except PortkitError as e:
                self._ref.raise_if_failed()
                return Attempt(route=route.name, converted=False, passed=False,
                               error=f"{edge.tool}: {e}", hops=tuple(hops),
                               channels_last=route.channels_last,
                               lost_dynamic=isinstance(e, DimensionsFixedError)), dst
            hops.append(hop)
            current_fmt = edge.target
        return self._judge(route, current, current_fmt, tuple(hops)), current

    def _hop(self, route: tuple[registry.Edge, ...], src: Path, fmt: Format, dst: Path,
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
            with self._ctx.progress(f"Converting with {edge.tool} ({fmt.value} -> "
                                    f"{edge.target.value}{beside})"):
                hop: Hop = self._ctx.pool.call(
                    name, registry.run_edge, timeout=self._ctx.timeout,
                    what=f"{edge.tool} on {self._src.name}", tool=edge.tool, target=edge.target,
                    src=str(src), src_format=fmt, dst=str(dst), inputs=inputs, options=options,
                    given=list(self._job.inputs), shapes=self._job.shapes,
                )
        except PortkitError as e:
            self._failed_seconds += time.perf_counter() - started
            self._ctx.pool.discard(name)  # a converter that failed may have left state behind
            self._done[key] = e
            raise
        self._done[key] = (dst, hop)
        return dst, hop

    def _judge(self, route: registry.Route, artifact: Path, fmt: Format,
               hops: tuple[Hop, ...]) -> Attempt:
        """What the route made, checked: it reloads (``--no-validate``), or it runs and matches
        the source on every runtime that loads it."""
        ctx = self._ctx

        def attempt(**kw: Any) -> Attempt:
            return Attempt(route=route.name, hops=hops, channels_last=route.channels_last, **kw)

        mobile = None
        if fmt is Format.TFLITE:
            mobile = ctx.pool.call("tflite", tasks.describe, timeout=ctx.timeout,
                                   what=str(artifact), path=str(artifact), fmt=fmt).mobile
        if not self._job.validate:
            try:  # the post-condition every artifact meets: it reloads in a fresh worker
                worker.call(tasks.describe, timeout=ctx.timeout, what=str(artifact),
                            path=str(artifact), fmt=fmt)
            except PortkitError as e:
                return attempt(converted=False, passed=False, error=f"does not reload: {e}")
            return attempt(converted=True, passed=False, error="not validated (--no-validate)",
                           mobile=mobile)
        if mobile is not None and not mobile.builtin_only:
            needs = ", ".join(mobile.flex_ops + mobile.custom_ops)
            check = Check(runtime="tflite", device="cpu", passed=False, error=(
                f"not run: needs the Flex runtime or custom kernels for {needs}, which "
                "ai_edge_litert's interpreter lacks; run it where the Flex delegate is linked, "
                "or convert with --no-flex"))
            return attempt(converted=True, passed=False, error="; ".join(why_failed(check)),
                           checks=(check,), mobile=mobile)
        expected = Expected(self._ref.get(), self._job.tolerance, self._job.per_output)
        checks = tuple(c for rt in runtimes.for_format(fmt)
                       for c in check_runtime(artifact, fmt, rt, expected, ctx,
                                              channels_last=route.channels_last)[0])
        failed = [c for c in checks if not c.passed]
        error = "; ".join(line for c in failed for line in why_failed(c)) if failed else None
        return attempt(converted=True, passed=not failed, error=error, checks=checks,
                       mobile=mobile)
