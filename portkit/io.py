"""Atomic writes: stage beside the target, then ``os.replace``; never a half-written file."""

from __future__ import annotations

import contextlib
import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

from portkit.errors import UsageError


@contextlib.contextmanager
def staging_dir(target: Path) -> Iterator[Path]:
    """A private temporary directory beside ``target``, removed on exit whatever happens.

    Staging on the target's own file system makes the final ``os.replace`` atomic.

    Raises:
        UsageError: The target's directory does not exist or is not writable.
    """
    parent = target.parent
    if not parent.is_dir():
        raise UsageError(f"-o {target}: the directory {parent} does not exist; create it first")
    try:
        stage = Path(tempfile.mkdtemp(prefix=f".{target.name}.portkit-", dir=parent))
    except OSError as e:
        raise UsageError(f"-o {target}: cannot write in {parent} ({e.strerror})") from None
    try:
        yield stage
    finally:
        shutil.rmtree(stage, ignore_errors=True)


def atomic_replace(staged: Path, target: Path) -> None:
    """Move a staged file into place in one step (a directory target is swapped as a whole)."""
    if staged.is_dir() and target.exists():
        old = target.with_name(f".{target.name}.portkit-old")
        os.replace(target, old)
        os.replace(staged, target)
        shutil.rmtree(old, ignore_errors=True)
    else:
        os.replace(staged, target)


def atomic_write_text(target: Path, text: str) -> None:
    """Write ``text`` to ``target`` through a staged file."""
    with staging_dir(target) as stage:
        staged = stage / target.name
        staged.write_text(text)
        atomic_replace(staged, target)
