"""``portkit check``: a config of models, targets, runtimes, tolerances and latency budgets, run as
a CI gate. One case per model x target x runtime; every case lands in exactly one shard.

A config (``portkit.toml``)::

    [defaults]                      # optional; every key can be set per model too
    atol = 1e-4
    p50_regression = 0.10           # --baseline: fail when p50 is >10% slower

    [[model]]
    name = "cnn"
    fixture = "cnn"                 # a built-in fixture; or source = "models/cnn.pt2"
    kind = "pt2"
    targets = ["onnx", "tflite"]
    [model.outputs.output_0]        # per-output tolerances
    atol = 1e-3

    [[model]]
    name = "cnn-shipped"
    source = "models/cnn.pt2"       # the reference
    artifact = "dist/cnn.onnx"      # validate an existing artifact instead of converting

Paths are relative to the config file.
"""

from __future__ import annotations

import dataclasses
import json
import threading
import time
import tomllib
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from portkit import api
from portkit.errors import PortkitError, UsageError
from portkit.formats import TARGETS, sniff
from portkit.runtimes import registry as runtimes
from portkit.runtimes import worker
from portkit.specs import Tolerance
from portkit.validators.latency import Budget, Latency
from portkit.validators.report import Check, plain, versions

_TOLERANCE_KEYS = ("atol", "rtol", "min_cosine", "min_top1", "min_top5", "samples")
_MODEL_KEYS = {"name", "fixture", "kind", "source", "artifact", "targets", "runtimes", "inputs",
               "outputs", "p50_regression", "signature", *_TOLERANCE_KEYS}


@dataclass(frozen=True)
class ModelEntry:
    """One ``[[model]]`` of the config, with defaults applied and paths resolved."""

    name: str
    source: Path | None
    fixture: str | None
    kind: str | None
    artifact: Path | None
    targets: tuple[str, ...]
    runtimes: tuple[str, ...]
    inputs: tuple[str, ...]
    tolerance: Tolerance
    per_output: dict[str, Tolerance]
    p50_regression: float | None
    signature: str | None = None


@dataclass(frozen=True)
class Case:
    """One model x target x runtime."""

    model: str
    target: str
    runtime: str

    @property
    def id(self) -> str:
        return f"{self.model}/{self.target}/{self.runtime}"


@dataclass(frozen=True)
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
class CheckReport:
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

    def to_dict(self) -> dict[str, Any]:
        d = plain(dataclasses.asdict(self))
        for row, r in zip(d["results"], self.results):
            row["id"] = r.case.id
        d["exit_code"] = self.exit_code
        return d

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=2)


def load_config(path: str | Path) -> list[ModelEntry]:
    """Read ``portkit.toml``.

    Raises:
        UsageError: The file is missing, not TOML, or names unknown keys, targets or runtimes.
    """
    path = Path(path)
    try:
        data = tomllib.loads(path.read_text())
    except (OSError, tomllib.TOMLDecodeError) as e:
        raise UsageError(f"{path}: cannot read it as TOML ({e})") from None
    defaults = data.get("defaults", {})
    entries = []
    for i, raw in enumerate(data.get("model", [])):
        merged = {**defaults, **raw}
        where = f"{path}: [[model]] #{i + 1}"
        unknown = set(merged) - _MODEL_KEYS
        if unknown:
            raise UsageError(f"{where}: unknown keys {', '.join(sorted(unknown))}; "
                             f"known: {', '.join(sorted(_MODEL_KEYS))}")
        if "name" not in merged or not (("source" in merged) ^ ("fixture" in merged)):
            raise UsageError(f"{where}: needs a name and one of source = '...' or fixture = '...'")
        targets = tuple(merged.get("targets", ()))
        if "artifact" not in merged and not targets:
            raise UsageError(f"{where}: give targets = [...] to convert, or artifact = '...'")
        bad = [t for t in targets if t not in TARGETS]
        if bad:
            raise UsageError(f"{where}: unknown targets {bad}; one of {', '.join(TARGETS)}")
        for output, keys in merged.get("outputs", {}).items():
            if not isinstance(keys, dict) or set(keys) - set(_TOLERANCE_KEYS):
                raise UsageError(f"{where}: [model.outputs.{output}] takes only "
                                 f"{', '.join(_TOLERANCE_KEYS)}")
        base = path.parent
        entries.append(ModelEntry(
            name=merged["name"],
            source=(base / merged["source"]).absolute() if "source" in merged else None,
            fixture=merged.get("fixture"), kind=merged.get("kind"),
            artifact=(base / merged["artifact"]).absolute() if "artifact" in merged else None,
            targets=targets, runtimes=tuple(merged.get("runtimes", ())),
            inputs=tuple(merged.get("inputs", ())),
            tolerance=_tolerance(merged, Tolerance()),
            per_output={k: _tolerance(v, _tolerance(merged, Tolerance()))
                        for k, v in merged.get("outputs", {}).items()},
            p50_regression=merged.get("p50_regression"), signature=merged.get("signature"),
        ))
    if not entries:
        raise UsageError(f"{path}: no [[model]] entries")
    return entries


def _tolerance(values: dict[str, Any], base: Tolerance) -> Tolerance:
    return dataclasses.replace(base, **{k: values[k] for k in _TOLERANCE_KEYS if k in values})


def cases(entries: Sequence[ModelEntry]) -> list[Case]:
    """Every model x target x runtime, in config order (an artifact's target is its format).

    Raises:
        UsageError: A model's ``runtimes`` load none of its targets.
    """
    found = []
    for m in entries:
        if m.artifact is not None:
            targets = [(sniff(m.artifact).value, sniff(m.artifact))]
        else:
            targets = [(t, TARGETS[t]) for t in m.targets]
        for target, fmt in targets:
            names = [rt.name for rt in runtimes.for_format(fmt)]
            chosen = [n for n in names if not m.runtimes or n in m.runtimes]
            if not chosen:
                raise UsageError(f"model {m.name}: runtimes {list(m.runtimes)} don't load "
                                 f"{target}; these do: {', '.join(names)}")
            found += [Case(m.name, target, rt) for rt in chosen]
    return found


def shard(all_cases: Sequence[Case], spec: str | None) -> list[Case]:
    """The cases of shard ``K/N`` (1-based): case ``i`` goes to shard ``i % N + 1``.

    Raises:
        UsageError: ``spec`` is not ``K/N`` with 1 <= K <= N.
    """
    if spec is None:
        return list(all_cases)
    try:
        k, n = (int(x) for x in spec.split("/"))
    except ValueError:
        raise UsageError(f"--shard {spec}: expected K/N, e.g. 2/3") from None
    if not 1 <= k <= n:
        raise UsageError(f"--shard {spec}: K must be between 1 and N")
    return [c for i, c in enumerate(all_cases) if i % n == k - 1]


def run(config: str | Path, *, shard_spec: str | None = None, jobs: int = 1,
        baseline: str | Path | None = None, work_dir: str | Path | None = None,
        save_bundles: str | Path | None = None,
        budget: Budget = Budget(warmup=3, min_runs=20, min_seconds=0.3),
        timeout: float = worker.DEFAULT_TIMEOUT, progress: api.Progress = api._no_progress
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
    """
    started = time.perf_counter()
    entries = {m.name: m for m in load_config(config)}
    chosen = shard(cases(list(entries.values())), shard_spec)
    old = _baseline(baseline) if baseline else {}
    work = Path(work_dir) if work_dir else Path(config).parent / ".portkit-check"
    if save_bundles:
        Path(save_bundles).mkdir(parents=True, exist_ok=True)
    groups: dict[tuple[str, str], list[Case]] = {}
    for c in chosen:
        groups.setdefault((c.model, c.target), []).append(c)
    # Fixtures are built first, one at a time (each in a worker), before groups run in parallel.
    sources: dict[str, Path | PortkitError] = {}
    for name in dict.fromkeys(c.model for c in chosen):
        try:
            sources[name] = entries[name].source or _fixture(entries[name], work / name, timeout)
        except PortkitError as e:
            sources[name] = e

    # One warm worker per runtime per thread, across every case the thread runs.
    local, warm = threading.local(), []

    def run_group(key: tuple[str, str]) -> list[CaseResult]:
        source = sources[key[0]]
        if isinstance(source, PortkitError):
            return [CaseResult(c, False, error=str(source)) for c in groups[key]]
        model = dataclasses.replace(entries[key[0]], source=source)
        bundle = Path(save_bundles) / f"{key[0]}-{key[1]}" if save_bundles else None
        if not hasattr(local, "workers"):
            local.workers = worker.Pool()
            warm.append(local.workers)
        return _run_group(model, key[1], groups[key], work / model.name, budget, timeout,
                          progress, old, bundle, local.workers)

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


def _run_group(model: ModelEntry, target: str, group: list[Case], folder: Path, budget: Budget,
               timeout: float, progress: api.Progress,
               old: dict[str, dict[str, Any]], bundle: Path | None,
               workers: worker.Pool) -> list[CaseResult]:
    """Convert once (or take the given artifact), then validate and time it per runtime."""
    assert model.source is not None
    source = model.source
    try:
        folder.mkdir(parents=True, exist_ok=True)
        artifact, route = model.artifact, "given artifact"
        if artifact is None:
            out = folder / f"{model.name}{TARGETS[target].suffix or '.' + target}"
            converted = api.convert(source, target, out, inputs=model.inputs, timeout=timeout,
                                    signature=model.signature, progress=progress,
                                    workers=workers)
            if converted.artifact is None:
                errors = "; ".join(a.error or "" for a in converted.routes_tried)
                return [CaseResult(c, False, error=f"not converted: {errors}") for c in group]
            artifact, route = out, "+".join(h.tool for h in converted.route)
        report = api.validate(
            artifact, source, runtimes_=[c.runtime for c in group], inputs=model.inputs,
            atol=model.tolerance.atol, rtol=model.tolerance.rtol,
            min_cosine=model.tolerance.min_cosine, top_k_agreement=model.tolerance.min_top1,
            min_top5=model.tolerance.min_top5, samples=model.tolerance.samples, per_output=model.per_output, timeout=timeout,
            signature=model.signature, save_bundle=bundle, progress=progress, workers=workers)
        speed = api.bench([artifact], runtimes_=[c.runtime for c in group], inputs=model.inputs,
                          budget=budget, timeout=timeout, progress=progress)
    except PortkitError as e:
        return [CaseResult(c, False, error=str(e)) for c in group]
    results = []
    for c in group:
        checks = tuple(k for k in report.checks if k.runtime == c.runtime)
        ran = [k for k in checks if not k.skipped]
        latency = next((r.latency for r in speed.rows if r.latency.runtime == c.runtime), None)
        regressions = _regressions(c, bool(ran) and all(k.passed for k in ran), latency,
                                   old.get(c.id), model.p50_regression)
        passed = bool(ran) and all(k.passed for k in ran) and not regressions
        results.append(CaseResult(c, passed, checks, latency, str(artifact), route,
                                  None, regressions))
    return results


def _fixture(model: ModelEntry, folder: Path, timeout: float) -> Path:
    """Build a fixture model in a worker (it imports torch or TensorFlow)."""
    from portkit.fixtures import FIXTURES

    if model.fixture not in FIXTURES:
        raise UsageError(f"model {model.name}: no fixture {model.fixture!r}; "
                         f"one of {', '.join(FIXTURES)}")
    folder.mkdir(parents=True, exist_ok=True)
    path: Path = worker.call("portkit.fixtures:save_fixture", timeout=timeout,
                             what=f"fixture {model.fixture}", name=model.fixture,
                             folder=str(folder.absolute()), kind=model.kind)
    return path


def _baseline(path: str | Path) -> dict[str, dict[str, Any]]:
    try:
        data = json.loads(Path(path).read_text())
        return {r["id"]: r for r in data["results"]}
    except (OSError, ValueError, KeyError, TypeError) as e:
        raise UsageError(f"--baseline {path}: not a portkit check JSON report ({e})") from None


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
