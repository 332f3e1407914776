"""The shapes of the files portkit reads (``portkit.toml``, a ``--baseline`` report, a bundle's
``manifest.json``), declared once per reader and checked when the file is read: a value of the
wrong type is a one-line ``UsageError`` naming the file and the key, before any work, never a
``TypeError`` deep in the run.

A shape is a type (``str``, ``int``, ``float``, ``bool``, ``None``; ``object`` takes anything), a
tuple of shapes (any of them), or a ``Table``, ``ListOf``, ``MapOf``, ``Row``, ``OneOf`` or
``Fix``; ``from_hints`` derives a table from a dataclass's or TypedDict's annotations. Keys are
named by their path, list items counted from 1 (``model[1].source``: the first ``[[model]]``'s
source)::

    portkit.toml: model[1].source: expected a string, found 5 (an integer); e.g. source = ...
"""

from __future__ import annotations

import dataclasses
import enum
import re
import types
import typing
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Union

from portkit.errors import UsageError

Shape = Any  # a type, a tuple of shapes, or one of the classes below


@dataclass(frozen=True)
class Table:
    """A table (TOML) or object (JSON) of known keys.

    Attributes:
        keys: Each key's shape.
        required: The keys it must hold.
        open: Other keys are taken unchecked (a file newer portkits may add to); else they are
            refused, naming the known ones.
    """

    keys: Mapping[str, Shape]
    required: tuple[str, ...] = ()
    open: bool = False


@dataclass(frozen=True)
class ListOf:
    """A list, each item of ``item``'s shape."""

    item: Shape


@dataclass(frozen=True)
class MapOf:
    """A table of keys the user names (outputs, say), each value of ``value``'s shape."""

    value: Shape


@dataclass(frozen=True)
class Row:
    """A list of exactly these items, in order (``["ids 3x33", 4]``)."""

    items: tuple[Shape, ...]


@dataclass(frozen=True)
class OneOf:
    """A string among ``choices``."""

    choices: tuple[str, ...]


@dataclass(frozen=True)
class Fix:
    """``shape``, with how to write it, said instead of the file's fix when a value isn't
    (what is inside a value that is has the file's fix, or its own ``Fix``)."""

    shape: Shape
    fix: str


_NOUNS = {str: ("a string", "strings"), bool: ("true or false", "true/false values"),
          int: ("an integer", "integers"), float: ("a number", "numbers"),
          type(None): ("null", "nulls"), object: ("anything", "anything")}
_KEY = re.compile(r"[A-Za-z0-9_-]+")


def check(data: Any, shape: Shape, where: str, fix: str, *, json: bool = False) -> None:
    """Check parsed ``data`` against ``shape``.

    Args:
        data: What ``tomllib`` or ``json`` read.
        shape: What it must be.
        where: The file, as messages name it (``portkit.toml``, ``--baseline run.json``).
        fix: How to fix a value that isn't (a ``Fix`` in ``shape`` says it instead).
        json: Call tables objects, as JSON does.

    Raises:
        UsageError: A value of the wrong type, an unknown key of a closed table or a missing
            required key: one line naming ``where``, the key's path, what was expected and what
            was found.
    """
    _walk(data, shape, "", _Context(where, fix, json))


def wrong(where: str, path: str, expected: str, value: Any, fix: str, *,
          json: bool = False) -> UsageError:
    """The error for ``value`` at ``path`` in ``where``, which should be ``expected``: for a
    reader's own checks (a fixture's name, say), worded as ``check``'s."""
    found = _found(value, json)
    return UsageError(f"{where}: {path + ': ' if path else ''}expected {expected}, found "
                      f"{found}; {fix}")


def from_hints(cls: type) -> Table:
    """The table of a dataclass's fields or a TypedDict's keys, by their annotations: ``float``,
    ``int``, ``str``, ``bool``, None, an enum (its values), a union of those; any other
    annotation takes anything. A dataclass field without a default, and a TypedDict's required
    key, is required."""
    hints = typing.get_type_hints(cls)
    if dataclasses.is_dataclass(cls):
        required = tuple(f.name for f in dataclasses.fields(cls)
                         if f.default is dataclasses.MISSING
                         and f.default_factory is dataclasses.MISSING)
    else:
        required = tuple(sorted(getattr(cls, "__required_keys__", ())))
    return Table({key: _from_hint(hint) for key, hint in hints.items()}, required)


def _from_hint(hint: Any) -> Shape:
    if typing.get_origin(hint) in (Union, types.UnionType):
        return tuple(_from_hint(arg) for arg in typing.get_args(hint))
    if isinstance(hint, type) and issubclass(hint, enum.Enum):
        return OneOf(tuple(str(m.value) for m in hint))
    return hint if hint in _NOUNS else object


@dataclass(frozen=True)
class _Context:
    where: str
    fix: str
    json: bool


def _walk(value: Any, shape: Shape, path: str, ctx: _Context) -> None:
    if isinstance(shape, Fix):
        if not _matches(value, shape.shape):
            raise wrong(ctx.where, path, _expected(shape, ctx.json), value, shape.fix,
                        json=ctx.json)
        _walk(value, shape.shape, path, ctx)
        return
    if not _matches(value, shape):
        raise wrong(ctx.where, path, _expected(shape, ctx.json), value, ctx.fix, json=ctx.json)
    if isinstance(shape, tuple):  # the first of the shapes it matches, inside too
        _walk(value, next(s for s in shape if _matches(value, s)), path, ctx)
    elif isinstance(shape, ListOf):
        for i, item in enumerate(value):
            _walk(item, shape.item, f"{path}[{i + 1}]", ctx)
    elif isinstance(shape, Row):
        for i, (item, item_shape) in enumerate(zip(value, shape.items, strict=True)):
            _walk(item, item_shape, f"{path}[{i + 1}]", ctx)
    elif isinstance(shape, MapOf):
        for key, item in value.items():
            _walk(item, shape.value, _join(path, key), ctx)
    elif isinstance(shape, Table):
        _walk_table(value, shape, path, ctx)


def _walk_table(value: Mapping[str, Any], shape: Table, path: str, ctx: _Context) -> None:
    unknown = sorted(set(value) - set(shape.keys))
    if unknown and not shape.open:
        raise UsageError(f"{ctx.where}: {path + ': ' if path else ''}unknown "
                         f"key{'s' if len(unknown) > 1 else ''} {', '.join(unknown)} (known: "
                         f"{', '.join(shape.keys)}); {ctx.fix}")
    missing = [key for key in shape.required if key not in value]
    if missing:
        key = missing[0]
        raise UsageError(f"{ctx.where}: {_join(path, key)}: missing (expected "
                         f"{_expected(shape.keys[key], ctx.json)}); {ctx.fix}")
    for key, item in value.items():
        if key in shape.keys:
            _walk(item, shape.keys[key], _join(path, key), ctx)


def _matches(value: Any, shape: Shape) -> bool:
    """Whether ``value`` is of ``shape`` at its top (what is inside is walked after)."""
    if isinstance(shape, Fix):
        return _matches(value, shape.shape)
    if isinstance(shape, tuple):
        return any(_matches(value, s) for s in shape)
    if isinstance(shape, (Table, MapOf)):
        return isinstance(value, dict)
    if isinstance(shape, ListOf):
        return isinstance(value, list)
    if isinstance(shape, Row):
        return isinstance(value, list) and len(value) == len(shape.items)
    if isinstance(shape, OneOf):
        return isinstance(value, str) and value in shape.choices
    if shape is None or shape is type(None):
        return value is None
    if shape is object:
        return True
    if isinstance(value, bool):  # True is an int to Python, not to a config
        return shape is bool
    if shape is float:
        return isinstance(value, (int, float))
    return isinstance(value, shape)


def _expected(shape: Shape, json: bool, plural: bool = False) -> str:
    table = ("objects" if json else "tables") if plural else ("an object" if json else "a table")
    if isinstance(shape, Fix):
        return _expected(shape.shape, json, plural)
    if isinstance(shape, tuple):
        return " or ".join(_expected(s, json, plural) for s in shape)
    if isinstance(shape, (Table, MapOf)):
        return table
    if isinstance(shape, ListOf):
        return ("lists" if plural else "a list") + f" of {_expected(shape.item, json, True)}"
    if isinstance(shape, Row):
        return (f"lists of {len(shape.items)}" if plural else f"a list of {len(shape.items)}") \
            + f" ({', '.join(_expected(s, json) for s in shape.items)})"
    if isinstance(shape, OneOf):
        return f"one of ({', '.join(shape.choices)})"
    return _NOUNS[type(None) if shape is None else shape][plural]


def _found(value: Any, json: bool) -> str:
    if isinstance(value, dict):
        return "an object" if json else "a table"
    if value is None or isinstance(value, bool):
        return "null" if value is None else str(value).lower()
    text = repr(value)
    if len(text) > 40:
        text = text[:37] + "..."
    noun = ("a list" if isinstance(value, list)
            else _NOUNS.get(type(value), (type(value).__name__,))[0])
    return f"{text} ({noun})"


def _join(path: str, key: str) -> str:
    key = key if _KEY.fullmatch(key) else repr(key)
    return f"{path}.{key}" if path else key
