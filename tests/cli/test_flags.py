"""The CLI is thin: each command's options are keyword arguments of one library function, spelled
the same; shared option groups are declared once (``portkit/cli/flags.py``)."""

from __future__ import annotations

import inspect
from collections.abc import Callable

import click
import pytest

from portkit import api, gate
from portkit.cli import cli

# Options a command handles itself: output format, files it writes, flags it inverts or packs.
HANDLED = {
    "convert": {"as_json", "report_path", "no_validate"},
    "validate": {"as_json", "bundle_dir", "artifact", "reference"},
    "bench": {"as_json", "warmup", "min_runs", "min_seconds", "models"},
    "inspect": {"as_json", "model"},
    "check": {"json_path", "markdown_path", "junit_path", "list_only", "config"},
}
TARGET: dict[str, Callable[..., object]] = {
    "convert": api.convert, "validate": api.validate, "bench": api.bench,
    "inspect": api.inspect, "check": gate.run,
}


@pytest.mark.parametrize("command", sorted(TARGET))
def test_every_option_is_a_keyword_of_the_library_function(command: str) -> None:
    params = {p.name for p in cli.commands[command].params}
    accepted = set(inspect.signature(TARGET[command]).parameters)
    assert params - HANDLED[command] <= accepted, params - HANDLED[command] - accepted


def _option(command: str, name: str) -> click.Option:
    return next(p for p in cli.commands[command].params
                if isinstance(p, click.Option) and p.name == name)


@pytest.mark.parametrize("name", ["inputs", "inputs_file", "seed", "atol", "rtol", "samples",
                                  "min_cosine", "min_top1", "min_top5", "signature",
                                  "trust_model"])
def test_shared_options_are_the_same_option_in_convert_and_validate(name: str) -> None:
    left, right = _option("convert", name), _option("validate", name)
    assert (left.opts, left.help, left.type.name, left.default) == (
        right.opts, right.help, right.type.name, right.default)


def test_validate_takes_trust_model_and_the_old_top_k_name() -> None:
    assert _option("validate", "trust_model").is_flag
    assert _option("validate", "min_top1").opts == ["--min-top1", "--top-k-agreement"]
