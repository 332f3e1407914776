"""Numbers, names and paths put in few characters, for every table."""

from __future__ import annotations

from typing import TYPE_CHECKING

from rich.markup import escape

if TYPE_CHECKING:
    from portkit.results import FileInfo


def num(x: float) -> str:
    return f"{x:.3g}"


def described(info: FileInfo) -> str:
    """``path [format]``, escaped: rich would take ``[torchscript]`` for a style tag."""
    return escape(f"{info.path} [{info.format}]")


def ms(x: float) -> str:
    """``0.163``, ``11.3``, ``2,030``: three digits, none in exponent form."""
    return f"{x:.3g}" if x < 1000 else f"{x:,.0f}"


def short(text: str, limit: int = 160) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"


def tail(name: str, limit: int = 60) -> str:
    """A long name's end (``…Conv2d_conv1;1``)."""
    return name if len(name) <= limit else "…" + name[-(limit - 1):]


def share(x: float | None) -> str:
    return "-" if x is None else f"{x:.0%}"


