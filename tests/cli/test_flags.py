"""The CLI is thin: each command's options are keyword arguments of one library function, spelled
the same; shared option groups are declared once (``portkit/cli/flags.py``)."""

from __future__ import annotations

import inspect
from collections.abc import Callable

import click
import pytest

from portkit import api, bounds, gate
from portkit.cli import cli, flags
from portkit.policies import NUMBERS

# Options a command handles itself: output format, files it writes, flags it inverts or packs.
HANDLED = {
    "convert": {"as_json", "report_path", "no_validate"},
    "validate": {"as_json", "bundle_dir", "artifact", "reference"},
    "bench": {"as_json", "warmup", "min_runs", "min_seconds", "models"},
    "inspect": {"as_json", "model"},
    "check": {"json_path", "markdown_path", "junit_path", "list_only", "config"},
    "debug": {"as_json"},
}
TARGET: dict[str, Callable[..., object]] = {
    "convert": api.convert, "validate": api.validate, "bench": api.bench,
    "inspect": api.inspect, "check": gate.run, "debug": api.debug,
}


@pytest.mark.parametrize("command", sorted(TARGET))
def test_every_option_is_a_keyword_of_the_library_function(command: str) -> None:
    params = {p.name for p in cli.commands[command].params}
    signature = inspect.signature(TARGET[command]).parameters
    accepted = set(signature)
    if any(p.kind is inspect.Parameter.VAR_KEYWORD for p in signature.values()):
        accepted |= NUMBERS.keys()  # ``**numbers``: the policy's numbers, declared once
    assert params - HANDLED[command] <= accepted, params - HANDLED[command] - accepted


def _option(command: str, name: str) -> click.Option:
    return next(p for p in cli.commands[command].params
                if isinstance(p, click.Option) and p.name == name)


@pytest.mark.parametrize("name", ["inputs", "inputs_file", "seed", "atol", "rtol", "samples",
                                  "min_cosine", "min_top1", "min_top5", "signature",
                                  "trust_model", "eval_data", "eval_output",
                                  "max_accuracy_drop"])
def test_shared_options_are_the_same_option_in_convert_and_validate(name: str) -> None:
    left, right = _option("convert", name), _option("validate", name)
    assert (left.opts, left.help, left.type.name, left.default) == (
        right.opts, right.help, right.type.name, right.default)


def test_validate_takes_trust_model_and_the_old_top_k_name() -> None:
    assert _option("validate", "trust_model").is_flag
    assert _option("validate", "min_top1").opts == ["--min-top1", "--top-k-agreement"]


# Every numeric option and the bound it is checked against (written once, in portkit.bounds).
TOLERANCE_BOUNDS = {key: number.bound for key, number in NUMBERS.items()}
NUMERIC = {
    "convert": {"opset": bounds.OPSET, "timeout": bounds.TIMEOUT, "seed": bounds.SEED,
                "max_accuracy_drop": bounds.MAX_ACCURACY_DROP, "generate": bounds.GENERATE,
                "max_seq": bounds.MAX_SEQ, **TOLERANCE_BOUNDS},
    "validate": {"timeout": bounds.TIMEOUT, "seed": bounds.SEED,
                 "max_accuracy_drop": bounds.MAX_ACCURACY_DROP, "generate": bounds.GENERATE,
                 "max_seq": bounds.MAX_SEQ, **TOLERANCE_BOUNDS},
    "inspect": {"timeout": bounds.TIMEOUT},
    "bench": {"threads": bounds.THREADS, "batch": bounds.BATCH, "warmup": bounds.WARMUP,
              "min_runs": bounds.MIN_RUNS, "min_seconds": bounds.MIN_SECONDS,
              "timeout": bounds.TIMEOUT, "generate": bounds.GENERATE, "max_seq": bounds.MAX_SEQ},
    "check": {"jobs": bounds.JOBS, "timeout": bounds.TIMEOUT},
    "debug": {"timeout": bounds.TIMEOUT, "seed": bounds.SEED,
              **{k: TOLERANCE_BOUNDS[k] for k in ("atol", "rtol", "scale_tol",
                                                          "min_cosine")}},
}


@pytest.mark.parametrize("command", sorted(NUMERIC))
def test_every_number_option_is_checked_against_its_bound(command: str) -> None:
    numbers = {p.name for p in cli.commands[command].params if isinstance(p, click.Option)
               and p.type.name in ("integer", "number", "float", "integer range", "float range")}
    # steps keeps click's IntRange(min=1); every other number has a Bound
    assert numbers - {"steps"} == set(NUMERIC[command]), numbers
    for name, bound in NUMERIC[command].items():
        kind = _option(command, name).type
        assert isinstance(kind, flags.Number) and kind.bound is bound, name


@pytest.mark.parametrize("value", ["nan", "inf", "-inf", "0", "-1", "abc", ""])
def test_seconds_refuse_what_is_no_time_limit(value: str) -> None:
    with pytest.raises(click.BadParameter) as e:
        flags.Number(bounds.TIMEOUT).convert(value, None, None)
    assert "\n" not in e.value.format_message() and value in e.value.format_message()


def test_numbers_convert_to_their_kind_and_shard_stays_a_string() -> None:
    assert flags.Number(bounds.TIMEOUT).convert("1.5", None, None) == 1.5
    assert flags.Number(bounds.JOBS).convert("4", None, None) == 4
    assert flags.Number(bounds.MIN_COSINE).convert("-1", None, None) == -1.0
    assert flags.Shard().convert("2/3", None, None) == "2/3"
    with pytest.raises(click.BadParameter, match="K/N"):
        flags.Shard().convert("4/3", None, None)


@pytest.mark.parametrize("command", ["convert", "validate", "debug"])
def test_help_shows_the_options_in_headed_sections_with_an_example_each(command: str) -> None:
    from click.testing import CliRunner

    text = CliRunner().invoke(cli, [command, "--help"]).output
    headings = [line for line in text.splitlines()
                if line.endswith(":") and not line.startswith(" ") and line != "Other options:"]
    assert len(headings) >= 5, headings
    for heading in headings:  # the line under each heading is an example
        assert text.split(f"\n{heading}\n", 1)[1].startswith("  e.g. --"), heading
    assert "Tolerances:" in headings and "Shapes:" in headings
