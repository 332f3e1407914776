"""Output paths: the rules every path portkit writes meets, checked before any work
(``check_outputs``); and atomic writes: stage beside the target, then ``os.replace``, never a
half-written file.

Every temporary folder portkit makes (worker scratch, staging, the swapped-out old artifact)
is named by ``owned_dir`` with the pid of the process that owns it, so ``sweep`` can remove
those a killed run left behind once their owner is gone.
"""

from __future__ import annotations

import contextlib
import dataclasses
import enum
import os
import re
import shutil
import stat
import tempfile
import time
from collections.abc import Iterator, Sequence
from pathlib import Path

from portkit.errors import InternalError, PortkitError, UsageError, from_os_error

# A folder portkit may replace whole: one it (or TensorFlow) wrote as an artifact or bundle.
_REPLACEABLE_DIR_MARKERS = ("saved_model.pb", "saved_model.pbtxt", "manifest.json")
# What ``debug --hops`` writes in its folder: hop1-TOOL.EXT, hop2-TOOL.EXT...
_HOP_ENTRY = re.compile(r"^hop\d+-")
_NAME_MAX = 255  # where the file system does not say


class Folder(enum.Enum):
    """What an output is, and what may already be at its path (an existing file is replaced
    only by a file)."""

    NEVER = "a file: an existing folder is refused"
    REPLACED = "a SavedModel or bundle, replaced whole: only such a folder may be replaced"
    HOPS = "debug --hops's folder, replaced whole: only one holding nothing but hop artifacts"
    WRITTEN_INTO = ("a folder portkit writes files into (check's --work-dir), made with its "
                    "parents: any folder")

    @property
    def whole(self) -> bool:
        """Whether the output is replaced as a whole (what is inside it is lost)."""
        return self in (Folder.REPLACED, Folder.HOPS)


@dataclasses.dataclass(frozen=True)
class Output:
    """A path one run writes, and the flag that named it (for the error message).

    Attributes:
        flag: The flag, e.g. ``-o`` or ``--report``.
        path: The path as given (None: the flag was not given; skipped).
        folder: Whether it may be an existing folder.
    """

    flag: str
    path: Path | None
    folder: Folder = Folder.NEVER


def failed_path(target: Path) -> Path:
    """Where an artifact that converted but failed parity is kept: ``NAME.failed.EXT`` beside
    ``target`` (a SavedModel folder ``m``: ``m.failed``), so ``target`` only ever receives an
    artifact that passed."""
    return target.with_name(f"{target.stem}.failed{target.suffix}")


def check_outputs(outputs: Sequence[Output], inputs: Sequence[Path | None] = ()) -> None:
    """Refuse, before any work, an output path that would lose something: one that climbs with
    ``..``; one that is (or, replaced whole, holds) an input of the run; an existing symlink,
    FIFO, device node or socket (never opened or replaced); an existing folder (unless
    ``folder`` allows that one), or an existing file where a folder goes; a name longer than
    the file system allows (``NAME_MAX``: derived names such as ``failed_path``'s are outputs
    too); a path whose parent folder is missing or not writable; one given twice.

    Args:
        outputs: Every path the run writes, with its flag; those whose path is None are skipped.
        inputs: Every path the run reads (the source model, --reference, --inputs,
            --calibration, a config); None entries are skipped.

    Raises:
        UsageError: One line naming the flag and path, what is wrong and how to fix it.
    """
    given = [o for o in outputs if o.path is not None]
    read = [p for p in inputs if p is not None]
    for i, out in enumerate(given):
        assert out.path is not None
        where = _where(out.path)
        for src in read:
            if _same(out.path, src):
                raise UsageError(f"{out.flag} {out.path}: that is an input of this run ({src}); "
                                 "portkit never writes over its inputs: choose another path")
            if out.folder.whole and _where(src).is_relative_to(where):
                raise UsageError(f"{out.flag} {out.path}: holds an input of this run ({src}) and "
                                 "would be replaced whole: choose another path")
        _check_one(out.flag, out.path, out.folder)
        for other in given[:i]:
            assert other.path is not None
            if _where(other.path) == where:
                raise UsageError(f"{out.flag} {out.path}: the same path as {other.flag}; give "
                                 "each output its own path")
            if other.folder.whole and where.is_relative_to(_where(other.path)):
                raise UsageError(f"{out.flag} {out.path}: inside {other.flag} {other.path}, "
                                 "which is replaced whole: write it elsewhere")


def _check_one(flag: str, target: Path, folder: Folder) -> None:
    """The rules one output path meets on its own (see ``check_outputs``)."""
    if ".." in target.parts or target.name in ("", "."):
        raise UsageError(f"{flag} {target}: give a file or folder name, without '..'")
    parent = target.absolute().parent
    _check_name(flag, target, parent)
    try:
        mode: int | None = os.lstat(target).st_mode
    except FileNotFoundError:
        mode = None
    except OSError as e:
        raise UsageError(f"{flag} {target}: cannot check it ({e.strerror}); choose another "
                         "path") from None
    if mode is not None and stat.S_ISLNK(mode):
        raise UsageError(f"{flag} {target}: an existing symlink (to {os.readlink(target)}); "
                         "portkit does not write through links: remove it or choose another path")
    if mode is not None and stat.S_ISDIR(mode):
        _check_folder(flag, target, folder)
    elif mode is not None and not stat.S_ISREG(mode):
        raise UsageError(f"{flag} {target}: an existing {_kind(mode)}, not a regular file; "
                         "portkit never writes to or replaces one: choose a file path")
    elif mode is not None and folder is not Folder.NEVER:
        raise UsageError(f"{flag} {target}: an existing file, and {flag} writes a folder; "
                         "portkit never replaces a file with a folder: move it away or choose "
                         "another path")
    if folder is Folder.WRITTEN_INTO:  # made with its parents: the nearest that exists
        while not parent.exists() and parent != parent.parent:
            parent = parent.parent
    if not parent.is_dir():
        raise UsageError(f"{flag} {target}: the folder {parent} does not exist; create it "
                         f"first (mkdir -p {parent})")
    if not os.access(parent, os.W_OK | os.X_OK):
        raise UsageError(f"{flag} {target}: the folder {parent} is not writable (permissions, "
                         "or a read-only file system); choose another path")


def _check_folder(flag: str, target: Path, folder: Folder) -> None:
    """The rules an output meets that is an existing folder."""
    if folder is Folder.NEVER:
        raise UsageError(f"{flag} {target}: an existing folder, and {flag} writes a file; "
                         "name a file (inside that folder or beside it)")
    if folder is Folder.REPLACED and not any(
            (target / marker).exists() for marker in _REPLACEABLE_DIR_MARKERS):
        raise UsageError(f"{flag} {target}: an existing folder that is not a SavedModel or a "
                         "portkit bundle; portkit replaces the output as a whole, so name a "
                         "new path")
    if folder is Folder.HOPS:
        try:
            foreign = sorted(n for n in os.listdir(target) if not _HOP_ENTRY.match(n))
        except OSError as e:
            raise UsageError(f"{flag} {target}: cannot list it ({e.strerror})") from None
        if foreign:
            raise UsageError(f"{flag} {target}: an existing folder that is not one portkit "
                             f"wrote (it holds {foreign[0]}); {flag} replaces it whole: move "
                             "it away first")
    if folder is Folder.WRITTEN_INTO and not os.access(target, os.W_OK | os.X_OK):
        raise UsageError(f"{flag} {target}: the folder is not writable (permissions, or a "
                         "read-only file system); choose another path")


def _check_name(flag: str, target: Path, parent: Path) -> None:
    """``target``'s name fits the file system's ``NAME_MAX`` (where ``parent`` is)."""
    size = len(os.fsencode(target.name))
    limit = _NAME_MAX
    with contextlib.suppress(OSError, ValueError):
        limit = os.pathconf(parent if parent.is_dir() else "/", "PC_NAME_MAX")
    if size > limit:
        raise UsageError(f"{flag} {target}: the name is {size} bytes, over the {limit} this "
                         "file system allows; choose a shorter name")


def _kind(mode: int) -> str:
    """What a special file is, in words."""
    for test, name in ((stat.S_ISFIFO, "FIFO (named pipe)"), (stat.S_ISCHR, "character device"),
                       (stat.S_ISBLK, "block device"), (stat.S_ISSOCK, "socket")):
        if test(mode):
            return name
    return "special file"


def _where(path: Path) -> Path:
    """A path's real place: its parent resolved (links followed), its own name kept."""
    full = path.absolute()
    return full.parent.resolve() / full.name


def _same(out: Path, src: Path) -> bool:
    """Whether ``out`` names the file or folder ``src`` (hard links and symlinks included)."""
    with contextlib.suppress(OSError):
        if out.exists() and src.exists():
            return os.path.samefile(out, src)
    return _where(out) == src.absolute().resolve() or _where(out) == _where(src)


# What portkit keeps in the folders ``owned_dir`` makes (``old``: the artifact ``atomic_replace``
# swaps out), and their names, ``[.NAME.]portkit-KIND-PID[-RANDOM]``, which ``sweep`` removes.
KINDS = ("worker", "stage", "old", "module", "pickle", "const", "debug")
_OWNED = re.compile(rf"^(?:\..+\.)?portkit-(?:{'|'.join(KINDS)})-(\d+)(?:-|$)")
_SWEEP_AGE = 5.0  # seconds: a folder younger than this may belong to a run just starting
_LABEL_BYTES = 96  # of the target's name in an owned folder's name: the rest is under 64 bytes


def owned_dir(kind: str, parent: Path | None = None, name: str = "") -> Path:
    """Make a private temporary folder ``[.NAME.]portkit-KIND-PID-RANDOM`` in ``parent``
    (default: the temp folder), named with this process's pid so ``sweep`` can tell when it
    was left behind.

    Args:
        kind: What it holds, one of ``KINDS`` (worker, stage, module, pickle, const, debug).
        parent: Where to make it.
        name: The target it stages, if any (the folder is then hidden beside it).

    Raises:
        InternalError: ``kind`` is not in ``KINDS`` (``sweep`` would never remove it).
        OSError: It could not be made.
    """
    if kind not in KINDS:
        raise InternalError(f"owned_dir({kind!r}): not one of {KINDS}, which sweep knows")
    label = os.fsencode(name)[:_LABEL_BYTES].decode("utf-8", "ignore")  # fits NAME_MAX
    prefix = f".{label}." if label else ""
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
def staging_dir(target: Path, flag: str = "-o") -> Iterator[Path]:
    """A private temporary directory beside ``target``, removed on exit whatever happens.

    Staging on the target's own file system makes the final ``os.replace`` atomic. Folders that
    killed runs left beside it are swept first. ``flag`` names the output in errors.

    Raises:
        UsageError: The target's directory does not exist.
        PortkitError: It could not be written in (``errors.from_os_error``: exit 2 for the path,
            5 for a full disk).
    """
    parent = target.parent
    if not parent.is_dir():
        raise UsageError(f"{flag} {target}: the directory {parent} does not exist; create it "
                         "first")
    try:
        sweep(parent)
        stage = owned_dir("stage", parent, target.name)
    except OSError as e:
        raise _os_error(e, f"{flag} {target}: cannot write in {parent}") from None
    try:
        yield stage
    finally:
        shutil.rmtree(stage, ignore_errors=True)


def atomic_replace(staged: Path, target: Path, flag: str = "-o") -> None:
    """Move a staged file into place in one step (a directory is swapped in as a whole: what
    was at ``target`` is moved into an ``old`` folder beside it, which ``sweep`` removes if the
    run is killed before it does); ``flag`` names the output in errors.

    Raises:
        PortkitError: The move failed (``errors.from_os_error``: disk full, permissions);
            whatever was at ``target`` before is still there.
    """
    swap = staged.is_dir() and os.path.lexists(target)
    aside = None
    try:
        if swap:
            aside = owned_dir("old", target.parent, target.name)
            os.replace(target, aside / target.name)
        try:
            os.replace(staged, target)
        except OSError:
            if aside is not None:
                os.replace(aside / target.name, target)  # put the previous one back
            raise
    except OSError as e:
        if aside is not None and not os.path.lexists(aside / target.name):
            shutil.rmtree(aside, ignore_errors=True)
        raise _os_error(e, f"{flag} {target}: cannot write it",
                        "; the previous file, if any, is unchanged") from None
    if aside is not None:
        shutil.rmtree(aside, ignore_errors=True)


def atomic_write_text(target: Path, text: str, flag: str = "-o") -> None:
    """Write ``text`` to ``target`` through a staged file (``flag`` names it in errors).

    Raises:
        PortkitError: It could not be written (``errors.from_os_error``: exit 2 for the path,
            5 for a full disk or the file size limit); ``target`` is unchanged.
    """
    with staging_dir(target, flag) as stage:
        staged = stage / target.name
        try:
            staged.write_text(text, encoding="utf-8")
        except OSError as e:
            raise _os_error(e, f"{flag} {target}: cannot write it") from None
        atomic_replace(staged, target, flag)


def append_text(target: Path, text: str, flag: str) -> None:
    """Append ``text`` to ``target`` (made if missing; never through a symlink), as
    ``$GITHUB_STEP_SUMMARY`` is written: check it first with ``check_outputs``.

    Raises:
        PortkitError: It could not be written (``errors.from_os_error``: exit 2 for the path,
            5 for a full disk or the file size limit).
    """
    try:
        fd = os.open(target, os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_NOFOLLOW, 0o666)
        with os.fdopen(fd, "a", encoding="utf-8") as out:
            out.write(text)
    except OSError as e:
        raise _os_error(e, f"{flag} {target}: cannot append to it") from None


def _os_error(error: OSError, what: str, then: str = "") -> PortkitError:
    """``errors.from_os_error`` for an output ``what`` names (the staged file's own name, which
    the user never gave, is left out), ``then`` added to its message."""
    mapped = from_os_error(OSError(error.errno, error.strerror), what)
    return type(mapped)(f"{mapped}{then}") if then else mapped
