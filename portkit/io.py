"""Atomic writes: stage beside the target, then ``os.replace``; never a half-written file.

Every temporary folder portkit makes (worker scratch, staging, the swapped-out old artifact)
is named by ``owned_dir`` with the pid of the process that owns it, so ``sweep`` can remove
those a killed run left behind once their owner is gone.
"""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import tempfile
import time
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


# ``[.NAME.]portkit-KIND-PID[-RANDOM]``: what ``owned_dir`` names and ``sweep`` removes.
_OWNED = re.compile(r"^(?:\..+\.)?portkit-(?:worker|stage|old|module|pickle|const)-(\d+)(?:-|$)")
_SWEEP_AGE = 5.0  # seconds: a folder younger than this may belong to a run just starting


def owned_dir(kind: str, parent: Path | None = None, name: str = "") -> Path:
    """Make a private temporary folder ``[.NAME.]portkit-KIND-PID-RANDOM`` in ``parent``
    (default: the temp folder), named with this process's pid so ``sweep`` can tell when it
    was left behind.

    Args:
        kind: What it holds: worker, stage, module, pickle or const.
        parent: Where to make it.
        name: The target it stages, if any (the folder is then hidden beside it).

    Raises:
        OSError: It could not be made.
    """
    prefix = f".{name}." if name else ""
    return Path(tempfile.mkdtemp(prefix=f"{prefix}portkit-{kind}-{os.getpid()}-", dir=parent))


@contextlib.contextmanager
def owned_tempdir(kind: str) -> Iterator[Path]:
    """An ``owned_dir`` in the temp folder, removed on exit whatever happens."""
    folder = owned_dir(kind)
    try:
        yield folder
    finally:
        shutil.rmtree(folder, ignore_errors=True)


def sweep(parent: Path) -> list[Path]:
    """Remove the portkit folders in ``parent`` whose owner process is gone (a run killed
    before it could clean up); folders of live processes, and any made in the last seconds, are
    left alone.

    Returns:
        The folders removed.
    """
    removed = []
    try:
        entries = list(os.scandir(parent))
    except OSError:
        return removed
    now = time.time()
    for entry in entries:
        match = _OWNED.match(entry.name)
        if not match or int(match.group(1)) == os.getpid():
            continue
        try:
            if not entry.is_dir(follow_symlinks=False) or entry.stat(
                    follow_symlinks=False).st_uid != os.getuid():
                continue
            if now - entry.stat(follow_symlinks=False).st_mtime < _SWEEP_AGE:
                continue
        except OSError:
            continue
        if not _alive(int(match.group(1))):
            shutil.rmtree(entry.path, ignore_errors=True)
            removed.append(Path(entry.path))
    return removed


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # another user's process
        return True
    return True


@contextlib.contextmanager
def staging_dir(target: Path) -> Iterator[Path]:
    """A private temporary directory beside ``target``, removed on exit whatever happens.

    Staging on the target's own file system makes the final ``os.replace`` atomic. Folders that
    killed runs left beside it are swept first.

    Raises:
        UsageError: The target's directory does not exist or is not writable.
    """
    parent = target.parent
    if not parent.is_dir():
        raise UsageError(f"-o {target}: the directory {parent} does not exist; create it first")
    try:
        sweep(parent)
        stage = owned_dir("stage", parent, target.name)
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
    old = target.with_name(f".{target.name}.portkit-old-{os.getpid()}")
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
