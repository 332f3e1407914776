"""``portkit check``'s config: models, targets, runtimes, tolerances and latency budgets, read into
cases (one per model x target x runtime) and shards (every case lands in exactly one).

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
    scale_tol = 1e-3
    [model.outputs.embedding]
    kind = "embedding"              # classifier | embedding | regression (default: guessed)

    [[model]]
    name = "cnn-shipped"
    source = "models/cnn.pt2"       # the reference
    artifact = "dist/cnn.onnx"      # validate an existing artifact instead of converting

Paths are relative to the config file.
"""

from __future__ import annotations

import dataclasses
import re
import tomllib
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from portkit import schema
from portkit.bounds import P50_REGRESSION, parse_shard
from portkit.errors import UsageError
from portkit.fixtures import FIXTURES
from portkit.formats import TARGETS, sniff
from portkit.options import Judgement
from portkit.policies import NUMBERS, OutputKind, Tolerance, tuned
from portkit.runtimes import registry as runtimes

_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]*")  # a model's name: a file name, nothing more
_TOLERANCE_KEYS = tuple(NUMBERS)  # the policy's numbers, as the flags and keywords name them
_OUTPUT_KEYS = (*_TOLERANCE_KEYS, "kind")  # per output, kind is what it holds
# The config's shape (``schema.check``). A model's numbers are checked by their bounds, as the
# flags are (``policies.tuned``), and its name by ``_check_name``.
_NUMBERS = dict.fromkeys((*_TOLERANCE_KEYS, "p50_regression"), object)
_STRINGS = schema.Fix(schema.ListOf(str), 'write a list, even of one: ["onnx"], not "onnx"')
_FIXTURE = schema.Fix(schema.OneOf(tuple(FIXTURES)),
                      'name a built-in fixture, or give source = "path/to/model.pt2"')
_OUTPUT = schema.Table({**dict.fromkeys(_TOLERANCE_KEYS, object), "kind": str})
_MODEL = schema.Table({
    "name": object, "fixture": _FIXTURE, "kind": str, "source": str, "artifact": str,
    "targets": _STRINGS, "runtimes": _STRINGS, "inputs": _STRINGS, "signature": str, **_NUMBERS,
    "outputs": schema.Fix(schema.MapOf(_OUTPUT),
                          "per-output keys go under [model.outputs.NAME], e.g. "
                          "[model.outputs.logits] then atol = 1e-5")})
_CONFIG = schema.Table({
    "defaults": schema.Fix(_MODEL, "[defaults] is a table of keys every model takes"),
    "model": schema.Fix(schema.ListOf(_MODEL), "write each model as [[model]] (a list of "
                                               "tables), not [model]")})
_FIX = "see examples/portkit.toml and docs/ci.md for the keys and their types"


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

    @property
    def judgement(self) -> Judgement:
        """What its artifacts are held to, converted and validated alike."""
        return Judgement(self.tolerance, self.per_output)


@dataclass(frozen=True)
class Case:
    """One model x target x runtime."""

    model: str
    target: str
    runtime: str

    @property
    def id(self) -> str:
        return f"{self.model}/{self.target}/{self.runtime}"


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
    schema.check(data, _CONFIG, str(path), _FIX)
    defaults = data.get("defaults", {})
    entries: list[ModelEntry] = []
    for i, raw in enumerate(data.get("model", [])):
        merged = {**defaults, **raw}
        where = f"{path}: [[model]] #{i + 1}"
        if "name" not in merged or not (("source" in merged) ^ ("fixture" in merged)):
            raise UsageError(f"{where}: needs a name and one of source = '...' or fixture = '...'")
        _check_name(merged["name"], where, [e.name for e in entries])
        _check_kind(merged, str(path), f"model[{i + 1}]" if "kind" in raw else "defaults")
        targets = tuple(merged.get("targets", ()))
        if "artifact" not in merged and not targets:
            raise UsageError(f"{where}: give targets = [...] to convert, or artifact = '...'")
        bad = [t for t in targets if t not in TARGETS]
        if bad:
            raise UsageError(f"{where}: unknown targets {bad}; one of {', '.join(TARGETS)}")
        base = path.parent
        entries.append(ModelEntry(
            name=merged["name"],
            source=(base / merged["source"]).absolute() if "source" in merged else None,
            fixture=merged.get("fixture"), kind=merged.get("kind"),
            artifact=(base / merged["artifact"]).absolute() if "artifact" in merged else None,
            targets=targets, runtimes=tuple(merged.get("runtimes", ())),
            inputs=tuple(merged.get("inputs", ())),
            tolerance=_tolerance(merged, Tolerance(), where),
            per_output={k: _tolerance(v, _tolerance(merged, Tolerance(), where),
                                      f"{where} [model.outputs.{k}]", _OUTPUT_KEYS)
                        for k, v in merged.get("outputs", {}).items()},
            p50_regression=_p50_regression(merged.get("p50_regression"), where),
            signature=merged.get("signature"),
        ))
    if not entries:
        raise UsageError(f"{path}: no [[model]] entries")
    return entries


def _check_name(name: Any, where: str, taken: list[str]) -> None:
    """A model's ``name`` names its folder in the work dir and its bundles: a plain file name,
    and each model's own.

    Raises:
        UsageError: Not a string of letters, digits, ``.``, ``_`` and ``-`` (starting with a
            letter or digit), or the name of an earlier model.
    """
    if not isinstance(name, str) or not _NAME.fullmatch(name):
        raise UsageError(f"{where}: name = {name!r}: it names the model's folder and bundles, so "
                         "it is letters, digits, '.', '_' and '-', starting with a letter or "
                         "digit (no '/' or '..'), e.g. name = \"cnn-v2\"")
    if name in taken:
        raise UsageError(f"{where}: name = {name!r} is also model #{taken.index(name) + 1}'s; "
                         "give each [[model]] its own name")


def _check_kind(merged: dict[str, Any], where: str, table: str) -> None:
    """A fixture's ``kind`` is a file kind it saves as (a source's is not used).

    Raises:
        UsageError: It is not (``table`` says which table set it).
    """
    if "fixture" in merged and "kind" in merged:
        kinds = FIXTURES[merged["fixture"]].kinds
        if merged["kind"] not in kinds:
            raise schema.wrong(where, f"{table}.kind", f"one of {', '.join(kinds)}",
                               merged["kind"], f"the kinds fixture {merged['fixture']!r} is "
                               "saved as (leave kind out for the first)")


def _tolerance(values: dict[str, Any], base: Tolerance, where: str,
               keys: tuple[str, ...] = _TOLERANCE_KEYS) -> Tolerance:
    """``base`` with the ``keys`` set in ``values``, as the flags set them
    (``policies.tuned``: each in its range; atol or rtol without scale_tol is numpy.allclose).

    Raises:
        UsageError: A number out of range, or not a number (``where`` says which entry).
    """
    tolerance = tuned(base, {k: values[k] for k in keys if k in values and k in NUMBERS}, where)
    if "kind" in keys and "kind" in values:
        tolerance = dataclasses.replace(tolerance, kind=OutputKind.parse(values["kind"]))
    return tolerance


def _p50_regression(value: Any, where: str) -> float | None:
    """``p50_regression``, a finite fraction >= 0 (0.10: 10% slower fails), or None."""
    return None if value is None else P50_REGRESSION.check(value, f"{where}: p50_regression =")


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
    k, n = parse_shard(spec)
    return [c for i, c in enumerate(all_cases) if i % n == k - 1]
