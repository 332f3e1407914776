"""Atomic writes: stage beside the target, then ``os.replace``; never a half-written file."""

from __future__ import annotations

import contextlib
import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

from portkit.errors import UsageError

# A folder portkit may replace whole: one it (or TensorFlow) wrote as an artifact or bundle.
_REPLACEABLE_DIR_MARKERS = ("saved_model.pb", "saved_model.pbtxt", "manifest.json")


def check_output_path(target: Path) -> None:
    """Refuse an output path that climbs with ``..``, is an existing symlink (writing there
    would land outside the folder the path names), or is an existing folder that is not a
    SavedModel or bundle (it would be replaced whole).

    Raises:
        UsageError: The path is refused.
    """
    if ".." in target.parts or target.name in ("", "."):
        raise UsageError(f"-o {target}: give a file or folder name, without '..'")
    if target.is_dir() and not target.is_symlink() and not any(
            (target / marker).exists() for marker in _REPLACEABLE_DIR_MARKERS):
        raise UsageError(f"-o {target}: an existing folder that is not a SavedModel or a portkit "
                         "bundle; portkit replaces the output as a whole, so name a new path")
    if target.is_symlink():
        raise UsageError(f"-o {target}: an existing symlink (to {os.readlink(target)}); portkit "
                         "does not write through links: remove it or choose another path")


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
    """Move a staged file into place in one step (a directory target is swapped as a whole).

    Raises:
        UsageError: The move failed (disk full, permissions); whatever was at ``target`` before
            is still there.
    """
    old = target.with_name(f".{target.name}.portkit-old")
    swap = staged.is_dir() and target.exists()
    try:
        if swap:
            os.replace(target, old)
        try:
            os.replace(staged, target)
        except OSError:
            if swap:
                os.replace(old, target)  # put the previous directory back
            raise
    except OSError as e:
        raise UsageError(f"-o {target}: cannot write it ({e.strerror or e}); the previous "
                         "file, if any, is unchanged") from None
    if swap:
        shutil.rmtree(old, ignore_errors=True)


def atomic_write_text(target: Path, text: str) -> None:
    """Write ``text`` to ``target`` through a staged file."""
    with staging_dir(target) as stage:
        staged = stage / target.name
        staged.write_text(text)
        atomic_replace(staged, target)
