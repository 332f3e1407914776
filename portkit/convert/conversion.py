"""Running a conversion's routes and judging what they make: the source run as the reference
beside the first hop (``Reference``), each route's hops run once per shared prefix and its
artifact checked on every runtime that loads it (``Conversion``), and the routes tried in turn
(``Tries``), again with the dimensions no route kept dynamic fixed."""

from __future__ import annotations

import contextlib
import dataclasses
import re
import time
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path
from typing import Any

from portkit.convert import registry
from portkit.errors import (
    DimensionsFixedError,
    PortkitError,
    ResourceError,
    UsageError,
    WorkerError,
)
from portkit.formats import Format
from portkit.options import ConvertJob, ConvertOptions, Feed, LoadOptions
from portkit.results import Attempt, Check, Hop
from portkit.runtimes import registry as runtimes
from portkit.runtimes import tasks, worker
from portkit.runtimes.context import Progress, RunContext
from portkit.runtimes.tasks import Reference
from portkit.specs import TensorSpec
from portkit.validators.checks import (
    Expected,
    check_runtime,
    ranking_only,
    why_failed,
)
from portkit.validators.reference import reference_worker, run_reference


class Tries:
    """The planned routes run from the source: a reference beside them, each route in turn
    until one ships; run again with the dimensions no route kept dynamic fixed
    (``dynamic.fallback``)."""

    def __init__(self, src: Path, fmt: Format, routes: list[registry.Route], stage: Path,
                 ctx: RunContext, stack: contextlib.ExitStack,
                 background: ThreadPoolExecutor) -> None:
        self._src, self._fmt, self._routes, self._stage = src, fmt, routes, stage
        self._ctx, self._stack, self._background = ctx, stack, background

    def reference(self, job: ConvertJob) -> RunningReference:
        """The source run as ``job`` feeds it, started in the background."""
        ref = RunningReference(self._background.submit(run_reference, self._src, self._fmt,
                                                       job.feed, self._ctx),
                               self._ctx.progress, self._src.name,
                               from_file=job.feed.file is not None and not job.feed.held_back)
        # Runs before the thread pool exits: a reference still running is stopped, not awaited.
        self._stack.callback(ref.stop, self._ctx.pool, reference_worker(self._fmt))
        return ref

    def run(self, job: ConvertJob, prepared: Path, ref: RunningReference, prefix: str
            ) -> tuple[Conversion, list[Attempt], list[Path]]:
        """Each route from ``prepared`` (the source, its constants bound) in turn, into folders
        ``prefix0``, ``prefix1``...: all of them when optimizing, else until one ships."""
        conversion = Conversion(job, prepared, self._fmt, ref, self._ctx)
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


class RunningReference:
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


def run_hop(edge: registry.Edge, src: Path, fmt: Format, dst: Path, ctx: RunContext, *,
            inputs: list[TensorSpec] | None, options: ConvertOptions, feed: Feed,
            what: str, note: str = "") -> Hop:
    """One conversion step: ``edge``'s converter run on ``src`` (a ``fmt`` file) into ``dst``,
    in the warm worker the hops from ``fmt`` share (discarded when the converter fails: it may
    have left state behind). ``inputs``: the resolved input specs (None: the converter reads the
    source's own, with ``feed``'s ``--input`` and shapes); ``what`` names the model in a
    timeout, ``note`` ends the progress line.

    Raises:
        PortkitError: The converter failed.
    """
    name = f"convert-from-{fmt.value}"
    try:
        with ctx.progress(f"Converting with {edge.tool} ({fmt.value} -> {edge.target.value}"
                          f"{note})"):
            hop: Hop = ctx.pool.call(
                name, registry.run_edge, timeout=ctx.timeout, what=f"{edge.tool} on {what}",
                tool=edge.tool, target=edge.target, src=str(src), src_format=fmt, dst=str(dst),
                inputs=inputs, options=options, given=list(feed.inputs), shapes=feed.shapes)
    except PortkitError:
        ctx.pool.discard(name)
        raise
    return hop


# What a converter's own error says when the disk or the file size limit ran out under it (a
# framework that wraps the OSError: the worker maps only a bare one to a ResourceError).
_RAN_OUT = re.compile(r"No space left on device|Disk quota exceeded|File too large")


def _ran_out(error: PortkitError) -> str | None:
    """What ran out under a converter, if the disk or the file size limit did; None otherwise."""
    if isinstance(error, ResourceError):
        return str(error)
    if isinstance(error, WorkerError) and (
            found := _RAN_OUT.search(f"{error}\n{error.traceback}")):
        return (f"{error} ({found.group(0)}): free some space or raise the file size limit "
                "(ulimit -f), or write elsewhere")
    return None


class Conversion:
    """One conversion's routes, tried in turn. Hops run once per route prefix: routes that
    start alike (``torch.onnx+onnx2tf`` and ``torch.onnx+onnx2tf+tflite-converter``) share the
    first hops' artifacts. Counts the converters' own seconds (the report's overhead is the
    rest)."""

    def __init__(self, job: ConvertJob, src: Path, fmt: Format, ref: RunningReference,
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
                if (ran_out := _ran_out(e)) is not None:  # a full disk is no route's fault
                    raise ResourceError(f"{edge.tool}, writing in {folder.parent.parent}: "
                                        f"{ran_out}", e.traceback) from None
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
        started = time.perf_counter()
        beside = "; the source runs as the reference beside it" if inputs is None else ""
        try:
            hop = run_hop(route[-1], src, fmt, dst, self._ctx, inputs=inputs, options=options,
                          feed=self._job.feed, what=self._src.name, note=beside)
        except PortkitError as e:
            self._failed_seconds += time.perf_counter() - started
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
        judged = self._job.judgement
        expected = Expected(self._ref.get(), judged.tolerance, judged.per_output)
        checks = tuple(c for rt in runtimes.for_format(fmt)
                       for c in check_runtime(artifact, fmt, rt, expected, ctx,
                                              channels_last=route.channels_last)[0])
        failed = [c for c in checks if not c.passed]
        error = "; ".join(line for c in failed for line in why_failed(c)) if failed else None
        return attempt(converted=True, passed=not failed, error=error, checks=checks,
                       mobile=mobile)


