"""``portkit check``'s run: each model x target converted once (or its artifact taken), validated
and timed per runtime, judged against tolerances, latency budgets and an optional baseline.
"""

from __future__ import annotations

import dataclasses
import json
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from portkit import schema
from portkit.bounds import JOBS, TIMEOUT
from portkit.convert import pipeline
from portkit.errors import PortkitError, UsageError, from_os_error
from portkit.fixtures import save_fixture
from portkit.formats import TARGETS
from portkit.gate.config import Case, ModelEntry, cases, load_config, shard
from portkit.io import Folder, Output, check_outputs
from portkit.options import (
    BenchJob,
    Budget,
    ConvertJob,
    Feed,
    LoadOptions,
    ValidateJob,
)
from portkit.results import Check, JsonReport, Latency, versions
from portkit.runtimes import worker
from portkit.runtimes.context import Progress, RunContext, no_progress
from portkit.shapes import Shapes
from portkit.specs import parse_inputs
from portkit.validators.checks import all_passed, validate
from portkit.validators.latency import bench_models


@dataclass(frozen=True, kw_only=True)
class CaseResult:
    """What one case found."""

    case: Case
    passed: bool
    checks: tuple[Check, ...] = ()
    latency: Latency | None = None
    artifact: str | None = None
    route: str | None = None
    error: str | None = None
    regressions: tuple[str, ...] = ()


@dataclass(frozen=True)
class CheckReport(JsonReport):
    """Every case of a ``portkit check`` run (or of one shard)."""

    passed: bool
    config: str
    shard: str | None
    results: tuple[CaseResult, ...]
    baseline: str | None
    seconds: float
    versions: dict[str, str] = field(default_factory=dict)

    @property
    def exit_code(self) -> int:
        return 0 if self.passed else 1

    def _finish(self, d: dict[str, Any]) -> dict[str, Any]:
        for row, r in zip(d["results"], self.results, strict=True):
            row["id"] = r.case.id
        return d


@dataclass(frozen=True)
class _Settings:
    """What every group of one run shares."""

    work: Path
    budget: Budget
    baseline: dict[str, dict[str, Any]]
    bundles: Path | None


def run(config: str | Path, *, shard_spec: str | None = None, jobs: int = 1,
        baseline: str | Path | None = None, work_dir: str | Path | None = None,
        save_bundles: str | Path | None = None,
        budget: Budget = Budget(warmup=3, min_runs=20, min_seconds=0.3),
        timeout: float = worker.DEFAULT_TIMEOUT, progress: Progress = no_progress
        ) -> CheckReport:
    """Run every case of a config (or of one shard) and judge it against tolerances, budgets and
    an optional baseline report.

    Args:
        config: The ``portkit.toml``.
        shard_spec: ``K/N``: only this shard's cases.
        jobs: Model x target groups run in parallel.
        baseline: A previous run's JSON report: a case fails when its p50 grew beyond its
            model's ``p50_regression``, or it passed there and fails now.
        work_dir: Where artifacts go (default: ``.portkit-check`` beside the config).
        save_bundles: Write a reproducibility bundle per model x target into this folder.
        budget: How long each case's latency is measured.
        timeout: Seconds each worker step may take.
        progress: ``progress(message)`` context managers around each step.

    Returns:
        The report; ``exit_code`` 0 only when every case passed.

    Raises:
        UsageError: ``jobs``, ``timeout`` or ``shard_spec`` is out of range, the config is bad,
            or ``work_dir`` or ``save_bundles`` is refused (``portkit.io.check_outputs``).
        PortkitError: ``work_dir`` or ``save_bundles`` could not be made (exit 2 or 5).
    """
    JOBS.check(jobs)
    TIMEOUT.check(timeout)
    started = time.perf_counter()
    entries = {m.name: m for m in load_config(config)}
    chosen = shard(cases(list(entries.values())), shard_spec)
    settings = _Settings(
        work=work_folder(config, work_dir),
        budget=budget, baseline=_baseline(baseline) if baseline else {},
        bundles=Path(save_bundles) if save_bundles else None)
    check_outputs([Output("--work-dir", settings.work, Folder.WRITTEN_INTO),
                   Output("--save-bundle", settings.bundles, Folder.WRITTEN_INTO)],
                  [Path(config), *(p for m in entries.values() for p in (m.source, m.artifact))])
    for flag, folder in (("--work-dir", settings.work), ("--save-bundle", settings.bundles)):
        if folder is not None:
            try:
                folder.mkdir(parents=True, exist_ok=True)
            except OSError as e:
                raise from_os_error(e, f"{flag} {folder}: cannot make it") from None
    groups: dict[tuple[str, str], list[Case]] = {}
    for c in chosen:
        groups.setdefault((c.model, c.target), []).append(c)
    # Fixtures are built first, one at a time (each in a worker), before groups run in parallel.
    sources: dict[str, Path | PortkitError] = {}
    for name in dict.fromkeys(c.model for c in chosen):
        try:
            sources[name] = entries[name].source or _fixture(entries[name],
                                                             settings.work / name, timeout)
        except PortkitError as e:
            sources[name] = e

    # One warm worker per runtime per thread, across every case the thread runs.
    local, warm = threading.local(), []

    def run_group(key: tuple[str, str]) -> list[CaseResult]:
        source = sources[key[0]]
        if isinstance(source, PortkitError):
            return [CaseResult(case=c, passed=False, error=str(source)) for c in groups[key]]
        if not hasattr(local, "workers"):
            lent = worker.lent() if jobs <= 1 else None  # one thread: the process's warm pool
            local.workers = lent or worker.Pool()
            if lent is None:
                warm.append(local.workers)
        model = dataclasses.replace(entries[key[0]], source=source)
        return _run_group(settings, model, key[1], groups[key],
                          RunContext(local.workers, timeout, progress))

    pool = ThreadPoolExecutor(max_workers=max(1, jobs))
    try:
        results = [r for rs in pool.map(run_group, groups) for r in rs]
    except BaseException:  # Ctrl-C: don't start the groups still queued
        pool.shutdown(wait=False, cancel_futures=True)
        raise
    finally:
        for workers in warm:
            workers.close()
    pool.shutdown()
    return CheckReport(all(r.passed for r in results), str(config), shard_spec, tuple(results),
                       str(baseline) if baseline else None, time.perf_counter() - started,
                       versions())


def work_folder(config: str | Path, work_dir: str | Path | None) -> Path:
    """Where a check's artifacts go: ``work_dir``, or ``.portkit-check`` beside the config."""
    return Path(work_dir) if work_dir else Path(config).parent / ".portkit-check"


def _run_group(settings: _Settings, model: ModelEntry, target: str, group: list[Case],
               ctx: RunContext) -> list[CaseResult]:
    """Convert once (or take the given artifact), then validate and time it per runtime."""
    assert model.source is not None
    folder = settings.work / model.name
    bundle = settings.bundles / f"{model.name}-{target}" if settings.bundles else None
    names = tuple(c.runtime for c in group)
    try:
        inputs = tuple(parse_inputs(model.inputs))
        feed = Feed(inputs, load=LoadOptions(model.signature))
        folder.mkdir(parents=True, exist_ok=True)
        artifact, route, shapes = model.artifact, "given artifact", Shapes()
        if artifact is None:
            out = folder / f"{model.name}{TARGETS[target].suffix or '.' + target}"
            converted = pipeline.convert(ConvertJob(
                model.source, TARGETS[target], out, feed=feed, judgement=model.judgement), ctx)
            if converted.artifact is None:
                errors = "; ".join(a.error or "" for a in converted.routes_tried)
                return [CaseResult(case=c, passed=False, error=f"not converted: {errors}")
                        for c in group]
            # A failed artifact is kept beside ``out`` (NAME.failed.EXT): validate that one.
            artifact = Path(converted.artifact.path)
            route = "+".join(h.tool for h in converted.route)
            if converted.fixed is not None:  # judged at the sizes it was converted for
                shapes = Shapes(fixed=tuple(name for name, _size in converted.fixed.sizes))
        report = validate(ValidateJob(
            artifact, model.source, names, bundle, dataclasses.replace(feed, shapes=shapes),
            model.judgement), ctx)
        speed = bench_models(BenchJob((artifact,), names, inputs, budget=settings.budget), ctx)
    except PortkitError as e:
        return [CaseResult(case=c, passed=False, error=str(e)) for c in group]
    results = []
    for c in group:
        found = tuple(k for k in report.checks if k.runtime == c.runtime)
        timed = next((r.latency for r in speed.rows if r.latency.runtime == c.runtime), None)
        regressions = _regressions(c, all_passed(found), timed, settings.baseline.get(c.id),
                                   model.p50_regression)
        passed = all_passed(found) and not regressions
        results.append(CaseResult(case=c, passed=passed, checks=found, latency=timed,
                                  artifact=str(artifact), route=route, regressions=regressions))
    return results


def _fixture(model: ModelEntry, folder: Path, timeout: float) -> Path:
    """Build a fixture model in a worker (it imports torch or TensorFlow); ``load_config`` has
    refused a name that is no fixture."""
    folder.mkdir(parents=True, exist_ok=True)
    path: Path = worker.call(save_fixture, timeout=timeout, what=f"fixture {model.fixture}",
                             name=model.fixture, folder=str(folder.absolute()), kind=model.kind)
    return path


# What a baseline's cases are read for (``_regressions``); a report holds more, unchecked.
_BASELINE = schema.Table({"results": schema.ListOf(schema.Table({
    "id": str, "passed": bool,
    "latency": (schema.Table({"p50_ms": (float, None)}, open=True), None),
}, required=("id",), open=True))}, required=("results",), open=True)


def _baseline(path: str | Path) -> dict[str, dict[str, Any]]:
    """A previous run's report (``--json``), its cases by id, read before any case runs.

    Raises:
        UsageError: Not JSON, or not of a report's shape (a key of the wrong type, named).
    """
    try:
        data = json.loads(Path(path).read_text())
    except (OSError, ValueError) as e:
        raise UsageError(f"--baseline {path}: not a portkit check JSON report ({e})") from None
    schema.check(data, _BASELINE, f"--baseline {path}", "pass the report of an earlier run "
                 "(portkit check --json FILE)", json=True)
    return {r["id"]: r for r in data["results"]}


def _regressions(case: Case, passed: bool, latency: Latency | None, old: dict[str, Any] | None,
                 budget: float | None) -> tuple[str, ...]:
    if old is None:
        return ()
    found = []
    if old.get("passed") and not passed:
        found.append("parity passed in the baseline and fails now")
    old_p50 = (old.get("latency") or {}).get("p50_ms")
    if budget is not None and latency is not None and old_p50:
        ratio = latency.p50_ms / old_p50
        if ratio > 1 + budget:
            found.append(f"p50 {latency.p50_ms:.3g} ms is {ratio - 1:.0%} slower than the "
                         f"baseline's {old_p50:.3g} ms (budget {budget:.0%})")
    return tuple(found)
